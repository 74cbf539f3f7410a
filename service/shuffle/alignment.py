"""Batch alignment of a repartition partition: which downstream batches its records make.

Every upstream task (an input partition, wherever it runs) writes its records of batch ``t`` to
the repartition partitions and then, in the same transaction, a marker "through ``t``" to each
of them. Records of one writer keep their order within a partition, but writers interleave, so
the partition holds records of several batches in offset order. Downstream batch ``t`` is
complete once every upstream task's marker has reached ``t`` (the watermark, as Flink's barriers
and Dataflow's watermarks work): only then has every record of batch ``t`` been read.

``align`` consumes what was read past the task's position and releases every complete batch,
in order and each with its own batch time, so per-batch outputs and windows equal Spark's. What
was read but belongs to a later batch stays *pending*; the pending records and the markers seen
(``AlignmentState``) are persisted with the task's ledger commit, since the position moves past
them. A marker means "through ``t``", so an upstream task that skipped batch times (a restart
after downtime, a moved partition) completes them with its next marker.

A record of a batch already released (its writer was not counted in the watermark: an input
partition added later; a writer whose clock runs behind) is *late*: it goes into the next
released batch and is counted, never dropped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Task = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ShuffleRecord:
    """One record of a repartition partition: data (``payload``) or a marker."""

    origin: Task  # the upstream task that wrote it
    batch_ms: int  # the upstream batch it belongs to (a marker: the batch its writer is through)
    payload: Any = None
    marker: bool = False


@dataclass(frozen=True, slots=True)
class AlignmentState:
    """What a repartition partition's task keeps across batches (and owners): the markers seen,
    the last batch released, the records read for batches not released yet."""

    through: Mapping[Task, int] = field(default_factory=dict)
    released_ms: int | None = None
    pending: tuple[tuple[int, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Release:
    batches: list[tuple[int, list[Any]]]  # (batch time, payloads), batch times increasing
    late: int  # records of batches released before them, put into the first batch here
    state: AlignmentState


class BatchAligner:
    """Aligns the partitions of one repartition topic, written by the tasks ``upstream``.

    ``max_batches``: at most this many downstream batches per release. Beyond it (a long
    catch-up), empty batch times are skipped, as after a restart (docs/semantics.md); batches
    with records are never merged.
    """

    def __init__(self, upstream: Collection[Task], batch_ms: int, max_batches: int = 100) -> None:
        if not upstream:
            raise ValueError("a repartition topic needs at least one upstream task")
        if batch_ms <= 0:
            raise ValueError("batch_ms must be > 0")
        self.upstream = frozenset(upstream)
        self.batch_ms = batch_ms
        self.max_batches = max_batches

    def watermark(self, through: Mapping[Task, int]) -> int | None:
        """The latest batch every upstream task is through; None while one has said nothing."""
        if not self.upstream <= through.keys():
            return None
        return min(through[u] for u in self.upstream)

    def align(self, state: AlignmentState, records: Iterable[ShuffleRecord]) -> Release:
        through = dict(state.through)
        pending = list(state.pending)
        for record in records:
            if record.marker:
                through[record.origin] = max(record.batch_ms, through.get(record.origin, 0))
            else:
                pending.append((record.batch_ms, record.payload))
        released = state.released_ms
        top = self.watermark(through)
        if top is None or (released is not None and top <= released):
            return Release([], 0, AlignmentState(through, released, tuple(pending)))
        late: list[Any] = []
        by_time: dict[int, list[Any]] = {}
        still: list[tuple[int, Any]] = []
        for batch_ms, payload in pending:
            if released is not None and batch_ms <= released:
                late.append(payload)
            elif batch_ms <= top:
                by_time.setdefault(self._on_grid(batch_ms, top), []).append(payload)
            else:
                still.append((batch_ms, payload))
        times = self._times(released, top, by_time)
        batches = [(t, by_time.get(t, [])) for t in times]
        if late:
            batches[0] = (batches[0][0], [*late, *batches[0][1]])
        return Release(batches, len(late), AlignmentState(through, top, tuple(still)))

    def _on_grid(self, batch_ms: int, top: int) -> int:
        """The grid time at or after ``batch_ms`` (the grid runs through ``top``)."""
        return top - ((top - batch_ms) // self.batch_ms) * self.batch_ms

    def _times(self, released: int | None, top: int, by_time: Mapping[int, list[Any]]) -> list[int]:
        if released is None:
            # the task's first release: nothing before its first record has state to advance
            first = min(by_time, default=top)
        else:
            first = released + self.batch_ms
            first = top - ((top - first) // self.batch_ms) * self.batch_ms  # onto top's grid
        times = list(range(first, top + 1, self.batch_ms))
        if len(times) > self.max_batches:
            times = sorted({*by_time, top})
        return times
