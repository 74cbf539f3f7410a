"""Dead letters: records that cannot be processed leave the partition for a topic of their own.

A record that cannot be decoded, is larger than the limit, or keeps making a job function raise
is sent, with its original key and value, to the dead-letter topic, with headers in Kafka
Connect's ``__connect.errors.*`` style naming where it came from and why it failed. The producer
is idempotent with ``acks=all`` and ``flush`` is called before the batch's ledger step, so a crash
never loses a dead letter; it may send one twice (a crash after the flush and before the ledger
step re-reads the record, which fails again and is dead-lettered again).

``replay`` sends dead letters back to their topic once the cause is fixed.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from service.commit.attempts import AttemptCounter, MemoryAttempts
from service.commit.ledger import Shard
from service.runtime.kafka_logs import kafka_logger

log = structlog.get_logger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
# Stack traces are useful to a reader but must not make the dead letter exceed a message limit.
MAX_STACKTRACE_CHARS = 8000
MAX_MESSAGE_CHARS = 2000
DLQ_TOPIC_PARAM = "dstreams.dlq.topic"
REPLAYED_FROM = "dstreams.replayed.from"
ORIGIN_TOPIC = "__connect.errors.topic"
ORIGIN_PARTITION = "__connect.errors.partition"
# why a record was dead-lettered, counted for metrics: key + value over the limit, the decoders
# or messageHandler raised (both rejected by the source), a job function kept raising on it
DEAD_LETTER_REASONS = ("too_large", "undecodable", "job_error")

Headers = list[tuple[str, str | bytes | None]]


class DeadLetterError(RuntimeError):
    """Some dead letters were not acknowledged: the batch must not be committed."""


class DeadLettersUnavailable(DeadLetterError):
    """The broker did not acknowledge the dead letters in time: an outage, not the batch's
    fault (``service.runtime.outage``), so the batch waits and is taken again."""

    outage = True


class RecordTooLarge(ValueError):
    """The record's key plus value exceed ``DSTREAMS_MAX_RECORD_BYTES``."""


class FailedRecord(Protocol):
    """What a dead letter needs of the record (``service.sources.kafka.KafkaRecord``)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


def default_topic(job: str) -> str:
    """``<job>-dlq``; a ``:`` (legal in job names, not in topic names) becomes ``.``."""
    return f"{job.replace(':', '.')}-dlq"


def error_headers(
    record: FailedRecord, exc: BaseException, attempts: int, job: str, now_ms: int
) -> Headers:
    """Kafka Connect's error headers plus ours (attempts, time, job)."""
    exc_type = type(exc)
    trace = "".join(traceback.format_exception(exc_type, exc, exc.__traceback__))
    return [
        ("__connect.errors.topic", record.topic.encode()),
        ("__connect.errors.partition", str(record.partition).encode()),
        ("__connect.errors.offset", str(record.offset).encode()),
        (
            "__connect.errors.exception.class.name",
            f"{exc_type.__module__}.{exc_type.__qualname__}".encode(),
        ),
        ("__connect.errors.exception.message", str(exc)[:MAX_MESSAGE_CHARS].encode()),
        ("__connect.errors.exception.stacktrace", trace[-MAX_STACKTRACE_CHARS:].encode()),
        ("dstreams.errors.attempts", str(attempts).encode()),
        ("dstreams.errors.timestamp", str(now_ms).encode()),
        ("dstreams.errors.job", job.encode()),
    ]


def record_size(record: FailedRecord) -> int:
    return len(record.key or b"") + len(record.value or b"")


@dataclass(frozen=True)
class DeadLetterPolicy:
    topic: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_record_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.topic:
            raise ValueError("the dead-letter topic must not be empty")
        if self.max_attempts < 1:
            raise ValueError(f"dead-letter max attempts must be >= 1, got {self.max_attempts}")
        if self.max_record_bytes is not None and self.max_record_bytes < 1:
            raise ValueError(f"max record bytes must be >= 1, got {self.max_record_bytes}")


class DeadLetterQueue:
    """One job's attempt counting and dead-letter producer; used from the batch thread only."""

    def __init__(
        self,
        policy: DeadLetterPolicy,
        job: str,
        producer_config: Mapping[str, Any],
        *,
        attempts: AttemptCounter | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.policy = policy
        self.job = job
        self._attempts: AttemptCounter = attempts if attempts is not None else MemoryAttempts()
        self._producer_config: dict[str, Any] = {
            "logger": kafka_logger(),
            **producer_config,
            "acks": "all",
            "enable.idempotence": True,
        }
        self._producer: Producer | None = None
        self._failures: list[KafkaError] = []
        self._pending = 0
        self._flush_timeout_s = flush_timeout_s
        self.sent = 0
        # records rejected by the source (``reject``), by reason; the rest of ``sent`` failed a job
        self._rejected = {"too_large": 0, "undecodable": 0}

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    @property
    def sent_by_reason(self) -> dict[str, int]:
        """Dead letters queued since the queue was built, by reason, every DEAD_LETTER_REASONS
        present (for metrics, which export them from 0)."""
        rejected = sum(self._rejected.values())
        return {**self._rejected, "job_error": max(0, self.sent - rejected)}

    def attach_attempts(self, attempts: AttemptCounter) -> None:
        """Count in Redis (the context attaches it with the ledger)."""
        self._attempts = attempts

    def count_attempt(self, record: FailedRecord, *, final: bool = False) -> int:
        """One more failure of ``record``; ``final`` (deterministic failures) jumps to the max."""
        shard = Shard(self.job, record.topic, record.partition)
        return self._attempts.add(shard, record.offset, at_least=self.max_attempts if final else 0)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def reject(self, record: FailedRecord, exc: BaseException) -> None:
        """Dead-letter a record the source cannot hand out (too large, undecodable) at once: the
        failure is deterministic, so its attempts go straight to the maximum."""
        self.send(record, exc, self.count_attempt(record, final=True))
        self._rejected["too_large" if isinstance(exc, RecordTooLarge) else "undecodable"] += 1

    def send(self, record: FailedRecord, exc: BaseException, attempts: int) -> None:
        """Queue the dead letter; ``flush`` makes it durable."""
        if self._producer is None:
            self._producer = Producer(self._producer_config)
        headers = error_headers(record, exc, attempts, self.job, int(time.time() * 1000))

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failures.append(err)

        while True:
            try:
                self._producer.produce(
                    self.policy.topic,
                    key=record.key,
                    value=record.value,
                    headers=headers,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._pending += 1
        self.sent += 1
        log.warning(
            "dead_letter",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=f"{type(exc).__name__}: {exc}",
            attempts=attempts,
            dlq=self.policy.topic,
        )

    def flush(self) -> None:
        """Wait until every queued dead letter is acknowledged; raise if one was not."""
        if self._producer is None or not self._pending:
            return
        remaining = self._producer.flush(self._flush_timeout_s)
        failures, self._failures = self._failures, []
        pending, self._pending = self._pending, 0
        if remaining or failures:
            first = str(failures[0]) if failures else "flush timed out"
            # the broker not answering is an outage (the batch waits and is taken again, its
            # records dead-lettered anew); a refused letter is the batch's failure
            unavailable = remaining > 0 or all(
                f.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT) for f in failures
            )
            error = DeadLettersUnavailable if unavailable else DeadLetterError
            raise error(
                f"{len(failures) + remaining} of {pending} dead letters to {self.policy.topic} "
                f"not acknowledged ({first})"
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._flush_timeout_s)
            self._producer = None


class ReplayError(RuntimeError):
    """A replay cannot start or go on (no such topic, no origin for a dead letter)."""


def _header(message: Message, name: str) -> bytes | None:
    raw = message.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    for key, value in pairs:
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def replay(
    bootstrap_servers: str,
    dlq_topic: str,
    *,
    to: str | None = None,
    max_records: int | None = None,
    group_id: str | None = None,
    idle_timeout_s: float = 5.0,
) -> int:
    """Send the dead letters not replayed yet back to their topic (or ``to``); how many were sent.

    Reads from the group's committed offsets up to the end offsets seen at start, and commits
    once the replayed records are acknowledged: a replay is not repeated, and one cut short by a
    crash is repeated only for the records after its last commit.
    """
    group = group_id or f"dstreams-dlq-replay-{dlq_topic}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    # murmur2 as the Java client: a key replayed elsewhere (--to) lands where Java producers
    # (and Kafka Streams, Quix) put it; librdkafka's default (CRC32) would split a key's state
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            "partitioner": "murmur2_random",
            "logger": kafka_logger(),
        }
    )
    try:
        metadata = consumer.list_topics(dlq_topic, timeout=10)
        described = metadata.topics.get(dlq_topic)
        if described is None or described.error is not None or not described.partitions:
            raise ReplayError(f"no such topic: {dlq_topic}")
        partitions = sorted(described.partitions)
        ends: dict[int, int] = {}
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(dlq_topic, p), timeout=10)
            ends[p] = high
        committed = _committed(consumer, [TopicPartition(dlq_topic, p) for p in partitions])
        starts = {tp.partition: tp.offset for tp in committed}
        todo = [p for p in partitions if ends[p] > max(starts.get(p, 0), 0)]
        if not todo:
            return 0
        consumer.assign(
            [TopicPartition(dlq_topic, p, max(starts.get(p, 0), OFFSET_BEGINNING)) for p in todo]
        )
        return _replay_loop(
            consumer, producer, dlq_topic, to, max_records, ends, set(todo), idle_timeout_s
        )
    except KafkaException as exc:
        raise ReplayError(str(exc.args[0])) from exc
    finally:
        consumer.close()


def _committed(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The group's offsets; a coordinator still being elected (a new group) is waited for."""
    give_up = time.monotonic() + 30.0
    while True:
        try:
            return list(consumer.committed(partitions, timeout=10))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and error.retriable()
            if not retriable or time.monotonic() > give_up:
                raise
            time.sleep(0.5)


def _replay_loop(
    consumer: Consumer,
    producer: Producer,
    dlq_topic: str,
    to: str | None,
    max_records: int | None,
    ends: dict[int, int],
    open_partitions: set[int],
    idle_timeout_s: float,
) -> int:
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(err)

    sent = 0
    next_offsets: dict[int, int] = {}
    idle_until = time.monotonic() + idle_timeout_s
    while open_partitions and (max_records is None or sent < max_records):
        message = consumer.poll(0.5)
        if message is None:
            if time.monotonic() > idle_until:
                break
            continue
        idle_until = time.monotonic() + idle_timeout_s
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                open_partitions.discard(message.partition())
                continue
            raise ReplayError(str(error))
        partition, offset = message.partition(), message.offset()
        if partition is None or offset is None:
            continue
        if offset >= ends[partition]:
            open_partitions.discard(partition)
            continue
        origin = _header(message, ORIGIN_TOPIC)
        target = to if to is not None else (origin.decode() if origin else None)
        if not target:
            raise ReplayError(
                f"dead letter {dlq_topic}/{partition}/{offset} names no topic "
                f"({ORIGIN_TOPIC} header missing): use --to"
            )
        origin_partition = _header(message, ORIGIN_PARTITION)
        record: dict[str, Any] = {
            "key": message.key(),
            "value": message.value(),
            "headers": [(REPLAYED_FROM, f"{dlq_topic}/{partition}/{offset}".encode())],
            "on_delivery": delivered,
        }
        if to is None and origin_partition is not None:
            # back to the partition it came from, whose state holds its key
            record["partition"] = int(origin_partition)
        producer.produce(target, **record)
        sent += 1
        next_offsets[partition] = offset + 1
        if offset + 1 >= ends[partition]:
            open_partitions.discard(partition)
    if producer.flush(60.0) or failures:
        raise ReplayError(f"replayed records not acknowledged: {failures[:1] or 'timeout'}")
    if next_offsets:
        consumer.commit(
            offsets=[TopicPartition(dlq_topic, p, o) for p, o in next_offsets.items()],
            asynchronous=False,
        )
    return sent
