"""Partition ownership: which partitions an instance may commit, and from which offset it reads.

The source reads Kafka; this decides where from and under which owner epoch, so every rule of
the commit protocol about a partition's offsets lives here, beside the ledger it keeps to:

- **claim**: a partition assigned to us gets a new owner epoch from the ledger (fencing every
  earlier owner, ledger invariant I2) and is read from the offset the ledger records, which
  wins over Kafka's committed offset: a transaction commits its input offsets to the group
  just before the ledger step, so the group may be one batch ahead of what was persisted. An
  unrecorded partition starts where ``auto.offset.reset`` says; "latest" is resolved to the
  end offset at once, so even an idle partition records a position with its first batch.
- **spans**: each batch reports per partition the contiguous span ``[from, next)`` it covers,
  starting where the last one ended, so the ledger can refuse gaps and duplicates (I3).
- **fence**: the ledger refused our epoch. The partition is dropped; should the group still
  assign it to us a session timeout later (a claim that finished after its member was
  evicted), it is claimed again (``due_reclaims``) rather than left unread.
- **resync**: the ledger stands elsewhere than our batch began (GAP): read on from there.
- **reclaim**: Redis lost acknowledged writes of the partition (REGRESSED, I5): claim it again.
- **rewind**: the batch was not committed: positions go back to the spans' starts.
- **replay**: after a crash between the transaction and the ledger step, the group's committed
  offset ``K`` of a partition is ahead of the ledger's ``R`` - in no other case. The partition
  is read again over ``[R, K)`` as batches that end exactly at ``K`` (``replay_ends``), and
  ``replaying`` names them: their state is applied as usual, but outputs that honour it
  (``KafkaSink.skip_tasks``) do not publish them again, since the crashed owner did. While a
  replay runs, no commit lowers the group offset below ``K`` (``keep_marker``): it is the only
  record of what was published, and a second crash during the replay must find it again.
- **retention**: a recorded position below the log start means records were deleted before the
  job processed them; they are counted (``offsets_lost``) and reading goes on from the log
  start, never silently from wherever ``auto.offset.reset`` would go.

Kafka is reached only through ``PartitionLog``, so these rules are tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from service.commit.ledger import Position, Shard

log = structlog.get_logger(__name__)

Task = tuple[str, int]

# librdkafka's logical offsets, as a seek target
OFFSET_BEGINNING = -2
OFFSET_END = -1


class PartitionLedger(Protocol):
    """What ownership needs of ``BatchLedger`` to claim partitions."""

    def acquire_epoch(self, shard: Shard) -> int: ...

    def read_position(self, shard: Shard) -> Position | None: ...


class OffsetsUnknown(Exception):
    """Kafka did not say what the group has committed."""


class PartitionLog(Protocol):
    """What ownership asks of Kafka about partitions (the source's consumer answers)."""

    def watermarks(self, tp: Task) -> tuple[int, int]:
        """The log start and end offsets of ``tp``; -1 for what the broker did not say."""
        ...

    def committed(self, tps: Sequence[Task], *, strict: bool) -> dict[Task, int]:
        """The group's committed offsets (stable reads, KIP-447), for the partitions that have
        one. Raises ``OffsetsUnknown`` when Kafka does not answer, and with ``strict`` also
        when any partition answered with an error."""
        ...


@dataclass(frozen=True, slots=True)
class LedgerSpan:
    """One partition's part of a batch as the ledger sees it: owner epoch and offset span."""

    epoch: int
    from_offset: int
    next_offset: int


class PartitionOwnership:
    """The ownership of one consumer's partitions; the rules are in the module docstring.

    Without a ledger (an at-least-once job) only positions and spans are kept: there is no
    epoch, nothing to claim and nothing to replay.
    """

    def __init__(self, *, reset_to_end: bool, reclaim_after_s: float) -> None:
        self._reset_to_end = reset_to_end
        self._reclaim_after_s = reclaim_after_s
        self._ledger: PartitionLedger | None = None
        self._job = ""
        self._epochs: dict[Task, int] = {}
        # the offset the next batch of a partition starts at
        self._positions: dict[Task, int] = {}
        self._spans: dict[Task, LedgerSpan] = {}
        # partitions whose outputs up to this offset were published by a crashed owner
        self._replay_until: dict[Task, int] = {}
        # fenced partitions -> when (monotonic)
        self._fenced: dict[Task, float] = {}
        self._offsets_lost: dict[Task, int] = {}
        self._events: dict[str, int] = {"replay": 0, "resync": 0, "regressed": 0}

    def attach_ledger(self, ledger: PartitionLedger, job: str) -> None:
        self._ledger = ledger
        self._job = job

    @property
    def has_ledger(self) -> bool:
        return self._ledger is not None

    # -- claim, fence, resync, reclaim ---------------------------------------------------------

    def claim(self, kafka: PartitionLog, tps: Iterable[Task]) -> dict[Task, int]:
        """New owner epochs for ``tps``; returns where to read each from (maybe a logical
        offset). Raises what the ledger raises: nothing of a failed claim is read."""
        ledger = self._ledger
        assert ledger is not None, "claim needs a ledger"
        seeks: dict[Task, int] = {}
        for tp in tps:
            shard = Shard(self._job, *tp)
            self._epochs[tp] = ledger.acquire_epoch(shard)
            position = ledger.read_position(shard)
            if position is not None:
                seeks[tp] = self._readable_from(kafka, tp, position.next_offset)
                self._positions[tp] = position.next_offset
                continue
            # Never recorded: this job has not processed the partition. Kafka's committed offset
            # may be ahead of what was persisted, so it is not trusted; auto.offset.reset decides.
            start = self._resolve_reset(kafka, tp)
            seeks[tp] = start
            if start >= 0:
                self._positions[tp] = start
            else:
                self._positions.pop(tp, None)
        self._find_replays(kafka, seeks)
        log.info("kafka_partitions_claimed", epochs=dict(self._epochs), seeks=seeks)
        return seeks

    def fence(self, tp: Task) -> None:
        """The ledger refused our epoch: ``tp`` is forgotten, and claimed again if the group
        still assigns it to us once ``reclaim_after_s`` has passed (``due_reclaims``)."""
        self.forget([tp])
        self._fenced[tp] = time.monotonic()

    def due_reclaims(self) -> list[Task]:
        """Fenced partitions whose wait is over; each leaves the fenced set (``fence_again``
        puts back one whose claim failed)."""
        now = time.monotonic()
        due = [tp for tp, at in self._fenced.items() if now - at >= self._reclaim_after_s]
        for tp in due:
            del self._fenced[tp]
        return due

    def fence_again(self, tps: Iterable[Task]) -> None:
        now = time.monotonic()
        for tp in tps:
            self._fenced[tp] = now

    def unfence(self, tps: Iterable[Task]) -> list[Task]:
        """A rebalance decided about ``tps``: no reclaim is pending any more. Returns those that
        were fenced."""
        return [tp for tp in tps if self._fenced.pop(tp, None) is not None]

    @property
    def fenced(self) -> set[Task]:
        return set(self._fenced)

    def resync(self, kafka: PartitionLog, tp: Task, next_offset: int) -> int:
        """GAP: the ledger stands at ``next_offset``. Returns where to read ``tp`` from. Behind
        where we were (Redis lost commits), what we published past it is replayed without
        outputs, as after a crash: the group offset says how far."""
        self._spans.pop(tp, None)
        self._positions[tp] = next_offset
        seek = self._readable_from(kafka, tp, next_offset)
        self._events["resync"] += 1
        self._find_replays(kafka, {tp: next_offset})
        return seek

    def reclaim(self, kafka: PartitionLog, tp: Task) -> int:
        """REGRESSED: a new epoch and the position Redis still records (``claim``); returns
        where to read ``tp`` from."""
        self._spans.pop(tp, None)
        self._replay_until.pop(tp, None)
        seek = self.claim(kafka, [tp])[tp]
        self._events["regressed"] += 1
        return seek

    def forget(self, tps: Iterable[Task]) -> None:
        """``tps`` are not ours any more (revoked, lost, fenced)."""
        for tp in tps:
            self._epochs.pop(tp, None)
            self._positions.pop(tp, None)
            self._spans.pop(tp, None)
            self._replay_until.pop(tp, None)

    # -- replays --------------------------------------------------------------------------------

    def find_published(self, kafka: PartitionLog, owned: Iterable[Task]) -> None:
        """After a transaction whose commit is unknown, once it was settled: where the group's
        offset is past our position, the transaction committed, so those records are replayed
        without their outputs. Raises ``OffsetsUnknown`` when the offsets cannot be read."""
        seeks = {tp: self._positions[tp] for tp in owned if tp in self._positions}
        if seeks:
            self._find_replays(kafka, seeks, strict=True)

    def _find_replays(
        self, kafka: PartitionLog, seeks: Mapping[Task, int], *, strict: bool = False
    ) -> None:
        """Partitions whose group offset is ahead of where we start. Should the offsets not be
        visible yet, or Kafka not answer, nothing is replayed and outputs may repeat one batch:
        never a loss (``strict``: raise instead)."""
        try:
            committed = kafka.committed(list(seeks), strict=strict)
        except OffsetsUnknown as exc:
            if strict:
                raise
            log.warning("kafka_replay_check_failed", error=str(exc))
            return
        for tp, offset in committed.items():
            start = seeks[tp]
            # an unrecorded partition starting at the beginning replays up to the group offset
            ahead = offset > start if start >= 0 else start == OFFSET_BEGINNING
            if ahead:
                self._replay_until[tp] = offset
                self._events["replay"] += 1
                log.warning("kafka_partition_replay", partition=tp, start=start, until=offset)

    def replay_ends(self, head_offset: Callable[[Task], int | None]) -> Mapping[Task, int]:
        """Where each running replay's batches must end; a replay whose records below its end
        are gone (retention, compaction: the next buffered record is at or past it) is over."""
        for tp, end in list(self._replay_until.items()):
            head = head_offset(tp)
            if head is not None and head >= end:
                del self._replay_until[tp]
        return dict(self._replay_until)

    def replaying(self, taken: Iterable[Task]) -> set[Task]:
        """The partitions among ``taken`` (those with records in the batch) being replayed."""
        return {tp for tp in taken if tp in self._replay_until}

    def keep_marker(self, tp: Task, offset: int) -> int:
        """The group offset to commit for ``tp``: never below a running replay's end."""
        return max(offset, self._replay_until.get(tp, offset))

    # -- spans and positions ----------------------------------------------------------------------

    def record_spans(self, owned: Iterable[Task], taken: Mapping[Task, tuple[int, int]]) -> None:
        """Each owned partition's span in the batch just taken (``taken``: the offsets
        ``[from, until)`` handed out), contiguous with the last one. A partition whose position
        is still unknown (never read, nothing recorded) has no span: nothing to commit."""
        self._spans = {}
        for tp in set(owned) | taken.keys():
            handed = taken.get(tp)
            start = self._positions.get(tp, handed[0] if handed is not None else None)
            if start is None:
                continue
            end = handed[1] if handed is not None else start
            self._positions[tp] = end
            self._spans[tp] = LedgerSpan(self._epochs.get(tp, 0), start, end)

    def span(self, tp: Task) -> LedgerSpan | None:
        return self._spans.get(tp)

    @property
    def spans(self) -> dict[Task, LedgerSpan]:
        return dict(self._spans)

    def group_offsets(self) -> dict[Task, int]:
        """Where the batch just taken ends per partition, as the group offsets to commit."""
        return {tp: self.keep_marker(tp, s.next_offset) for tp, s in self._spans.items()}

    def withdraw(self, tp: Task) -> None:
        """``tp``'s part of the batch is not committed: its span is dropped and its position goes
        back to the span's start, so the next batch covers those offsets again."""
        span = self._spans.pop(tp, None)
        if span is not None:
            self._positions[tp] = span.from_offset

    def rewind(self) -> dict[Task, LedgerSpan]:
        """The batch just taken is not committed: every position goes back to its span's start.
        Returns the spans withdrawn."""
        spans, self._spans = self._spans, {}
        for tp, span in spans.items():
            self._positions[tp] = span.from_offset
        return spans

    def positions(self) -> dict[Task, int]:
        return dict(self._positions)

    def persisted(self) -> None:
        """A batch is durable: replays whose end the positions reached are over."""
        for tp, end in list(self._replay_until.items()):
            if self._positions.get(tp, -1) >= end:
                del self._replay_until[tp]
                log.info("kafka_partition_replayed", partition=tp, until=end)

    # -- where to read from -------------------------------------------------------------------

    def _resolve_reset(self, kafka: PartitionLog, tp: Task) -> int:
        if not self._reset_to_end:
            return OFFSET_BEGINNING
        _, high = kafka.watermarks(tp)
        return high if high >= 0 else OFFSET_END

    def _readable_from(self, kafka: PartitionLog, tp: Task, recorded: int) -> int:
        """The ``recorded`` position, or the log start when retention deleted records there
        before the job processed them (counted and logged as an error). The span still starts
        at ``recorded``, so the next commit is contiguous with what the ledger holds."""
        low, _ = kafka.watermarks(tp)
        if low < 0 or recorded >= low:
            return recorded
        lost = low - recorded
        self._offsets_lost[tp] = self._offsets_lost.get(tp, 0) + lost
        log.error(
            "kafka_records_deleted_before_processing",
            partition=tp,
            recorded_offset=recorded,
            log_start_offset=low,
            offsets_lost=lost,
            hint="retention deleted input the job had not processed (it was down, or lagged, "
            "for longer than the topic's retention.ms): state and outputs miss those records",
        )
        return low

    # -- for metrics ------------------------------------------------------------------------------

    @property
    def offsets_lost(self) -> dict[Task, int]:
        return dict(self._offsets_lost)

    @property
    def events(self) -> dict[str, int]:
        return dict(self._events)
