"""queueStream's source: batches prepared in memory, handed out one per batch time.

Like Spark's QueueInputDStream the queue is not checkpointed: after a restart the job is given
whatever queue it is built with.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class QueueSource:
    """Each queued item is one batch, kept as its list of partitions."""

    # Spark's queue and file streams report no input info to listeners (numRecords 0)
    reports_records = False

    def __init__(
        self,
        batches: list[list[list[Any]]],
        oneAtATime: bool = True,
        default: Any = None,
    ) -> None:
        self._queue: deque[list[list[Any]]] = deque(batches)
        self._one_at_a_time = oneAtATime
        # default: a batch object with ``partitions`` or None
        self._default: list[list[Any]] | None = (
            None if default is None else [list(p) for p in default.partitions]
        )
        self._lock = threading.Lock()

    def add(self, partitions: list[list[Any]]) -> None:
        """Queue one more batch (tests and demos feed running jobs this way)."""
        with self._lock:
            self._queue.append(partitions)

    def start(self) -> None:
        return None

    def fill(self, deadline: float) -> None:
        return None

    def take_partitions(self, batch_time_ms: int) -> list[list[Any]]:
        with self._lock:
            if self._queue:
                if self._one_at_a_time:
                    return self._queue.popleft()
                parts = [p for batch in self._queue for p in batch]
                self._queue.clear()
                return parts
        if self._default is not None:
            return [list(p) for p in self._default]
        # Spark fills a drained queue with an empty RDD of one partition (observed in PySpark
        # 4.3: getNumPartitions() == 1), so count() still emits [0] for it.
        return [[]]

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        return [x for p in self.take_partitions(batch_time_ms) for x in p]

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        return None

    def stop(self) -> None:
        return None
