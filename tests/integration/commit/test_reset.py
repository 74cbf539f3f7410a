"""``python -m service reset JOB``: state, ledger, epochs, attempts and group offsets go together.

A Kafka job resumes its state with its positions whatever built its context (issue 9), so
starting afresh is this command's job: after it, a run counts the whole topic once, from zero.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from service.cli import main as cli_main
from service.commit.ledger import BatchLedger, Shard
from service.commit.reset import job_keys
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils

WAIT_SECONDS = 60.0
PARTITIONS = 2


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _produce(bootstrap: str, topic: str, words: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, word in enumerate(words):
        producer.produce(topic, key=word, value=word, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def _word_count(
    redis_url: str, bootstrap: str, topic: str, job: str, shuffled: bool = False
) -> tuple[StreamingContext, dict[str, int]]:
    """A word count on a context built directly, and the latest count per word it output;
    ``shuffled``: re-keyed with ``map``, so its state is past a repartition topic."""
    latest: dict[str, int] = {}
    ssc = StreamingContext(0.3, jobName=job)
    ssc.checkpoint(redis_url)
    records = KafkaUtils.createDirectStream(
        ssc, [topic], {"metadata.broker.list": bootstrap, "group.id": f"dstreams-{job}"}
    )
    ones = records.map(lambda kv: (kv[0], 1)) if shuffled else records.mapValues(lambda _: 1)
    counts = ones.updateStateByKey(lambda new, last: sum(new) + (last or 0))
    counts.foreachRDD(lambda rdd: latest.update(rdd.collect()))
    return ssc, latest


def _count(redis_url: str, bootstrap: str, topic: str, job: str, total: int) -> dict[str, int]:
    """Run the word count until the ledger covers ``total`` records."""
    ssc, latest = _word_count(redis_url, bootstrap, topic, job)
    ledger = BatchLedger(redis.Redis.from_url(redis_url))
    ssc.start()
    try:
        give_up = time.monotonic() + WAIT_SECONDS
        while True:
            ends = [ledger.read_position(Shard(job, topic, p)) for p in range(PARTITIONS)]
            if sum(e.next_offset for e in ends if e is not None) >= total:
                break
            assert time.monotonic() < give_up, f"ledger at {ends}, {total} records produced"
            time.sleep(0.2)
        time.sleep(0.5)  # one more batch publishes every key's state
    finally:
        ssc.stop()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in latest.items()}


def test_a_kafka_job_resumes_and_reset_starts_it_afresh_whole(
    redis_url: str,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    create_topic: Callable[..., str],
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = create_topic(partitions=PARTITIONS)
    job = f"reset-{uuid.uuid4().hex[:8]}"
    neighbour = f"{job}:other"  # a job whose name starts with ours keeps its keys
    client.hset(Shard(neighbour, topic, 0).key("s1", "state"), "x", "1")
    client.hset(f"dstreams:{neighbour}:meta", "zero_ms", "1")
    first = ["a", "b", "a", "c"] * 5
    _produce(kafka_bootstrap, topic, first)
    assert _count(redis_url, kafka_bootstrap, topic, job, len(first)) == {"a": 10, "b": 5, "c": 5}

    # a second run of a context built directly resumes: counts go on, nothing read twice
    second = ["a", "d"] * 3
    _produce(kafka_bootstrap, topic, second)
    total = len(first) + len(second)
    assert _count(redis_url, kafka_bootstrap, topic, job, total) == {
        "a": 13,
        "b": 5,
        "c": 5,
        "d": 3,
    }

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    keys = job_keys(client, job)
    assert any(k.endswith(":ledger") for k in keys) and any(k.endswith(":epoch") for k in keys)
    assert cli_main(["reset", job]) == 2  # without --yes nothing goes
    assert job_keys(client, job) == keys
    assert f"{len(keys)} Redis keys" in capsys.readouterr().out

    assert cli_main(["reset", job, "--yes"]) == 0
    assert job_keys(client, job) == []
    assert client.exists(Shard(neighbour, topic, 0).key("s1", "state"))
    assert client.exists(f"dstreams:{neighbour}:meta")
    groups = kafka_admin.list_consumer_groups().result(timeout=30)
    assert f"dstreams-{job}" not in {g.group_id for g in groups.valid}

    # afresh: the whole topic once, from zero (neither the old state nor old offsets)
    assert _count(redis_url, kafka_bootstrap, topic, job, total) == {
        "a": 13,
        "b": 5,
        "c": 5,
        "d": 3,
    }


def test_reset_refuses_while_an_instance_runs(
    redis_url: str,
    kafka_bootstrap: str,
    create_topic: Callable[..., str],
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = create_topic(partitions=1)
    job = f"reset-live-{uuid.uuid4().hex[:8]}"
    client.hset(Shard(job, topic, 0).ledger_key, "next_offset", "3")
    member = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dstreams-{job}"})
    member.subscribe([topic])
    try:
        give_up = time.monotonic() + WAIT_SECONDS
        while not member.assignment():
            assert time.monotonic() < give_up
            member.poll(0.2)
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
        assert cli_main(["reset", job, "--yes"]) == 1
        assert "has active members" in capsys.readouterr().err
        assert client.exists(Shard(job, topic, 0).ledger_key)
    finally:
        member.close()


def _count_shuffled(
    redis_url: str, bootstrap: str, topic: str, job: str, total: int
) -> dict[str, int]:
    """The word count re-keyed through a repartition topic (so the ledger of the input runs
    ahead of the counts) until the counts cover
    ``total`` records, then one more second: a count above it shows."""
    ssc, latest = _word_count(redis_url, bootstrap, topic, job, shuffled=True)
    ssc.start()
    try:
        give_up = time.monotonic() + WAIT_SECONDS
        while sum(latest.values()) < total:
            assert time.monotonic() < give_up, f"counts {latest}, {total} records produced"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        ssc.stop()
    return dict(latest)


def test_reset_of_a_shuffling_job_takes_its_shuffle_groups_and_internal_topics(
    redis_url: str,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    create_topic: Callable[..., str],
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Left behind, the downstream group's offsets and the repartition topic's records of old
    batches would be read into the new state."""
    monkeypatch.setenv("DSTREAMS_SHUFFLE", "kafka")
    topic = create_topic(partitions=PARTITIONS)
    job = f"reset-shuffled-{uuid.uuid4().hex[:8]}"
    words = ["a", "b", "a", "c"] * 5
    _produce(kafka_bootstrap, topic, words)
    expected = {"a": 10, "b": 5, "c": 5}
    assert _count_shuffled(redis_url, kafka_bootstrap, topic, job, len(words)) == expected

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    internal, downstream = f"{job}-repartition-0", f"dstreams-{job}-shuffle-0"
    assert cli_main(["reset", job]) == 2
    said = capsys.readouterr().out
    assert f"shuffle groups {downstream} and internal topics {internal}" in said
    assert cli_main(["reset", job, "--yes"]) == 0
    groups = {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=30).valid}
    assert downstream not in groups and f"dstreams-{job}" not in groups
    assert internal not in kafka_admin.list_topics(timeout=30).topics

    # afresh: the topic is made again at start, and the whole input counted once
    assert _count_shuffled(redis_url, kafka_bootstrap, topic, job, len(words)) == expected
