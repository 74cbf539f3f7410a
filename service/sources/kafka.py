"""Kafka as an ``InputSource``: bounded per-partition batches, offsets committed after persistence.

Auto-commit is off, so Kafka's committed offset only moves in ``on_batch_persisted``. With a
ledger attached (a Kafka job checkpointed to Redis), Redis holds the authoritative positions: on
assignment the source takes a new owner epoch per partition and seeks to the recorded offset,
and each batch reports per partition the contiguous offset span ``[from, next)`` it covers, so
the ledger can refuse gaps and duplicates (service/commit/ledger.py). Without a ledger, a crash
between reading and persisting means the records are read again (at-least-once). A cap per
partition per batch (``maxRatePerPartition`` x batch interval) bounds a batch: a partition whose
buffer reaches the cap is paused so the rest of a backlog stays in Kafka, and resumed once a batch
has taken from it. Records fetched beyond the cap stay buffered for the next batch, never dropped.

Where each partition is read from, under which owner epoch, and which batches replay what a
crashed owner published, is decided by ``service.commit.ownership.PartitionOwnership``; this
module reads Kafka and carries those decisions out (seek, pause, resume, commit).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from service.commit.attempts import AttemptCounter
from service.commit.batch import GroupOffsets
from service.commit.ownership import (
    LedgerSpan,
    OffsetsUnknown,
    PartitionLedger,
    PartitionOwnership,
)
from service.runtime.deadline import DeadlineExceeded, call_with_deadline
from service.runtime.kafka_logs import kafka_logger
from service.sinks.dead_letter import DeadLetterQueue, RecordTooLarge, record_size

log = structlog.get_logger(__name__)

TopicPartitionKey = tuple[str, int]

# The largest slice of one consume() call: short enough to serve rebalances and stop requests.
_MAX_POLL_SECONDS = 0.5
_CONSUME_BATCH = 500
_COMMITTED_TIMEOUT_SECONDS = 30.0
# How long a claim waits for the group's offsets (inside a rebalance callback; without them
# nothing is replayed).
_REPLAY_CHECK_SECONDS = 10.0
# librdkafka's default session.timeout.ms; a fenced partition still ours after it is claimed again
_DEFAULT_SESSION_TIMEOUT_MS = 45_000
_MIN_RECLAIM_SECONDS = 5.0
# How long a stop waits for the consumer to leave its group (within the stop's grace period).
_CLOSE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One consumed record, detached from librdkafka's message object."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    # only when the source keeps them (``keep_headers``)
    headers: tuple[tuple[str, bytes | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class OffsetSpan:
    """The offsets ``[from_offset, until_offset)`` of one partition handed out in one batch."""

    topic: str
    partition: int
    from_offset: int
    until_offset: int
    # records in the span; fewer than the offsets where transaction markers or compaction left gaps
    records: int = 0


def records_per_batch(max_rate_per_partition: float | None, batch_interval_s: float) -> int | None:
    """Spark's per-partition cap: rate x interval, at least one record so a backlog progresses."""
    if max_rate_per_partition is None:
        return None
    if max_rate_per_partition <= 0:
        raise ValueError("maxRatePerPartition must be > 0")
    if batch_interval_s <= 0:
        raise ValueError("batch interval must be > 0")
    return max(1, math.floor(max_rate_per_partition * batch_interval_s))


class PartitionBuffers:
    """Per-partition FIFO buffers with the cap and the offsets handed out per batch.

    Kept apart from the consumer so the bookkeeping that decides what is committed can be
    tested without a broker.
    """

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self._buffers: dict[TopicPartitionKey, deque[KafkaRecord]] = {}
        # batch time -> partition -> next offset to commit once that batch is persisted
        self._handed_out: dict[int, dict[TopicPartitionKey, int]] = {}
        self.last_spans: list[OffsetSpan] = []

    def add(self, record: KafkaRecord) -> bool:
        """Buffer a record; True when its partition has reached the cap and should pause."""
        tp = (record.topic, record.partition)
        buffer = self._buffers.setdefault(tp, deque())
        buffer.append(record)
        return self.cap is not None and len(buffer) >= self.cap

    def size(self, tp: TopicPartitionKey) -> int:
        buffer = self._buffers.get(tp)
        return len(buffer) if buffer is not None else 0

    def total(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def head_offset(self, tp: TopicPartitionKey) -> int | None:
        buffer = self._buffers.get(tp)
        return buffer[0].offset if buffer else None

    def at_cap(self, tp: TopicPartitionKey) -> bool:
        return self.cap is not None and self.size(tp) >= self.cap

    def take(
        self, batch_time_ms: int, until: Mapping[TopicPartitionKey, int] | None = None
    ) -> list[list[KafkaRecord]]:
        """Remove up to ``cap`` records per partition and remember their offsets for the batch.

        One list per Kafka partition that had records, like a KafkaRDD's partitions. A
        partition in ``until`` hands out only records below that offset (a replay's end).
        """
        taken: list[list[KafkaRecord]] = []
        offsets: dict[TopicPartitionKey, int] = {}
        spans: list[OffsetSpan] = []
        for tp in sorted(self._buffers):
            buffer = self._buffers[tp]
            n = len(buffer) if self.cap is None else min(self.cap, len(buffer))
            end = until.get(tp) if until else None
            if end is not None:
                n = next((i for i in range(n) if buffer[i].offset >= end), n)
            if n == 0:
                continue
            part = [buffer.popleft() for _ in range(n)]
            taken.append(part)
            offsets[tp] = part[-1].offset + 1
            spans.append(OffsetSpan(tp[0], tp[1], part[0].offset, part[-1].offset + 1, n))
        if offsets:
            self._handed_out[batch_time_ms] = offsets
        self.last_spans = spans
        return taken

    def persisted(self, batch_time_ms: int) -> dict[TopicPartitionKey, int]:
        """Forget batches up to ``batch_time_ms`` and return the offsets they make committable."""
        committable: dict[TopicPartitionKey, int] = {}
        for t in sorted(k for k in self._handed_out if k <= batch_time_ms):
            for tp, offset in self._handed_out.pop(t).items():
                committable[tp] = max(offset, committable.get(tp, offset))
        return committable

    def put_back(
        self, tp: TopicPartitionKey, batch_time_ms: int, records: Sequence[KafkaRecord]
    ) -> None:
        """Undo the hand-out of ``tp`` in a batch: ``records`` go first in line again."""
        self._buffers.setdefault(tp, deque()).extendleft(reversed(records))
        offsets = self._handed_out.get(batch_time_ms)
        if offsets is not None:
            offsets.pop(tp, None)
            if not offsets:
                del self._handed_out[batch_time_ms]

    def drop(self, tps: Iterable[TopicPartitionKey]) -> int:
        """Forget revoked partitions, buffered and handed out; returns the records dropped."""
        dropped = 0
        for tp in tps:
            buffer = self._buffers.pop(tp, None)
            dropped += len(buffer) if buffer is not None else 0
            for offsets in self._handed_out.values():
                offsets.pop(tp, None)
        self._handed_out = {t: o for t, o in self._handed_out.items() if o}
        return dropped


class KafkaSource:
    """Reads topics through one consumer-group member (or fixed partitions with ``from_offsets``).

    ``convert`` turns each ``KafkaRecord`` into the element the DStream sees, so decoding
    happens once, when a batch is taken. With ``dead_letters``, a record larger than the limit
    or whose ``convert`` raises is dead-lettered there and left out of the batch; its offset
    stays in the batch's span, so the partition moves past it (docs/dead-letters.md).
    """

    def __init__(
        self,
        consumer_config: Mapping[str, Any],
        topics: Sequence[str],
        *,
        batch_interval_s: float,
        max_rate_per_partition: float | None = None,
        from_offsets: Mapping[TopicPartitionKey, int] | None = None,
        convert: Callable[[KafkaRecord], Any] | None = None,
        dead_letters: DeadLetterQueue | None = None,
        keep_headers: bool = False,
        after_persist: Callable[[Mapping[TopicPartitionKey, int]], None] | None = None,
    ) -> None:
        """``after_persist``: told, after each persisted batch, the offsets below which every
        record of its partitions is persisted (a repartition topic purges below them)."""
        if not topics and not from_offsets:
            raise ValueError("KafkaSource needs at least one topic or a fromOffsets mapping")
        self._config = consumer_settings(consumer_config)
        self._topics = list(topics)
        self._from_offsets = dict(from_offsets or {})
        self._convert = convert
        self.dead_letters = dead_letters
        self._keep_headers = keep_headers
        self._after_persist = after_persist
        # the raw records behind each partition's elements in the batch taken last, same order
        self._last_raw: dict[TopicPartitionKey, list[KafkaRecord]] = {}
        # the batch taken last and its records per partition, for ``rewind``
        self._taken: tuple[int, dict[TopicPartitionKey, list[KafkaRecord]]] = (0, {})
        self._buffers = PartitionBuffers(
            records_per_batch(max_rate_per_partition, batch_interval_s)
        )
        self._consumer: Consumer | None = None
        self._assigned: set[TopicPartitionKey] = set()
        self._paused: set[TopicPartitionKey] = set()
        # persisted but not yet committed (a failed commit is retried with the next one)
        self._committable: dict[TopicPartitionKey, int] = {}
        self._errors_seen: set[int] = set()
        # kind -> errors so far, for metrics
        self._error_counts: dict[str, int] = {"kafka_consume": 0, "kafka_commit": 0}
        # since when (monotonic) every batch's transaction was refused for a stale membership,
        # with no rebalance meanwhile (``outputs_refused``)
        self._refused_since: float | None = None
        session_ms = int(self._config.get("session.timeout.ms", _DEFAULT_SESSION_TIMEOUT_MS))
        self._reclaim_after_s = max(session_ms / 1000.0, _MIN_RECLAIM_SECONDS)
        self._owner = PartitionOwnership(
            reset_to_end=_resets_to_end(self._config), reclaim_after_s=self._reclaim_after_s
        )
        self._partition_listener: Callable[[TopicPartitionKey], None] | None = None

    def on_partitions_changed(self, listener: Callable[[TopicPartitionKey], None]) -> None:
        """``listener(tp)`` runs (on the batch thread, between batches) whenever a partition is
        claimed, revoked, lost or fenced: whatever was cached for it may be stale now."""
        self._partition_listener = listener

    def attach_ledger(self, ledger: PartitionLedger, job: str) -> None:
        """Make Redis the authority on positions; called by the context before ``start``."""
        self._owner.attach_ledger(ledger, job)

    def attach_attempts(self, attempts: AttemptCounter) -> None:
        """Count failed attempts in Redis (called by the context with the ledger)."""
        if self.dead_letters is not None:
            self.dead_letters.attach_attempts(attempts)

    def raw_records(self, tp: TopicPartitionKey) -> list[KafkaRecord]:
        """The records behind ``tp``'s elements in the batch taken last, in the same order."""
        return list(self._last_raw.get(tp, []))

    def rewind_partition(
        self, tp: TopicPartitionKey, batch_time_ms: int, keep: Sequence[KafkaRecord]
    ) -> None:
        """The batch's part of ``tp`` is not committed: hand ``keep`` out again next batch.

        ``tp``'s span is withdrawn (nothing of it reaches the ledger) and its position goes
        back to the span's start, so the next batch's span covers these offsets again.
        """
        self._owner.withdraw(tp)
        self._buffers.put_back(tp, batch_time_ms, keep)
        self._last_raw.pop(tp, None)

    def flush_dead_letters(self) -> None:
        """Make the batch's dead letters durable; called before the batch's ledger step."""
        if self.dead_letters is not None:
            self.dead_letters.flush()

    def ledger_span(self, tp: TopicPartitionKey) -> LedgerSpan | None:
        """The last batch's span of ``tp``; None when the partition's position is still unknown
        (never read and nothing recorded: it has no state to commit either)."""
        return self._owner.span(tp)

    def fence(self, tp: TopicPartitionKey) -> None:
        """The ledger refused our epoch: someone claimed ``tp`` after us. Drop everything of it
        and stop fetching it; it is claimed again should the group still assign it to us after
        a while (``PartitionOwnership.fence``)."""
        self._forget([tp], reason="fenced")
        self._owner.fence(tp)
        if self._consumer is not None:
            try:
                self._consumer.pause([TopicPartition(*tp)])
            except KafkaException as exc:
                log.warning("kafka_pause_failed", partition=tp, error=str(exc))

    def _reclaim_fenced(self, consumer: Consumer) -> None:
        """Claim again the fenced partitions the group still assigns to us."""
        due = self._owner.due_reclaims()
        if not due:
            return
        assigned = {(p.topic, p.partition) for p in consumer.assignment()}
        ours = [tp for tp in due if tp in assigned and tp not in self._assigned]
        if not ours:
            return
        try:
            seeks = self._owner.claim(ConsumerLog(consumer), ours)
            for tp in ours:
                self._read_from(consumer, tp, seeks[tp])
        except Exception as exc:
            # Redis or Kafka not answering: try again after another while
            log.warning("kafka_reclaim_failed", partitions=ours, error=str(exc))
            self._owner.forget(ours)
            self._owner.fence_again(ours)
            return
        self._assigned.update(ours)
        self._notify_changed(ours)
        log.warning("kafka_partitions_reclaimed", partitions=sorted(ours), seeks=seeks)

    def resync(self, tp: TopicPartitionKey, next_offset: int) -> None:
        """The ledger stands at ``next_offset`` of ``tp``, not where our batch began (GAP):
        read on from there. Buffered records of ``tp`` are dropped and fetched again."""
        consumer = self._consumer
        if tp not in self._assigned or consumer is None:
            return
        try:
            seek = self._owner.resync(ConsumerLog(consumer), tp, next_offset)
            dropped = self._read_from(consumer, tp, seek)
        except KafkaException as exc:
            # cannot move the fetch position: better stop reading it than read the wrong offsets
            log.error("kafka_resync_failed", partition=tp, offset=next_offset, error=str(exc))
            self._forget([tp], reason="fenced")
            return
        self._notify_changed([tp])
        log.warning("kafka_partition_resynced", partition=tp, offset=next_offset, dropped=dropped)

    def reclaim(self, tp: TopicPartitionKey) -> None:
        """Redis lost acknowledged writes of ``tp`` (ledger I5): claim it again and drop what
        was buffered or cached for it."""
        consumer = self._consumer
        if tp not in self._assigned or consumer is None:
            return
        try:
            seek = self._owner.reclaim(ConsumerLog(consumer), tp)
            dropped = self._read_from(consumer, tp, seek)
        except Exception as exc:
            log.error("kafka_reclaim_failed", partition=tp, error=str(exc))
            self.fence(tp)  # read nothing of it until it is claimed again
            return
        self._notify_changed([tp])
        log.error("kafka_partition_reclaimed_after_loss", partition=tp, seek=seek, dropped=dropped)

    def _read_from(self, consumer: Consumer, tp: TopicPartitionKey, offset: int) -> int:
        """Fetch ``tp`` again from ``offset``: what was buffered or waiting for a commit of it is
        dropped, and a pause lifted. Returns the records dropped."""
        dropped = self._buffers.drop([tp])
        self._committable.pop(tp, None)
        consumer.resume([TopicPartition(*tp)])
        self._paused.discard(tp)
        consumer.seek(TopicPartition(tp[0], tp[1], offset))
        return dropped

    @property
    def offsets_lost(self) -> dict[TopicPartitionKey, int]:
        """Input offsets deleted by retention before this source processed them, per partition;
        for metrics and readiness."""
        return self._owner.offsets_lost

    def find_published(self) -> None:
        """After a transaction whose commit is unknown (``AmbiguousCommitError``), once a new
        producer's ``init_transactions`` settled it: where the group's offset is past our
        position, the transaction committed, so those records are replayed without their
        outputs. Raises when the offsets cannot be read."""
        consumer = self._require_consumer()
        self._owner.find_published(ConsumerLog(consumer), self._assigned)

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    @property
    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka settings of the consumer (for clients that reach the same cluster)."""
        return dict(self._config)

    @property
    def cap(self) -> int | None:
        return self._buffers.cap

    @property
    def assigned_partitions(self) -> list[TopicPartitionKey]:
        """The partitions this source currently reads, as seen by its rebalance callbacks."""
        return sorted(self._assigned)

    @property
    def last_offset_ranges(self) -> list[OffsetSpan]:
        """The offsets of the batch taken last, like ``KafkaRDD.offsetRanges()``."""
        return list(self._buffers.last_spans)

    @property
    def error_counts(self) -> dict[str, int]:
        """Consume and commit errors since the source was built, by kind (for metrics)."""
        return dict(self._error_counts)

    @property
    def partition_events(self) -> dict[str, int]:
        """Partitions replayed at a claim ("replay") and resynced to the ledger's position after
        a gap ("resync") since the source was built (for metrics)."""
        return self._owner.events

    def partition_lag(self) -> dict[TopicPartitionKey, int]:
        """Records of each owned partition not yet handed to a batch (for metrics).

        High watermark minus fetch position plus what is buffered; both come from the consumer's
        local state (the high watermark as of the last fetch), so no broker round trip is made.
        Call it from the batch thread, which owns the consumer.
        """
        consumer = self._consumer
        if consumer is None or not self._assigned:
            return {}
        lag: dict[TopicPartitionKey, int] = {}
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in self._assigned])
            for tp in positions:
                key = (tp.topic, tp.partition)
                watermarks = consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset < 0 or watermarks is None or watermarks[1] < 0:
                    continue  # not fetched yet: unknown, not zero
                lag[key] = max(0, watermarks[1] - tp.offset) + self._buffers.size(key)
        except (KafkaException, RuntimeError) as exc:
            log.debug("kafka_lag_unavailable", error=str(exc))
        return lag

    def start(self) -> None:
        consumer = Consumer(dict(self._config))
        self._consumer = consumer
        if self._from_offsets:
            starts = self._start_offsets(consumer)
            if self._owner.has_ledger:
                # recorded positions win; unrecorded partitions keep their fromOffsets
                claimed = self._owner.claim(ConsumerLog(consumer), starts)
                recorded = {tp: o for tp, o in claimed.items() if o >= 0}
                starts.update(recorded)
            consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
            self._assigned = set(starts)
            log.info("kafka_source_assigned", offsets=starts, cap=self.cap)
        else:
            consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info("kafka_source_subscribed", topics=self._topics, cap=self.cap)

    def _start_offsets(self, consumer: Consumer) -> dict[TopicPartitionKey, int]:
        """``fromOffsets``, except where the group committed since: a restart resumes there.

        The committed offset plays the part of Spark's checkpointed offsets, which also win over
        ``fromOffsets`` when a job recovers.
        """
        starts = dict(self._from_offsets)
        asked = [TopicPartition(t, p) for t, p in starts]
        for tp in consumer.committed(asked, timeout=_COMMITTED_TIMEOUT_SECONDS):
            if tp.error is None and tp.offset >= 0:
                starts[(tp.topic, tp.partition)] = tp.offset
        return starts

    def fill(self, deadline: float) -> None:
        self.fill_turn(deadline)

    def fill_turn(self, deadline: float) -> int:
        consumer = self._require_consumer()
        if self._owner.fenced:
            self._reclaim_fenced(consumer)
        arrived = 0
        while True:
            # Always poll once, even past the deadline or with every partition paused: rebalance
            # callbacks run only inside consume(), and a member that never polls stalls its group.
            remaining = deadline - time.monotonic()
            idle = remaining <= 0 or self._all_paused()
            timeout = 0.0 if idle else min(remaining, _MAX_POLL_SECONDS)
            messages = consumer.consume(num_messages=_CONSUME_BATCH, timeout=timeout)
            arrived += len(messages)
            to_pause: list[TopicPartitionKey] = []
            for message in messages:
                record = self._record(message)
                if record is None:
                    continue
                tp = (record.topic, record.partition)
                if tp not in self._assigned:
                    # fetched before a revoke took effect; the new owner reads it again
                    continue
                if self._buffers.add(record) and tp not in self._paused:
                    to_pause.append(tp)
            if to_pause:
                consumer.pause([TopicPartition(t, p) for t, p in to_pause])
                self._paused.update(to_pause)
            if idle:
                return arrived

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        return [x for part in self.take_partitions(batch_time_ms) for x in part]

    def take_partitions(self, batch_time_ms: int) -> list[list[Any]]:
        """The batch with one RDD partition per Kafka partition, as Spark's direct stream has."""
        replay_ends = self._owner.replay_ends(self._buffers.head_offset)
        parts = self._buffers.take(batch_time_ms, replay_ends)
        # kept until the next take, for ``rewind``
        self._taken = (batch_time_ms, {(p[0].topic, p[0].partition): p for p in parts if p})
        self._record_spans()
        to_resume = [tp for tp in self._paused if not self._buffers.at_cap(tp)]
        if to_resume and self._consumer is not None:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
            self._paused.difference_update(to_resume)
        if self.dead_letters is None:
            convert = self._convert
            if convert is None:
                return [list(part) for part in parts]
            return [[convert(r) for r in part] for part in parts]
        self._last_raw = {}
        out: list[list[Any]] = []
        for part in parts:
            kept, elements = self._convert_or_reject(part)
            if part:
                self._last_raw[(part[0].topic, part[0].partition)] = kept
            out.append(elements)
        return out

    def _convert_or_reject(self, part: list[KafkaRecord]) -> tuple[list[KafkaRecord], list[Any]]:
        """Oversize (checked before decoding) and undecodable records go to the dead letters."""
        dlq = self.dead_letters
        assert dlq is not None
        limit = dlq.policy.max_record_bytes
        kept: list[KafkaRecord] = []
        elements: list[Any] = []
        for record in part:
            try:
                if limit is not None and (size := record_size(record)) > limit:
                    raise RecordTooLarge(f"record of {size} bytes exceeds the limit of {limit}")
                element = record if self._convert is None else self._convert(record)
            except Exception as exc:
                # deterministic: another attempt would fail the same way
                dlq.reject(record, exc)
                continue
            kept.append(record)
            elements.append(element)
        return kept, elements

    def take_tasks(self, batch_time_ms: int) -> list[tuple[TopicPartitionKey, list[Any]]]:
        """The batch as ``((topic, partition), records)`` for every owned partition, empty or not.

        The engine keeps state per partition (its task): an owned partition without records
        still appears, so its state and windows advance with the batch.
        """
        parts = self.take_partitions(batch_time_ms)
        spans = self._buffers.last_spans  # one per taken partition, in the same order
        taken = {(s.topic, s.partition): p for s, p in zip(spans, parts, strict=True)}
        return [(tp, taken.get(tp, [])) for tp in sorted(self._assigned | taken.keys())]

    def _record_spans(self) -> None:
        """Each owned partition's span in the batch just taken, contiguous with the last one."""
        taken = {
            (s.topic, s.partition): (s.from_offset, s.until_offset)
            for s in self._buffers.last_spans
        }
        self._owner.record_spans(self._assigned, taken)

    def group_offsets(self) -> GroupOffsets | None:
        """Where the batch just taken ends, with the consumer's group generation: the offsets a
        transactional output commits with its records, so a zombie's commit is refused."""
        offsets = self._owner.group_offsets()
        if self._consumer is None or not offsets:
            return None
        return GroupOffsets(offsets, self._consumer.consumer_group_metadata())

    def rewind(self) -> None:
        """The batch just taken was not committed: hand its records out again, in order.

        Its records go back to the head of their partitions' buffers and the positions back to
        the spans' starts, so the next batch's spans start where the ledger expects them.
        """
        spans = self._owner.rewind()
        batch_ms, taken = self._taken
        for tp in spans:
            # first in line again, before what was fetched after them
            self._buffers.put_back(tp, batch_ms, taken.get(tp, []))
        self._taken = (batch_ms, {})
        log.info("kafka_batch_rewound", offsets={tp: s.from_offset for tp, s in spans.items()})

    def replaying(self) -> set[TopicPartitionKey]:
        """Partitions whose records in the batch just taken were published by a crashed owner
        (a partition without records in the batch replays nothing: its outputs are new)."""
        return self._owner.replaying(self._taken[1])

    def outputs_refused(self) -> None:
        """The batch's transaction was refused as from a stale group member (UNKNOWN_MEMBER_ID,
        ILLEGAL_GENERATION). Normally a rebalance follows at once and moves the partitions. But
        after a broker restart the consumer's group state can stay stuck where it believes it
        still owns its partitions while the coordinator has removed it: no heartbeat error, no
        rebalance, every transaction refused, the partitions unread for good (seen in the
        broker-restart fault scenario). Refused for longer than a session timeout with no
        rebalance meanwhile, the consumer is replaced and joins the group anew, as Kafka
        Streams enforces a rebalance when its tasks migrated."""
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
        elif now - self._refused_since >= self._reclaim_after_s:
            self._restart_consumer(now - self._refused_since)

    def _restart_consumer(self, refused_s: float) -> None:
        consumer = self._consumer
        if consumer is None or self._from_offsets:
            return
        self._refused_since = None
        owned = sorted(self._assigned | self._owner.fenced)
        self._owner.unfence(owned)
        self._forget(owned, reason="lost")
        log.warning(
            "kafka_consumer_rejoining",
            reason="the group refused every transaction as from an unknown member, with no "
            "rebalance",
            refused_seconds=round(refused_s, 1),
            partitions=owned,
        )
        self._consumer = None
        try:
            call_with_deadline("consumer_close", _CLOSE_SECONDS, consumer.close)
        except (DeadlineExceeded, KafkaException) as exc:
            log.warning("kafka_consumer_close_slow", error=str(exc))
        self.start()

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        self._refused_since = None
        self._owner.persisted()
        persisted = self._buffers.persisted(batch_time_ms)
        for tp, offset in persisted.items():
            if tp in self._assigned:
                self._committable[tp] = max(offset, self._committable.get(tp, offset))
        self._commit(list(self._committable))
        if self._after_persist is not None and persisted:
            self._after_persist(persisted)

    def stop(self) -> None:
        if self._consumer is None:
            return
        buffered = self._buffers.total()
        # a commit that failed earlier gets a last chance while the partitions are still ours
        self._commit(list(self._committable))
        consumer, self._consumer = self._consumer, None
        try:
            # Leaving the group can wait on a rebalance in progress; everything of ours is
            # persisted by now, and the group drops a member that went silent anyway.
            call_with_deadline("consumer_close", _CLOSE_SECONDS, consumer.close)
        except DeadlineExceeded as exc:
            log.warning("kafka_consumer_close_slow", error=str(exc))
        if self.dead_letters is not None:
            self.dead_letters.close()
        self._assigned.clear()
        self._paused.clear()
        log.info("kafka_source_stopped", unpersisted_buffered=buffered)

    def _all_paused(self) -> bool:
        """Every owned partition holds a full batch: polling longer cannot add to the next one."""
        return bool(self._assigned) and self._assigned <= self._paused

    def _require_consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("KafkaSource used before start() or after stop()")
        return self._consumer

    def _record(self, message: Message) -> KafkaRecord | None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() == KafkaError._PARTITION_EOF:
                return None
            self._error_counts["kafka_consume"] += 1
            if error.code() not in self._errors_seen:
                self._errors_seen.add(error.code())
                log.warning("kafka_consume_error", error=str(error))
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return None
        _, timestamp = message.timestamp()
        headers = None
        if self._keep_headers:
            headers = tuple((str(h[0]), _header_bytes(h[1])) for h in message.headers() or ())
        return KafkaRecord(
            topic,
            partition,
            offset,
            message.key(),
            message.value(),
            timestamp if timestamp >= 0 else None,
            headers,
        )

    def _commit(self, tps: list[TopicPartitionKey]) -> None:
        """Synchronously commit what is committable for ``tps``; on failure keep it for later."""
        offsets = {
            tp: self._owner.keep_marker(tp, self._committable[tp])
            for tp in tps
            if tp in self._committable
        }
        if not offsets or self._consumer is None:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            results = self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            # Not fatal to correctness: the records are persisted, a later commit covers them,
            # and at worst they are read again.
            self._error_counts["kafka_commit"] += 1
            log.warning("kafka_commit_failed", error=str(exc.args[0]), offsets=offsets)
            return
        for result in results:
            tp = (result.topic, result.partition)
            if result.error is not None:
                self._error_counts["kafka_commit"] += 1
                log.warning("kafka_commit_failed", partition=tp, error=str(result.error))
            elif self._owner.keep_marker(tp, self._committable.get(tp, -1)) == result.offset:
                del self._committable[tp]
        log.debug("kafka_committed", offsets=offsets)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._refused_since = None
        tps = {(p.topic, p.partition) for p in partitions}
        if self._owner.has_ledger:
            seeks = self._owner.claim(ConsumerLog(consumer), sorted(tps))
            for p in partitions:
                p.offset = seeks.get((p.topic, p.partition), p.offset)
            cooperative = "cooperative" in str(self._config.get("partition.assignment.strategy"))
            if cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
        self._assigned.update(tps)
        self._owner.unfence(tps)
        if self._owner.has_ledger:
            # ``fence`` paused it, and librdkafka keeps a partition paused through a revoke or
            # a loss and the assignment after: a zombie fenced, then lost, then given its
            # partitions back read nothing of them for ever. A partition assigned reads.
            consumer.resume(partitions)
        self._notify_changed(tps)
        log.info("kafka_partitions_assigned", partitions=sorted(tps))

    def _notify_changed(self, tps: Iterable[TopicPartitionKey]) -> None:
        if self._partition_listener is not None:
            for tp in tps:
                self._partition_listener(tp)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._refused_since = None
        tps = [(p.topic, p.partition) for p in partitions]
        self._owner.unfence(tps)
        # Persisted offsets still waiting for a commit are committed while they are still ours.
        self._commit(tps)
        self._forget(tps, reason="revoked")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._refused_since = None
        tps = [(p.topic, p.partition) for p in partitions]
        self._owner.unfence(tps)
        self._forget(tps, reason="lost")

    def _forget(self, tps: list[TopicPartitionKey], *, reason: str) -> None:
        dropped = self._buffers.drop(tps)
        for tp in tps:
            self._assigned.discard(tp)
            self._paused.discard(tp)
            self._committable.pop(tp, None)
        self._owner.forget(tps)
        self._notify_changed(tps)
        log.info("kafka_partitions_" + reason, partitions=sorted(tps), dropped_records=dropped)


def consumer_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka settings for a source: offsets are ours to store and commit, never automatic."""
    config = dict(params)
    if "group.id" not in config:
        raise ValueError("Kafka consumer settings need 'group.id'")
    if "bootstrap.servers" not in config:
        raise ValueError("Kafka consumer settings need 'bootstrap.servers'")
    config["enable.auto.commit"] = False
    config["enable.auto.offset.store"] = False
    config.setdefault("logger", kafka_logger())
    config.setdefault("auto.offset.reset", "earliest")
    if config.get("group.protocol", "classic") == "classic":
        # only partitions that really move are revoked, so a rebalance does not stall every one
        config.setdefault("partition.assignment.strategy", "cooperative-sticky")
    return config


def _header_bytes(value: Any) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else str(value).encode()


def _resets_to_end(config: Mapping[str, Any]) -> bool:
    reset = str(config.get("auto.offset.reset", "earliest")).lower()
    return reset not in ("earliest", "smallest", "beginning")


class ConsumerLog:
    """``PartitionLog`` answered by a consumer (on the batch thread, which owns it)."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def watermarks(self, tp: TopicPartitionKey) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(*tp), timeout=_REPLAY_CHECK_SECONDS
            )
        except KafkaException as exc:
            log.warning("kafka_watermarks_unavailable", partition=tp, error=str(exc))
            return -1, -1
        return (-1 if low is None else int(low)), (-1 if high is None else int(high))

    def committed(
        self, tps: Sequence[TopicPartitionKey], *, strict: bool
    ) -> dict[TopicPartitionKey, int]:
        asked = [TopicPartition(t, p) for t, p in tps]
        try:
            answers = self._consumer.committed(asked, timeout=_REPLAY_CHECK_SECONDS)
        except KafkaException as exc:
            raise OffsetsUnknown(str(exc)) from exc
        offsets: dict[TopicPartitionKey, int] = {}
        for answer in answers:
            if answer.error is not None:
                if strict:
                    raise OffsetsUnknown(str(answer.error)) from KafkaException(answer.error)
                continue
            if answer.offset >= 0:
                offsets[(answer.topic, answer.partition)] = answer.offset
        return offsets
