"""The per-batch commit protocol of a job: one owner for every step that makes a batch count once.

``StreamingContext`` computes batches; at each step of a batch it calls ``BatchProtocol`` and
knows no ledger, epoch or transaction. The steps, in order, with the crash points of
``service.runtime.crashpoints`` in brackets and why each is where it is:

1. ``settle`` -- a transaction whose commit reply was lost (``AmbiguousCommitError``) is made
   final by a new producer before any record is taken again, and the group's offsets (KIP-447
   stable reads) say whether it published: if it did, its records are replayed into state with
   their outputs skipped. Taking records first could publish that batch a second time.
2. ``begin`` / take / ``after_take`` [batch_taken] -- outputs open the batch's transaction; the
   partitions being replayed are named to them, so they publish nothing of those.
3. the job's operators and output operations run (the context's part).
4. ``flush_dead_letters`` -- the batch's dead letters are durable before anything commits, so a
   record set aside is never lost with the batch that skipped it.
5. ``commit_outputs`` [outputs_done] -- the job's one transaction (all its KafkaSinks) commits
   the outputs together with the input offsets and the consumer's group metadata: a zombie whose
   group generation is stale is refused by the broker. This is the batch's single decision. A
   batch that raised, or whose transaction failed, is abandoned instead: nothing of it reaches
   Redis and its records are taken again (``abandon``).
6. ``persist`` [state_persisted] -- per partition, one ledger script applies the state writes
   and records the offset span, owner epoch and batch id (``commit_tasks``, ledger invariants
   I1-I5). A refused partition (FENCED, GAP, REGRESSED) is dropped, re-read or claimed again by
   its source, and its cached state is forgotten.
7. ``acknowledge`` [offsets_committed] -- sources hear the batch is durable; plain Kafka offset
   commits there are for lag tools only, since positions come from the ledger.

Why a crash at any instant loses nothing and counts nothing twice: before step 5 nothing of the
batch is visible anywhere and the next owner reads it again from the ledger's position; after
step 5 and before step 6 the outputs are published but Redis has not moved, and the next owner
finds the group offset past the ledger's and replays those records with outputs skipped
(``service.commit.ownership``, "replay"); step 6 is atomic per partition and refuses a retry
(I3) or a zombie (I2). docs/exactly-once.md has the whole argument.

Partition ownership (claim, fence, resync, rewind, replay) is the other half of the protocol,
in ``service.commit.ownership``, which a source consults for every partition it reads;
``LedgerBound``, ``Replaying``, ``DeadLettering``, ``GroupMember`` here and
``SpanSource``, ``GroupOffsetSource`` in ``service.commit.batch`` are what it requires of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from service.commit.attempts import AttemptCounter, RedisAttempts
from service.commit.batch import (
    BatchParticipant,
    GroupOffsetSource,
    OutputFencedError,
    RecoverableParticipant,
    SpanSource,
    Task,
    abort_all,
    commit_tasks,
    precommit_all,
)
from service.commit.ledger import BatchLedger, Outcome, check_redis
from service.commit.ownership import PartitionLedger
from service.runtime.outage import is_outage
from service.state.base import StateStore, StateWrites
from service.state.redis_store import RedisStateStore

log = logging.getLogger(__name__)


# What the protocol needs of a source, one small Protocol per step, so that a source offers only
# what its kind of input can do (``service.sources.kafka.KafkaSource`` offers all of them).


@runtime_checkable
class LedgerBound(Protocol):
    """A source whose positions live in the ledger (attached before ``start``)."""

    def attach_ledger(self, ledger: PartitionLedger, job: str) -> None: ...

    def attach_attempts(self, attempts: AttemptCounter) -> None: ...

    def on_partitions_changed(self, listener: Callable[[Task], None]) -> None:
        """``listener(tp)`` whenever a partition is claimed, revoked, lost or fenced."""
        ...


@runtime_checkable
class Replaying(Protocol):
    def replaying(self) -> set[Task]:
        """Partitions whose records of this batch were already published by a crashed owner."""
        ...


@runtime_checkable
class DeadLettering(Protocol):
    def flush_dead_letters(self) -> None: ...


@runtime_checkable
class GroupMember(Protocol):
    def outputs_refused(self) -> None:
        """The batch's transaction was refused as from a stale group member."""
        ...


@runtime_checkable
class ReplayAware(Protocol):
    """An output told which partitions of the batch it must not publish (being replayed)."""

    def skip_tasks(self, tasks: Iterable[Task]) -> None: ...


class Acknowledged(Protocol):
    """Any input source: it hears when a batch is durable."""

    def on_batch_persisted(self, batch_time_ms: int) -> None: ...


# why a batch was not committed (``commit_outputs``); None: it was
Abandoned = str


class BatchProtocol:
    """The steps of the module docstring for one job, over its sources and outputs.

    Without a ledger (no Kafka input, or no Redis checkpoint) outputs keep plain at-least-once
    semantics and state commits in one store transaction per batch.
    """

    def __init__(
        self,
        job: str,
        sources: Sequence[Acknowledged],
        participants: Sequence[BatchParticipant],
        *,
        forget_task: Callable[[Task], None],
        report_error: Callable[[BaseException], None],
        fatal: Callable[[BaseException], None],
        stopping: threading.Event,
    ) -> None:
        self.job = job
        self.sources = list(sources)
        self.participants = list(participants)
        # the engine's side: drop a partition's cached state; an error for awaitTermination;
        # an error that must stop the job
        self._forget_task = forget_task
        self._report_error = report_error
        self._fatal = fatal
        self._stopping = stopping
        self.ledger: BatchLedger | None = None

    @property
    def transactional(self) -> bool:
        """The job commits through the ledger, and its Kafka outputs in transactions."""
        return self.ledger is not None

    # -- start ---------------------------------------------------------------------------------
    def attach(
        self, store: StateStore, *, task_scoped: bool, durability: Mapping[str, Any]
    ) -> None:
        """A Kafka job on Redis commits through the ledger; anything else commits plainly."""
        if isinstance(store, RedisStateStore):
            check_redis(store.client)
        if not task_scoped:
            return
        if not isinstance(store, RedisStateStore):
            log.warning(
                "job %s reads Kafka without a redis:// checkpoint: state and offsets are not "
                "committed atomically (at-least-once)",
                self.job,
            )
            return
        # Redis down: retry until it answers (the service pauses), or until the job stops
        self.ledger = BatchLedger(
            store.client, retry_seconds=None, interrupt=self._stopping, **durability
        )
        for source in self.sources:
            if not isinstance(source, LedgerBound):
                continue
            source.attach_ledger(self.ledger, self.job)
            # a partition that moves (to us, or away) must be re-read from Redis next time
            source.on_partitions_changed(self._forget_task)
            source.attach_attempts(RedisAttempts(store.client))

    def initialise_outputs(self) -> None:
        """Transactional outputs get their producer at start: ``init_transactions`` aborts what
        a crashed predecessor left open, and makes what it committed final."""
        for participant in self._unsettled():
            participant.recover()
            participant.settled()

    # -- one batch -----------------------------------------------------------------------------
    def _unsettled(self) -> list[RecoverableParticipant]:
        return [
            p
            for p in self.participants
            if isinstance(p, RecoverableParticipant) and p.needs_recovery
        ]

    def settle(self) -> bool:
        """Step 1; False when there was nothing to settle. Raises while Kafka cannot tell (the
        caller pauses as for any outage, and calls again)."""
        unsettled = self._unsettled()
        if not unsettled:
            return False
        for participant in unsettled:
            participant.recover()
        for source in self.sources:
            if isinstance(source, GroupOffsetSource):
                source.find_published()
        for participant in unsettled:
            participant.settled()
        return True

    def begin(self, t: int) -> None:
        for participant in self.participants:
            participant.begin(t)

    def after_take(self) -> None:
        """Step 2: outputs skip the partitions being replayed."""
        replaying = {tp for s in self.sources if isinstance(s, Replaying) for tp in s.replaying()}
        for participant in self.participants:
            if isinstance(participant, ReplayAware):
                participant.skip_tasks(replaying)

    def flush_dead_letters(self) -> list[BaseException]:
        """Step 4; the failures, which abandon the batch like any error of it."""
        errors: list[BaseException] = []
        for source in self.sources:
            if not isinstance(source, DeadLettering):
                continue
            try:
                source.flush_dead_letters()
            except Exception as exc:
                errors.append(exc)
        return errors

    def abort_outputs(self, t: int) -> None:
        """An output op raised: discard what outputs wrote in this batch so far (they may run
        again within the batch, under dead-letter isolation)."""
        abort_all(self.participants, t)

    def commit_outputs(
        self, t: int, errors: Sequence[BaseException], tasks: Sequence[Task]
    ) -> Abandoned | None:
        """Step 5; None, or why the batch is abandoned ("error": it raised; "fenced",
        "outage", "outputs": its outputs could not commit), its records to be taken again.

        Without a ledger the outputs were flushed already and the batch persists regardless.
        """
        if self.ledger is None:
            failure = precommit_all(self.participants, t, [])
            if failure is not None:
                log.error("batch %d ms: output failed", t, exc_info=failure)
                self._report_error(failure)
            return None
        if errors:
            abort_all(self.participants, t)
            self.abandon(t, tasks)
            return "error"
        groups = [
            g
            for s in self.sources
            if isinstance(s, GroupOffsetSource) and (g := s.group_offsets()) is not None
        ]
        failure = precommit_all(self.participants, t, groups)
        if failure is None:
            return None
        if isinstance(failure, OutputFencedError):
            reason = "fenced"
            log.warning("batch %d ms not committed, fenced: %s", t, failure)
            for source in self.sources:
                if isinstance(source, GroupMember):
                    source.outputs_refused()
        elif is_outage(failure):
            reason = "outage"
            log.warning("batch %d ms not committed, Kafka unavailable: %s", t, failure)
        else:
            reason = "outputs"
            log.error("batch %d ms not committed: outputs failed", t, exc_info=failure)
        self.abandon(t, tasks)
        return reason

    def abandon(self, t: int, tasks: Sequence[Task]) -> None:
        """Forget what the batch changed here and hand its records out again (the caller drops
        the batch's state writes)."""
        for task in tasks:
            self._forget_task(task)
        for source in self.sources:
            if not isinstance(source, GroupOffsetSource):
                continue
            try:
                source.rewind()
            except Exception as exc:
                # records of the batch may be skipped: stop rather than commit past them
                self._fatal(exc)
        log.info("batch %d ms abandoned: tasks %s will be read again", t, list(tasks))

    def persist(
        self, t: int, tasks: Sequence[Task], writes: StateWrites, store: StateStore
    ) -> bool:
        """Step 6: the batch's state (and, for Kafka jobs, its positions) reach the store, or
        nothing does. False when a stop interrupted the ledger's retries through an outage:
        the batch is read again at restart (its published outputs are then replayed)."""
        if self.ledger is None:
            if not writes.is_empty():
                store.commit(writes)
            return True
        try:
            spans = [s for s in self.sources if isinstance(s, SpanSource)]
            results = commit_tasks(self.ledger, self.job, t, tasks, writes, spans)
        except Exception as exc:
            if not (self._stopping.is_set() and is_outage(exc)):
                raise
            log.warning("batch %d ms not committed: stopping while Redis is unavailable", t)
            for task in tasks:
                self._forget_task(task)
            return False
        for done in results:
            outcome = done.result.outcome if done.result is not None else None
            if outcome in (Outcome.FENCED, Outcome.GAP, Outcome.REGRESSED):
                log.warning(
                    "batch %d ms of partition %s refused (%s): dropping its state here",
                    t,
                    done.task,
                    outcome.value,
                )
            if outcome is not Outcome.APPLIED:
                # The task's writes did not reach Redis (no position yet, or refused), but its
                # caches took them: state fields and meta are written only when they differ from
                # the cache, so a kept cache would never write them (e.g. ``present``) and the
                # next owner would restore a state without them. Re-read the store instead.
                self._forget_task(done.task)
        return True

    def acknowledge(self, t: int) -> None:
        """Step 7."""
        for source in self.sources:
            source.on_batch_persisted(t)

    def close(self) -> None:
        for participant in self.participants:
            try:
                participant.close()
            except Exception:
                log.exception("output %s failed to close", participant)
