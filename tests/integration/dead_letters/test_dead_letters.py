"""Poison records on a real broker and Redis: dead-lettered with headers, good ones counted once,
attempts kept across a restart, and dead letters replayed to their topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Message, Producer

from service.cli import main as cli_main
from service.commit.ledger import Shard
from service.sinks.dead_letter import replay
from service.sinks.partitioner import partition_for
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils

WAIT_SECONDS = 60.0


def produce(bootstrap: str, topic: str, records: list[tuple[int, str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, key, value in records:
        producer.produce(topic, key=key.encode(), value=value, partition=partition)
    assert producer.flush(30) == 0


def consume_all(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    give_up = time.monotonic() + WAIT_SECONDS
    try:
        while len(messages) < count and time.monotonic() < give_up:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        # anything beyond ``count`` would be a duplicate: give it a moment to show up
        extra_until = time.monotonic() + 1.0
        while time.monotonic() < extra_until:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def headers(message: Message) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or []) if isinstance(v, bytes)}


class Job:
    """A Kafka job summing integer values per key; ``-N`` makes the function raise."""

    def __init__(self, bootstrap: str, redis_url: str, topic: str, dlq: str, name: str) -> None:
        self.seen: list[tuple[str, int]] = []

        def check(kv: tuple[str, int]) -> tuple[str, int]:
            if kv[1] < 0:
                raise ValueError(f"negative value {kv[1]}")
            return kv

        def setup() -> StreamingContext:
            ssc = StreamingContext(0.5, jobName=name)
            stream = KafkaUtils.createDirectStream(
                ssc,
                [topic],
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": f"g-{name}",
                    "dstreams.dlq.topic": dlq,
                },
                valueDecoder=lambda b: int(b.decode()) if b is not None else 0,
            )
            stream.map(check).foreachRDD(lambda rdd: self.seen.extend(rdd.collect()))
            return ssc

        self.ssc = StreamingContext.getOrCreate(redis_url, setup)

    def run_until(self, done: Callable[[], bool]) -> None:
        self.ssc.start()
        try:
            give_up = time.monotonic() + WAIT_SECONDS
            while not done():
                assert time.monotonic() < give_up, self.seen
                self.ssc.awaitTerminationOrTimeout(0.2)
        finally:
            self.ssc.stop(stopSparkContext=True, stopGraceFully=True)


def test_poison_records_go_to_the_dlq_and_good_ones_are_counted_once(
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DSTREAMS_DLQ_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("DSTREAMS_MAX_RECORD_BYTES", "64")
    topic = create_topic(partitions=2)
    dlq = create_topic(partitions=1)
    good: list[tuple[int, str, bytes]] = [
        (i % 2, f"k{i % 5}", str(i).encode()) for i in range(1, 41)
    ]
    poison = {
        (0, "bad-decode"): b"not-an-int",
        (1, "bad-size"): b"7" * 100,
        (0, "bad-function"): b"-3",
        (1, "bad-function"): b"-4",
    }
    records = good[:10] + [(p, k, v) for (p, k), v in poison.items()] + good[10:]
    produce(kafka_bootstrap, topic, records)

    job = Job(kafka_bootstrap, redis_url, topic, dlq, f"dlq-{uuid.uuid4().hex[:8]}")
    job.run_until(lambda: len(job.seen) >= len(good))
    assert sorted(job.seen) == sorted((k, int(v)) for _, k, v in good)

    letters = consume_all(kafka_bootstrap, dlq, len(poison))
    assert len(letters) == len(poison)
    by_value = {m.value(): m for m in letters}
    for (partition, _), value in poison.items():
        message = by_value[value]
        h = headers(message)
        assert h["__connect.errors.topic"] == topic.encode()
        assert h["__connect.errors.partition"] == str(partition).encode()
        assert int(h["__connect.errors.offset"]) >= 0
        assert h["dstreams.errors.job"] == job.ssc.jobName.encode()
        assert int(h["dstreams.errors.timestamp"]) > 0
        assert b"Traceback" in h["__connect.errors.exception.stacktrace"]
        assert h["dstreams.errors.attempts"] == b"2"
    assert {(m.key() or b"").decode() for m in letters} == {k for _, k in poison}
    assert headers(by_value[b"7" * 100])["__connect.errors.exception.class.name"] == (
        b"service.sinks.dead_letter.RecordTooLarge"
    )
    assert headers(by_value[b"not-an-int"])["__connect.errors.exception.class.name"] == (
        b"builtins.ValueError"
    )
    function_letters = [m for m in letters if m.value() in (b"-3", b"-4")]
    assert {headers(m)["__connect.errors.exception.message"] for m in function_letters} == {
        b"negative value -3",
        b"negative value -4",
    }

    # replay: back to a topic of our choice, once
    target = create_topic(partitions=1)
    assert replay(kafka_bootstrap, dlq, to=target) == len(poison)
    replayed = consume_all(kafka_bootstrap, target, len(poison))
    assert sorted(m.value() or b"" for m in replayed) == sorted(poison.values())
    origins = {headers(m)["dstreams.replayed.from"] for m in replayed}
    assert origins == {f"{dlq}/0/{m.offset()}".encode() for m in letters}
    assert replay(kafka_bootstrap, dlq, to=target) == 0


def test_attempts_survive_a_restart(
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = create_topic(partitions=1)
    dlq = create_topic(partitions=1)
    name = f"dlq-restart-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, [(0, "a", b"1"), (0, "b", b"-1"), (0, "c", b"2")])
    client: Any = redis.Redis.from_url(redis_url)
    attempts_key = Shard(name, topic, 0).key("attempts")

    def attempts() -> int:
        value = client.hget(attempts_key, "1")
        return int(value) if value is not None else 0

    monkeypatch.setenv("DSTREAMS_DLQ_MAX_ATTEMPTS", "1000")
    first = Job(kafka_bootstrap, redis_url, topic, dlq, name)
    first.run_until(lambda: attempts() >= 1)
    counted = attempts()

    # one more failure reaches the max only if the attempts before the restart were kept
    monkeypatch.setenv("DSTREAMS_DLQ_MAX_ATTEMPTS", str(counted + 1))
    second = Job(kafka_bootstrap, redis_url, topic, dlq, name)
    second.run_until(lambda: len(first.seen) + len(second.seen) >= 2)
    assert sorted(first.seen + second.seen) == [("a", 1), ("c", 2)]
    [letter] = consume_all(kafka_bootstrap, dlq, 1)
    assert headers(letter)["dstreams.errors.attempts"] == str(counted + 1).encode()
    assert attempts() == counted + 1


def test_replay_of_a_missing_topic_is_one_line_and_exit_1(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    assert cli_main(["dlq", "replay", "--topic", missing]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: no such topic: {missing}"


def test_replay_returns_each_letter_to_its_partition(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 8: replay produced without a partition, so librdkafka's CRC32 partitioner
    moved keys to other partitions and split their state. Back to its own topic a letter goes
    to the partition it came from; elsewhere (``--to``) where Java's murmur2 puts its key."""
    origin, dlq, elsewhere = (
        create_topic(partitions=4),
        create_topic(),
        create_topic(partitions=4),
    )
    letters = [(f"key-{i}", i % 4) for i in range(24)]  # recorded partitions, not the key's hash
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, partition in letters:
        producer.produce(
            dlq,
            key=key,
            value=key,
            headers=[
                ("__connect.errors.topic", origin.encode()),
                ("__connect.errors.partition", str(partition).encode()),
            ],
        )
    assert producer.flush(30) == 0

    assert replay(kafka_bootstrap, dlq) == len(letters)
    back = consume_all(kafka_bootstrap, origin, len(letters))
    assert sorted(((m.key() or b"").decode(), m.partition()) for m in back) == sorted(letters)

    assert replay(kafka_bootstrap, dlq, to=elsewhere, group_id=f"again-{dlq}") == len(letters)
    moved = consume_all(kafka_bootstrap, elsewhere, len(letters))
    for m in moved:
        assert m.partition() == partition_for(m.key() or b"", 4)
