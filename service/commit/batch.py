"""The end of a batch of a Kafka job: per partition, state and position land in one ledger call.

Order of one batch (the crash points of ``service.runtime.crashpoints`` in brackets):

1. the sources hand out the batch's records [batch_taken];
2. the job's operators run and its output operations send their results [outputs_done];
3. ``commit_tasks``: for every partition (task) of the batch, one ledger script applies that
   task's state writes and records its offset span, owner epoch and batch id [state_persisted];
4. the Kafka offsets are committed, only for lag tools [offsets_committed].

Why a crash anywhere loses nothing and counts nothing twice in Redis: before step 3 nothing of
the batch is in Redis and the restarted owner seeks to the recorded offset, so the batch is read
again; step 3 is atomic per task (ledger invariant I1); a retried call after an ambiguous reply is
refused as DUPLICATE (I3); after step 3 the Kafka offsets do not matter, because positions come
from the ledger. A zombie that resumes after its partitions moved is FENCED (I2): its writes are
dropped, and so is its in-process state for those partitions.

Outputs sent in step 2 are at-least-once: a crash between steps 2 and 3 sends them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.commit.ledger import BatchLedger, CommitResult, Outcome, Shard
from service.state.base import StateWrites
from service.state.split import split_by_hash_tag

log = logging.getLogger(__name__)

Task = tuple[str, int]


@runtime_checkable
class SpanSource(Protocol):
    """A source whose partitions are ledger shards (``service.sources.kafka.KafkaSource``)."""

    def ledger_span(self, tp: Task) -> LedgerSpanLike | None: ...

    def fence(self, tp: Task) -> None: ...


class LedgerSpanLike(Protocol):
    @property
    def epoch(self) -> int: ...

    @property
    def from_offset(self) -> int: ...

    @property
    def next_offset(self) -> int: ...


@dataclass(frozen=True)
class TaskCommit:
    task: Task
    result: CommitResult | None  # None: the task had no known position and nothing to record


def commit_tasks(
    ledger: BatchLedger,
    job: str,
    batch_id: int,
    tasks: Sequence[Task],
    writes: StateWrites,
    sources: Iterable[SpanSource],
) -> list[TaskCommit]:
    """Step 3 for every task of the batch; the caller handles FENCED and GAP (forget the task)."""
    groups = split_by_hash_tag(writes)
    leftover = set(groups) - {Shard(job, t, p).tag for t, p in tasks}
    if leftover:
        # Writes of partitions no longer ours (e.g. expiry of a revoked task's window slices):
        # the new owner manages those keys now, so they are not ours to write.
        log.info("batch %d: skipping writes of partitions not in the batch: %s", batch_id, leftover)
    span_sources = list(sources)
    done: list[TaskCommit] = []
    for task in tasks:
        shard = Shard(job, *task)
        span = next((s for src in span_sources if (s := src.ledger_span(task)) is not None), None)
        if span is None:
            done.append(TaskCommit(task, None))
            continue
        result = ledger.commit_batch(
            shard,
            span.epoch,
            batch_id,
            span.from_offset,
            span.next_offset,
            groups.get(shard.tag, StateWrites()),
        )
        if result.outcome in (Outcome.FENCED, Outcome.GAP):
            for src in span_sources:
                src.fence(task)
        done.append(TaskCommit(task, result))
    return done
