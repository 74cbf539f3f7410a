"""A Kafka-like source with raw records, rewinds and dead letters, and a recording queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.sinks.dead_letter import DeadLetterPolicy, DeadLetterQueue, FailedRecord
from service.sources.kafka import KafkaRecord
from tests.support.sources import InMemoryTaskSource

TOPIC = "events"


class RecordingQueue(DeadLetterQueue):
    """Dead letters kept in a list instead of a topic; attempts in memory."""

    def __init__(self, max_attempts: int = 3, max_record_bytes: int | None = None) -> None:
        super().__init__(DeadLetterPolicy("dlq", max_attempts, max_record_bytes), "job", {})
        self.letters: list[tuple[FailedRecord, BaseException, int]] = []
        self.flushes = 0

    def send(self, record: FailedRecord, exc: BaseException, attempts: int) -> None:
        self.letters.append((record, exc, attempts))

    def flush(self) -> None:
        self.flushes += 1

    def offsets(self) -> list[tuple[int, int]]:
        return [(r.partition, r.offset) for r, _, _ in self.letters]


class RawSource(InMemoryTaskSource):
    """Partitions of one topic fed batch by batch; elements are the decoded values (ints)."""

    def __init__(self, batches: Sequence[Sequence[Sequence[int]]], dlq: DeadLetterQueue) -> None:
        self.dead_letters: DeadLetterQueue | None = dlq
        self.partitions = max(len(b) for b in batches)
        self._incoming = [[list(p) for p in b] for b in batches]
        self._next_offset = [0] * self.partitions
        self._pending: list[list[KafkaRecord]] = [[] for _ in range(self.partitions)]
        self._last: dict[tuple[str, int], list[KafkaRecord]] = {}
        self.rewinds: list[tuple[int, list[int]]] = []

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]:
        batch = self._incoming.pop(0) if self._incoming else []
        out: list[tuple[tuple[str, int], list[Any]]] = []
        for p in range(self.partitions):
            for value in batch[p] if p < len(batch) else []:
                record = KafkaRecord(TOPIC, p, self._next_offset[p], None, str(value).encode())
                self._next_offset[p] += 1
                self._pending[p].append(record)
            records, self._pending[p] = self._pending[p], []
            self._last[(TOPIC, p)] = records
            out.append(((TOPIC, p), [int(r.value or b"") for r in records]))
        return out

    def raw_records(self, tp: tuple[str, int]) -> list[KafkaRecord]:
        return list(self._last.get(tp, []))

    def rewind_partition(
        self, tp: tuple[str, int], batch_time_ms: int, keep: Sequence[KafkaRecord]
    ) -> None:
        self.rewinds.append((tp[1], [r.offset for r in keep]))
        self._pending[tp[1]] = list(keep) + self._pending[tp[1]]

    def flush_dead_letters(self) -> None:
        if self.dead_letters is not None:
            self.dead_letters.flush()
