"""Transactional Kafka outputs on a real broker and Redis: a ``read_committed`` consumer sees each
batch's results once; aborted batches and zombies publish nothing; the one window left (a crash
at ``outputs_done``, after the transaction committed and before the ledger step) is measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from service.commit.batch import GroupOffsets, OutputFencedError
from service.commit.ledger import Shard
from service.sinks.kafka import KafkaSink
from service.streaming import StreamingContext
from service.streaming.kafka import MAX_RATE_KEY, KafkaUtils

REPO_ROOT = Path(__file__).resolve().parents[3]
COUNTER_JOB = Path(__file__).with_name("counter_job.py")
Out = tuple[str, str, dict[str, str]]  # key, value, headers


def produce(bootstrap: str, topic: str, records: list[tuple[str, str]], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, partition=int(key[1:]) % partitions)
        if i % 100 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def read_outputs(
    bootstrap: str, topic: str, done: Callable[[list[Out]], bool], committed: bool = True
) -> list[Out]:
    """Everything in ``topic`` once ``done`` holds and nothing more arrives for 2 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    consumer.subscribe([topic])
    out: list[Out] = []
    deadline = time.monotonic() + 90
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(100, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                    out.append(((m.key() or b"").decode(), (m.value() or b"").decode(), headers))
            if msgs or not done(out):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 2.0:
                return out
    finally:
        consumer.close()
    raise AssertionError(
        f"outputs of {topic} incomplete after 90 s: {sorted((k, v) for k, v, _ in out)}"
    )


def finals(out: list[Out]) -> dict[str, int]:
    best: dict[str, int] = {}
    for key, value, _ in out:
        best[key] = max(best.get(key, 0), int(value))
    return best


def all_counted(expected: dict[str, int]) -> Callable[[list[Out]], bool]:
    return lambda out: finals(out) == expected


def keyed_records(keys: int, per_key: int) -> list[tuple[str, str]]:
    return [(f"k{k}", str(i)) for i in range(per_key) for k in range(keys)]


def counting_job(
    bootstrap: str,
    redis_url: str,
    topic_in: str,
    topic_out: str,
    extra_output: Callable[[Any], None] | None = None,
    after_sink: Callable[[Any], None] | None = None,
    producer_factory: Callable[[dict[str, Any]], Any] = Producer,
) -> tuple[StreamingContext, KafkaSink]:
    job = f"txn-{uuid.uuid4().hex[:8]}"
    ssc = StreamingContext(0.3, jobName=job)
    ssc.checkpoint(redis_url)
    params = {"metadata.broker.list": bootstrap, "group.id": job, MAX_RATE_KEY: 20}
    ones = KafkaUtils.createDirectStream(ssc, [topic_in], params).mapValues(lambda _: 1)
    counts = ones.updateStateByKey(lambda vs, last: (last or 0) + sum(vs))
    changed = counts.join(ones.reduceByKey(lambda a, b: a)).map(lambda kv: (kv[0], kv[1][0]))
    sink = KafkaSink(bootstrap, topic_out, producer_factory=producer_factory)
    if extra_output is not None:
        # registered first, so it is asked to commit before the sink
        changed.foreachRDD(extra_output)
    changed.foreachRDD(sink)
    if after_sink is not None:
        changed.foreachRDD(after_sink)
    return ssc, sink


def assert_each_count_once(out: list[Out], expected: dict[str, int]) -> None:
    pairs = Counter((key, value) for key, value, _ in out)
    assert [p for p, n in pairs.items() if n > 1] == []
    assert finals(out) == expected


def test_read_committed_sees_each_batch_once(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    topic_in, topic_out = create_topic(partitions=2), create_topic()
    produce(kafka_bootstrap, topic_in, keyed_records(4, 15), partitions=2)
    ssc, sink = counting_job(kafka_bootstrap, redis_url, topic_in, topic_out)
    ssc.start()
    try:
        expected = {f"k{k}": 15 for k in range(4)}
        out = read_outputs(kafka_bootstrap, topic_out, all_counted(expected))
    finally:
        ssc.stop()
    assert sink.transactional
    assert sink.transactional_id is not None
    assert sink.transactional_id.startswith(f"dstreams-{ssc.jobName}-")
    assert_each_count_once(out, expected)
    # the cap (20/s x 0.3 s = 6 per partition) spreads the input over several batches
    assert len({h["dstreams.batch"] for _, _, h in out}) >= 3
    for key, _, headers in out:
        assert headers["dstreams.job"] == ssc.jobName
        assert headers["dstreams.input.topic"] == topic_in
        assert int(headers["dstreams.input.partition"]) == int(key[1:]) % 2


def test_two_sinks_commit_in_one_transaction(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 1: two KafkaSinks took one transactional.id and fenced each other (out-b
    never got a record, out-a repeated batches, the ledger never advanced). They now share the
    instance's one transaction: both outputs get every batch once, and the ledger reaches the end.
    """
    topic_in, out_a, out_b = create_topic(partitions=3), create_topic(), create_topic()
    records = keyed_records(6, 10)
    produce(kafka_bootstrap, topic_in, records, partitions=3)
    second = KafkaSink(kafka_bootstrap, out_b)
    ssc, first = counting_job(kafka_bootstrap, redis_url, topic_in, out_a, after_sink=second)
    ssc.start()
    try:
        expected = {f"k{k}": 10 for k in range(6)}
        got_a = read_outputs(kafka_bootstrap, out_a, all_counted(expected))
        got_b = read_outputs(kafka_bootstrap, out_b, all_counted(expected))
    finally:
        ssc.stop()
    assert first.transactional_id == second.transactional_id  # one producer per instance
    assert_each_count_once(got_a, expected)
    assert_each_count_once(got_b, expected)
    assert sorted((k, v) for k, v, _ in got_a) == sorted((k, v) for k, v, _ in got_b)
    client = redis.Redis.from_url(redis_url)
    try:
        ends = [
            int(client.hget(Shard(ssc.jobName, topic_in, p).ledger_key, "next_offset") or 0)
            for p in range(3)
        ]
    finally:
        client.close()
    assert sum(ends) == len(records)


class LostCommitReply:
    """Real producers, the ``nth`` of whose commits goes through and then reports a timeout
    (its reply lost after EndTxn was sent), as do that producer's retries of it."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.commits = 0
        self.producers = 0
        self.lied = False

    def __call__(self, config: dict[str, Any]) -> Any:
        self.producers += 1
        real = Producer(config)
        outer = self
        lying = False

        class Wrapped:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def commit_transaction(self, timeout: float) -> None:
                nonlocal lying
                if lying:
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "lost", retriable=True))
                outer.commits += 1
                real.commit_transaction(timeout)
                if outer.commits == outer.nth:
                    lying = outer.lied = True
                    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "lost", retriable=True))

        return Wrapped()


def test_a_commit_whose_reply_is_lost_publishes_its_batch_once(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 3: commit_transaction timed out after EndTxn was sent; the producer was
    dropped and the batch taken again, so the batch was published twice (the next
    init_transactions completes that commit). Now a new producer settles it first and the
    group's offsets tell that it committed: the batch's records are replayed into state (the
    ledger step had not run) without publishing them again."""
    topic_in, topic_out = create_topic(partitions=2), create_topic()
    produce(kafka_bootstrap, topic_in, keyed_records(4, 15), partitions=2)
    lost = LostCommitReply(nth=2)
    ssc, _ = counting_job(kafka_bootstrap, redis_url, topic_in, topic_out, producer_factory=lost)
    ssc.start()
    try:
        expected = {f"k{k}": 15 for k in range(4)}
        out = read_outputs(kafka_bootstrap, topic_out, all_counted(expected))
    finally:
        ssc.stop()
    assert lost.lied and lost.producers == 2
    assert_each_count_once(out, expected)


class FailingParticipant:
    """An output that refuses to commit its second batch with records, after the sink wrote it."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._size = 0

    def __call__(self, rdd: Any) -> None:
        self._size = len(rdd.collect())

    def bind(self, job: str, transactional: bool) -> None:
        pass

    def begin(self, batch_ms: int) -> None:
        self._size = 0

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        if self._size:
            self.sizes.append(self._size)
            if len(self.sizes) == 2:
                raise RuntimeError("this output cannot commit")

    def abort(self, batch_ms: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_aborted_batch_is_invisible_and_read_again(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    topic_in, topic_out = create_topic(), create_topic()
    produce(kafka_bootstrap, topic_in, keyed_records(3, 12), partitions=1)
    failing = FailingParticipant()
    ssc, _ = counting_job(kafka_bootstrap, redis_url, topic_in, topic_out, failing)
    ssc.start()
    try:
        expected = {f"k{k}": 12 for k in range(3)}
        out = read_outputs(kafka_bootstrap, topic_out, all_counted(expected))
    finally:
        ssc.stop()
    assert len(failing.sizes) >= 3  # the batch was taken again after the refusal
    # the refused batch's records were written by the sink, then aborted: not one is seen twice
    assert_each_count_once(out, expected)


def test_output_failing_after_the_sink_wrote_publishes_nothing_twice(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    """A failed output run aborts the sink's writes; the batch's outputs are written anew by the
    run that succeeds (a retry within the batch, or the batch taken again)."""
    topic_in, topic_out = create_topic(), create_topic()
    produce(kafka_bootstrap, topic_in, keyed_records(3, 12), partitions=1)
    calls: list[int] = []

    def fail_once(rdd: Any) -> None:
        if not rdd.isEmpty():
            calls.append(len(rdd.collect()))
            if len(calls) == 2:
                raise RuntimeError("transient output failure")

    ssc, _ = counting_job(kafka_bootstrap, redis_url, topic_in, topic_out, after_sink=fail_once)
    ssc.start()
    try:
        expected = {f"k{k}": 12 for k in range(3)}
        out = read_outputs(kafka_bootstrap, topic_out, all_counted(expected))
    finally:
        ssc.stop()
    assert len(calls) >= 3
    assert_each_count_once(out, expected)


def _joined(consumer: Consumer) -> None:
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "consumer never joined its group"
        consumer.poll(0.2)


def _group_consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    _joined(consumer)
    return consumer


def test_zombie_with_a_stale_group_generation_cannot_publish(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic_in, topic_out = create_topic(), create_topic()
    group = f"zombie-{uuid.uuid4().hex[:8]}"
    old_owner = _group_consumer(kafka_bootstrap, group, topic_in)
    stale = old_owner.consumer_group_metadata()
    sink = KafkaSink(kafka_bootstrap, topic_out, instance=uuid.uuid4().hex)
    sink.bind("zombie-job", transactional=True)
    sink.begin(1000)
    sink.write([("k0", "from-the-zombie")])
    old_owner.close()  # the partition moves: a new generation of the group
    new_owner = _group_consumer(kafka_bootstrap, group, topic_in)
    try:
        with pytest.raises(OutputFencedError):
            sink.precommit(1000, [GroupOffsets({(topic_in, 0): 1}, stale)])
        # the same sink, on behalf of the current generation, publishes
        sink.begin(2000)
        sink.write([("k0", "from-the-owner")])
        sink.precommit(
            2000, [GroupOffsets({(topic_in, 0): 1}, new_owner.consumer_group_metadata())]
        )
        out = read_outputs(kafka_bootstrap, topic_out, lambda o: len(o) >= 1)
    finally:
        new_owner.close()
        sink.close()
    assert [(k, v) for k, v, _ in out] == [("k0", "from-the-owner")]


def test_producer_fenced_by_its_successor_cannot_publish(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic_out = create_topic()
    instance = uuid.uuid4().hex
    zombie = KafkaSink(kafka_bootstrap, topic_out, instance=instance)
    zombie.bind("fence-job", transactional=True)
    zombie.begin(1000)
    zombie.write([("k", "zombie")])
    successor = KafkaSink(kafka_bootstrap, topic_out, instance=instance)
    successor.bind("fence-job", transactional=True)  # same transactional.id: fences the zombie
    try:
        with pytest.raises(OutputFencedError):
            zombie.precommit(1000, [])
        successor.begin(2000)
        successor.write([("k", "successor")])
        successor.precommit(2000, [])
        out = read_outputs(kafka_bootstrap, topic_out, lambda o: len(o) >= 1)
    finally:
        zombie.close()
        successor.close()
    assert [(k, v) for k, v, _ in out] == [("k", "successor")]


# -- a crash after the transaction committed, before the ledger step --------------------------


def _start_job(
    env: dict[str, str], topic_in: str, topic_out: str, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "run", str(COUNTER_JOB), topic_in, topic_out],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def _crash_trial(
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    crash_at: int,
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """Kill at the ``crash_at``-th ``outputs_done``, restart; returns the doubled records and
    the outputs of the batch that crashed (read before the restart)."""
    topic_in, topic_out = create_topic(), create_topic()
    keys, per_key = 5, 12
    produce(kafka_bootstrap, topic_in, keyed_records(keys, per_key), partitions=1)
    job = f"crash-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSTREAMS_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "REDIS_URL": redis_url,
            "DSTREAMS_JOB_NAME": job,
            "DSTREAMS_BATCH_INTERVAL_SECONDS": "0.3",
            "DSTREAMS_MAX_RATE_PER_PARTITION": "20",  # 6 records per batch
            "DSTREAMS_INSTANCE_ID": "crash-test",  # a restart reuses the transactional.id
        }
    )
    log = tmp_path / f"{job}.log"
    first = _start_job(
        {**env, "DSTREAMS_CRASH_AT": f"outputs_done:{crash_at}"}, topic_in, topic_out, log
    )
    processes.append(first)
    assert first.wait(90) == -signal.SIGKILL, log.read_text()
    shard = Shard(job, topic_in, 0)
    client = redis.Redis.from_url(redis_url)
    ledgered = client.hget(shard.ledger_key, "batch_id")
    last_ledgered = int(ledgered) if ledgered is not None else -1
    before = read_outputs(kafka_bootstrap, topic_out, lambda o: True)
    crashed = [o for o in before if int(o[2]["dstreams.batch"]) > last_ledgered]

    second = _start_job(env, topic_in, topic_out, log)
    processes.append(second)
    expected = {f"k{k}": per_key for k in range(keys)}
    after = read_outputs(kafka_bootstrap, topic_out, all_counted(expected))
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0, log.read_text()
    # state exact: every key counted once per record, the ledger at the end of the input
    assert finals(after) == expected
    assert int(client.hget(shard.ledger_key, "next_offset") or 0) == keys * per_key
    client.close()
    pairs = Counter((k, v) for k, v, _ in after)
    doubled = Counter({pair: n - 1 for pair, n in pairs.items() if n > 1})
    return doubled, Counter((k, v) for k, v, _ in crashed)


def test_crash_after_outputs_commit_publishes_nothing_twice(
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """The window between the transaction's commit and the ledger step: the restarted owner
    finds the group's offset ahead of the ledger, replays exactly that span into its state and
    publishes none of it again (service/sources/kafka.py, "Replays")."""
    for crash_at in (2, 5):
        doubled, crashed = _crash_trial(
            kafka_bootstrap, redis_url, create_topic, processes, tmp_path, crash_at
        )
        assert crashed, "the crash point hit a batch without outputs"
        assert doubled == Counter(), f"published twice after a crash at batch {crash_at}"
