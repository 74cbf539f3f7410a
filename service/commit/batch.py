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

Outputs: a ``BatchParticipant`` (the job's one ``OutputTransaction``, which all its
``KafkaSink`` outputs write into) writes inside a Kafka transaction begun at the batch's first
record. Between steps 2 and 3 every participant
commits (``precommit_all``): the transaction carries the batch's input offsets with the consumer's
group metadata (KIP-447), so a zombie whose group generation is stale is refused by the broker and
publishes nothing. If any participant fails, or the batch raised, the rest abort, no ledger step
runs, and the batch is taken again (``abandon``). The crash point ``outputs_done`` sits after the
transactions committed and before step 3: a crash there publishes the batch's outputs twice (the
restarted owner recomputes them), the one window left (docs/exactly-once.md, "Outputs").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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

    def resync(self, tp: Task, next_offset: int) -> None: ...

    def reclaim(self, tp: Task) -> None: ...


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
    """Step 3 for every task of the batch.

    FENCED: the partition is someone else's now, its source drops it. GAP: the partition is
    still ours but the batch does not start where the ledger stands (e.g. a batch retaken after
    a commit whose reply was lost, or Redis lost commits): its source goes back to the recorded
    offset. REGRESSED: Redis lost writes including the epoch (ledger invariant I5): its source
    claims the partition again. Either way the caller drops the task's in-process state.
    """
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
        if result.outcome is Outcome.FENCED:
            for src in span_sources:
                src.fence(task)
        elif result.outcome is Outcome.REGRESSED:
            log.error(
                "batch %d: Redis lost acknowledged commits of %s (epoch %d above the counter's "
                "%d): claiming it again from what Redis still records",
                batch_id,
                shard.tag,
                span.epoch,
                result.current_epoch,
            )
            for src in span_sources:
                src.reclaim(task)
        elif result.outcome is Outcome.GAP and result.position is not None:
            for src in span_sources:
                src.resync(task, result.position.next_offset)
        done.append(TaskCommit(task, result))
    return done


@dataclass(frozen=True)
class GroupOffsets:
    """A batch's next input offsets on one consumer's partitions, with that consumer's group
    metadata: what ``send_offsets_to_transaction`` needs to fence a zombie (KIP-447)."""

    offsets: Mapping[Task, int]
    group_metadata: Any  # confluent_kafka's ConsumerGroupMetadata


@runtime_checkable
class GroupOffsetSource(Protocol):
    """A source that can say where the batch just taken ends, per consumer group."""

    def group_offsets(self) -> GroupOffsets | None: ...

    def rewind(self) -> None: ...

    def find_published(self) -> None:
        """After a transaction whose commit is unknown: partitions whose group offset is past
        where the next batch starts were published, and are replayed without their outputs."""
        ...


@runtime_checkable
class RecoverableParticipant(Protocol):
    """A participant that can lose track of whether its batch committed (a Kafka transaction
    whose ``commit_transaction`` timed out): before the next batch, ``recover`` (repeatable)
    makes the outcome final and readable, and ``settled`` says it has been read."""

    @property
    def needs_recovery(self) -> bool: ...

    def recover(self) -> None: ...

    def settled(self) -> None: ...


class OutputFencedError(RuntimeError):
    """The broker refused the batch's transaction: this instance no longer owns its input."""


@runtime_checkable
class BatchParticipant(Protocol):
    """An output whose writes of a batch become visible only if the batch commits.

    ``bind`` is called once at start: ``transactional`` is True when the job commits through the
    ledger; otherwise the participant keeps plain (at-least-once) semantics and ``precommit`` and
    ``abort`` have nothing to do. ``begin`` precedes the batch's computation; ``precommit`` must
    make the batch's writes visible atomically or raise; ``abort`` discards them.
    """

    def bind(self, job: str, transactional: bool) -> None: ...

    def begin(self, batch_ms: int) -> None: ...

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None: ...

    def abort(self, batch_ms: int) -> None: ...

    def close(self) -> None: ...


def participant_of(func: Any) -> BatchParticipant | None:
    """``func`` itself, or what it wraps via a ``batch_participant`` attribute."""
    if isinstance(func, BatchParticipant):
        return func
    wrapped = getattr(func, "batch_participant", None)
    return wrapped if isinstance(wrapped, BatchParticipant) else None


def precommit_all(
    participants: Sequence[BatchParticipant], batch_ms: int, groups: Sequence[GroupOffsets]
) -> BaseException | None:
    """Commit every participant's batch in order; on the first failure abort the others.

    Returns the failure (the caller then skips the ledger step and takes the batch again).
    Participants committed before a failing one stay committed, which is why a job's Kafka
    outputs share one transaction (``service.sinks.kafka.bind_outputs``): it is one participant.
    """
    for i, participant in enumerate(participants):
        try:
            participant.precommit(batch_ms, groups)
        except Exception as exc:
            abort_all(participants[i:], batch_ms)
            return exc
    return None


def abort_all(participants: Iterable[BatchParticipant], batch_ms: int) -> None:
    """Abort each participant's batch; a failing abort is logged (the broker times it out)."""
    for participant in participants:
        try:
            participant.abort(batch_ms)
        except Exception:
            log.exception("batch %d: aborting output %r failed", batch_ms, participant)
