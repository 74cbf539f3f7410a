"""What the exactly-once machinery does, counted by a real KafkaSource (real broker, real Redis
ledger) and exported by the metrics listener: partition replays and resyncs, dead letters by
reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from service.commit.ledger import BatchLedger
from service.observability.metrics import DStreamsMetrics, MetricsListener
from service.sinks.dead_letter import DeadLetterPolicy, DeadLetterQueue
from service.sources.kafka import KafkaRecord, KafkaSource
from service.streaming.listener import BatchEvent, BatchInfo
from tests.support.kafka import produce, running

WAIT_SECONDS = 30.0


def take_until(source: KafkaSource, done: Callable[[list[int]], bool]) -> list[int]:
    """Offsets of the records taken, batch after batch, until ``done(offsets)``."""
    offsets: list[int] = []
    give_up = time.monotonic() + WAIT_SECONDS
    batch = 0
    while not done(offsets):
        assert time.monotonic() < give_up, f"gave up with offsets {offsets}"
        source.fill(time.monotonic() + 0.5)
        batch += 1000
        for part in source.take_partitions(batch):
            offsets.extend(r.offset if isinstance(r, KafkaRecord) else -1 for r in part)
        source.on_batch_persisted(batch)
    return offsets


def export(source: KafkaSource, job: str) -> CollectorRegistry:
    """One batch seen by the metrics listener, as the context reports it."""
    registry = CollectorRegistry()
    listener = MetricsListener(DStreamsMetrics(registry), job, lambda: [source])
    info = BatchInfo(1000, 1000, 1000, 1005)
    listener.onBatchCompleted(BatchEvent(info))
    return registry


def test_replays_at_a_claim_and_resyncs_are_counted_and_exported(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic()
    group = f"obs-replay-{uuid.uuid4().hex[:8]}"
    job = f"obs-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, 0, [f"v{i}".encode() for i in range(10)])
    # what a crashed owner's transaction leaves: the group's offset ahead of the ledger (which
    # has no position for the partition at all)
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
    finally:
        committer.close()

    client = redis.Redis.from_url(redis_url)
    try:
        source = KafkaSource(
            {"bootstrap.servers": kafka_bootstrap, "group.id": group},
            [topic],
            batch_interval_s=1.0,
        )
        source.attach_ledger(BatchLedger(client, retry_seconds=5), job)
        assert source.partition_events == {"replay": 0, "resync": 0, "regressed": 0}
        with running(source):
            replayed = take_until(source, lambda offsets: len(offsets) >= 6)
            assert replayed[:6] == list(range(6))
            assert source.partition_events == {"replay": 1, "resync": 0, "regressed": 0}

            # the ledger stands at 2: read on from there; the group's offset is past it (we
            # committed what we read), so [2, K) counts as published: replayed without outputs
            source.resync((topic, 0), 2)
            again = take_until(source, lambda offsets: 9 in offsets)
            assert again[0] == 2
            assert source.partition_events == {"replay": 2, "resync": 1, "regressed": 0}
    finally:
        client.close()

    registry = export(source, job)

    def events(event: str) -> float | None:
        return registry.get_sample_value(
            "dstreams_kafka_partition_events_total", {"job_name": job, "event": event}
        )

    assert (events("replay"), events("resync"), events("regressed")) == (2.0, 1.0, 0.0)


def test_dead_letters_of_the_source_are_counted_by_reason_and_reach_the_topic(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic, dlq_topic = create_topic(), create_topic()
    job = f"obs-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, 0, [b"ok", b"x" * 64, b"\xff\xfe", b"fine"])
    dlq = DeadLetterQueue(
        DeadLetterPolicy(dlq_topic, max_record_bytes=16),
        job,
        {"bootstrap.servers": kafka_bootstrap},
    )
    source = KafkaSource(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"obs-dlq-{uuid.uuid4().hex[:8]}"},
        [topic],
        batch_interval_s=1.0,
        convert=lambda r: (r.value or b"").decode(),  # b"\xff\xfe" is not UTF-8
        dead_letters=dlq,
    )
    with running(source):
        kept = take_until(source, lambda values: len(values) >= 2)
        source.flush_dead_letters()
        assert len(kept) == 2
        assert dlq.sent_by_reason == {"too_large": 1, "undecodable": 1, "job_error": 0}
        registry = export(source, job)

    def sent(reason: str) -> float | None:
        return registry.get_sample_value(
            "dstreams_dead_letters_total",
            {"job_name": job, "dlq_topic": dlq_topic, "reason": reason},
        )

    assert (sent("too_large"), sent("undecodable"), sent("job_error")) == (1.0, 1.0, 0.0)

    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"obs-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        reader.subscribe([dlq_topic])
        classes: list[bytes] = []
        give_up = time.monotonic() + WAIT_SECONDS
        while len(classes) < 2 and time.monotonic() < give_up:
            message = reader.poll(0.5)
            if message is None or message.error() is not None:
                continue
            headers = dict(message.headers() or [])
            name = headers["__connect.errors.exception.class.name"]
            classes.append(name if isinstance(name, bytes) else b"")
    finally:
        reader.close()
    assert sorted(classes) == [
        b"builtins.UnicodeDecodeError",
        b"service.sinks.dead_letter.RecordTooLarge",
    ]
