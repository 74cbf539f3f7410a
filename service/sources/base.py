"""The contract between an input source and the batch scheduler.

A source buffers what arrives between batch times and hands one bounded batch per interval to the
scheduler. It learns that a batch is durable (results and state persisted) only through
``on_batch_persisted``; sources with offsets commit them there and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

# a polling source's turn while another one has records too (seconds)
FILL_TURN_S = 0.02


class InputSource(Protocol):
    """One input DStream's feed of records, cut into batches by the scheduler."""

    def start(self) -> None:
        """Connect and begin buffering; called once when the StreamingContext starts."""

    def fill(self, deadline: float) -> None:
        """Buffer records until ``time.monotonic()`` reaches ``deadline``; may return early.

        Sources fed by a background thread (sockets) or by memory (queues) return at once.
        """

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        """Remove and return the records of the batch that ends at ``batch_time_ms``."""

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        """The batch's outputs and state are persisted: offsets up to it may be committed."""

    def stop(self) -> None:
        """Release connections and threads; buffered but unpersisted records are re-read later."""


@runtime_checkable
class PartitionedSource(Protocol):
    """A source whose batch comes already split into partitions (used instead of
    ``take_batch``)."""

    def take_partitions(self, batch_time_ms: int) -> list[list[Any]]: ...


@runtime_checkable
class TaskSource(Protocol):
    """A source that hands out one entry per *task*: ``((topic, partition), records)`` for every
    assigned Kafka partition, also those with no records this batch. A source offering it makes
    the job task-scoped: keyed shuffles group within each task and state is kept per task under
    the task's shard keys (docs/semantics.md, "Kafka inputs: state per partition"). Takes
    precedence over ``take_partitions``; its commit side is ``service.commit.protocol``'s
    ``CommittedSource``."""

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]: ...


@runtime_checkable
class PollingSource(Protocol):
    """A source that waits for records by polling a client (Kafka): ``fill`` blocks."""

    def fill_turn(self, deadline: float) -> int:
        """``fill``, and how many records arrived (0: none)."""
        ...


def fill_all(sources: Sequence[InputSource], deadline: float) -> None:
    """Every source buffers until ``deadline``.

    Polling sources take turns of ``FILL_TURN_S``; one that had nothing on its last turn is
    only asked, not waited for, while another has records. (One source polling until the
    deadline left the next a single poll per slice: a second topic, or a repartition topic
    read back, drained at a few thousand records a second.)
    """
    polling = [s for s in sources if isinstance(s, PollingSource)]
    for source in sources:
        if not isinstance(source, PollingSource):
            source.fill(deadline)
    if len(polling) == 1:
        polling[0].fill_turn(deadline)
        return
    idle: set[int] = set()
    while polling:
        for index, source in enumerate(polling):
            now = time.monotonic()
            others_busy = len(idle) < len(polling)
            turn_ends = now if index in idle and others_busy else min(deadline, now + FILL_TURN_S)
            if source.fill_turn(turn_ends):
                idle.discard(index)
            else:
                idle.add(index)
        # a round where nothing arrived ends the fill early (the scheduler calls again): no
        # spinning when every partition is paused at its cap
        if time.monotonic() >= deadline or len(idle) == len(polling):
            return
