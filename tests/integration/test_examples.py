"""Every example runs as the service would: ``python -m service run`` on real Kafka and Redis.

Each job runs in a subprocess with the addresses in its environment, is fed, checked through its
outputs (printed batches, the output topic, Redis), and stopped with SIGTERM, which must end it
with exit status 0.
"""

from __future__ import annotations

import ast
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, TopicPartition

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WAIT_SECONDS = 60.0

LINES = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "the dog sleeps",
]
MORE_LINES = ["the fox wakes", "a quick dog"]


def word_counts(lines: list[str]) -> Counter[str]:
    return Counter(word for line in lines for word in line.split(" "))


class JobProcess:
    """A ``python -m service run`` subprocess whose stdout is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def batches(self) -> list[dict[Any, Any]]:
        """The records of every batch pprint() printed, one dict per batch."""
        found: list[dict[Any, Any]] = []
        current: dict[Any, Any] | None = None
        for line in list(self.stdout):
            if line.startswith("Time: "):
                current = {}
                found.append(current)
            elif current is not None and line.startswith("("):
                key, value = ast.literal_eval(line)
                current[key] = value
        return found

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        give_up = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < give_up:
            if condition():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen; job output:\n{self.output()}")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"job ignored SIGTERM; output:\n{self.output()}") from None
        for t in self._threads:
            t.join(5)
        return code

    def output(self) -> str:
        return "\n".join([*self.stdout[-40:], "--- stderr ---", *self.stderr[-40:]])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def job(args: list[str], env: dict[str, str]) -> Iterator[JobProcess]:
    process = JobProcess(args, env)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def job_env(kafka_bootstrap: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DSTREAMS_") and k != "REDIS_URL"
    }
    name = f"example-{uuid.uuid4().hex[:10]}"
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "REDIS_URL": redis_url,
            "DSTREAMS_JOB_NAME": name,
            "DSTREAMS_BATCH_INTERVAL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def redis_state(redis_url: str, job_name: str) -> dict[Any, Any]:
    """The values of the job's ``:state`` maps (layout in docs/state-schema.md), merged."""
    client = redis.Redis.from_url(redis_url)
    try:
        merged: dict[Any, Any] = {}
        # job-scoped maps, and the per-partition maps of a Kafka job (`{job:topic:partition}`)
        names = [
            *client.scan_iter(match=f"dstreams:{job_name}:s*:state"),
            *client.scan_iter(match=f"dstreams:{{{job_name}:*}}:s*:state"),
        ]
        for name in names:
            fields: dict[bytes, bytes] = client.hgetall(name)  # type: ignore[assignment]
            for k, v in fields.items():
                _partition, _seq, value = pickle.loads(v)
                merged[pickle.loads(k)] = value
        return merged
    finally:
        client.close()


class LineServer:
    """The ``nc -lk`` of the network examples: accepts the job and sends it lines."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(WAIT_SECONDS)
        self.conn: socket.socket | None = None

    def send(self, lines: list[str]) -> None:
        if self.conn is None:
            self.conn, _ = self.sock.accept()
        self.conn.sendall("".join(f"{line}\n" for line in lines).encode())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


@pytest.fixture
def line_server() -> Iterator[LineServer]:
    server = LineServer()
    yield server
    server.close()


def read_topic(bootstrap: str, topic: str) -> dict[str, str]:
    """The latest value of every key of a topic, read from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        latest: dict[str, str] = {}
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    break
                continue
            key, value = msg.key(), msg.value()
            assert key is not None and value is not None
            latest[key.decode()] = value.decode()
        return latest
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def produce_lines(env: dict[str, str], topic: str, lines: list[str], tmp_path: Path) -> None:
    """Through examples/produce_lines.py, as a user would feed the job."""
    source = tmp_path / f"lines-{uuid.uuid4().hex}.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, str(EXAMPLES / "produce_lines.py"), topic, str(source)],
        env=env,
        check=True,
        timeout=WAIT_SECONDS,
    )


def test_kafka_wordcount_counts_into_redis_and_the_output_topic_across_a_restart(
    job_env: dict[str, str],
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    # unkeyed lines: one partition, since a Kafka job's state is kept per partition
    in_topic = create_topic(partitions=1)
    out_topic = create_topic(partitions=1)
    job_name = job_env["DSTREAMS_JOB_NAME"]
    produce_lines(job_env, in_topic, LINES, tmp_path)
    expected = word_counts(LINES)

    def output_is(counts: Counter[str]) -> Callable[[], bool]:
        want = {w: str(c) for w, c in counts.items()}
        return lambda: read_topic(kafka_bootstrap, out_topic) == want

    args = ["examples/kafka_wordcount.py", in_topic, out_topic]
    with job(args, job_env) as first:
        first.wait_for(output_is(expected), "first counts in the output topic")
        assert redis_state(redis_url, job_name) == dict(expected)
        assert first.terminate() == 0, first.output()
    # everything was persisted, so everything read was committed
    group = f"dstreams-{job_name}"
    assert committed_total(kafka_bootstrap, group, in_topic, 1) == len(LINES)

    # a restarted job keeps its counts from Redis and does not read committed lines again
    produce_lines(job_env, in_topic, MORE_LINES, tmp_path)
    expected_after = word_counts(LINES + MORE_LINES)
    with job(args, job_env) as second:
        second.wait_for(output_is(expected_after), "counts after the restart")
        assert redis_state(redis_url, job_name) == dict(expected_after)
        assert second.terminate() == 0, second.output()
    assert committed_total(kafka_bootstrap, group, in_topic, 1) == len(LINES + MORE_LINES)


def test_network_wordcount_prints_the_counts_of_each_batch(
    job_env: dict[str, str], line_server: LineServer
) -> None:
    expected = word_counts(LINES)
    with job(["examples/network_wordcount.py", "127.0.0.1", str(line_server.port)], job_env) as p:
        line_server.send(LINES)

        def all_counted() -> bool:
            total: Counter[str] = Counter()
            for batch in p.batches():
                total.update(batch)
            return total == expected

        p.wait_for(all_counted, "per-batch counts adding up to the lines sent")
        assert p.terminate() == 0, p.output()


def test_stateful_network_wordcount_keeps_running_counts_in_redis(
    job_env: dict[str, str], redis_url: str, line_server: LineServer
) -> None:
    initial = Counter({"hello": 1, "world": 1})
    first_half = word_counts(LINES) + initial
    both = word_counts(LINES + MORE_LINES) + initial
    args = ["examples/stateful_network_wordcount.py", "127.0.0.1", str(line_server.port)]
    job_name = job_env["DSTREAMS_JOB_NAME"]
    with job(args, job_env) as p:
        line_server.send(LINES)
        p.wait_for(lambda: redis_state(redis_url, job_name) == first_half, "first running counts")
        line_server.send(MORE_LINES)
        p.wait_for(lambda: redis_state(redis_url, job_name) == both, "running counts after more")
        # pprint shows 10 of the 13 words; what it shows is the running count
        p.wait_for(lambda: bool(p.batches()) and p.batches()[-1].items() <= both.items(), "print")
        assert len(p.batches()[-1]) == 10
        assert p.terminate() == 0, p.output()


def test_windowed_wordcount_adds_and_subtracts_batches_of_its_window(
    job_env: dict[str, str], line_server: LineServer
) -> None:
    expected = word_counts(LINES)
    zero = dict.fromkeys(expected, 0)
    # a 3 s window sliding every second, over 1 s batches
    args = ["examples/windowed_wordcount.py", "127.0.0.1", str(line_server.port), "3", "1"]
    with job(args, job_env) as p:
        line_server.send(LINES)

        def nonzero(batch: dict[str, int]) -> dict[str, int]:
            return {k: v for k, v in batch.items() if v}

        p.wait_for(lambda: expected in map(nonzero, p.batches()), "the lines inside the window")
        seen_at = [nonzero(b) for b in p.batches()].index(expected)

        def emptied() -> bool:
            return any(not nonzero(b) for b in p.batches()[seen_at + 1 :])

        # once the lines leave the window, the inverse function takes their counts back to 0
        p.wait_for(emptied, "the window after the lines left it")
        assert all(not nonzero(b) or b.keys() <= zero.keys() for b in p.batches())
        assert p.terminate() == 0, p.output()


def test_kafka_wordcount_shuffles_through_kafka_across_partitions_and_instances(
    job_env: dict[str, str],
    kafka_bootstrap: str,
    redis_url: str,
    create_topic: Callable[..., str],
) -> None:
    """Issue 10's new-user run: lines on an unkeyed 3-partition topic, two instances. Grouped
    within each input partition, a word's count was split over the partitions (0 of 40 words
    right); shuffled through a repartition topic, every word's final count is right."""
    from confluent_kafka import Producer

    in_topic = create_topic(partitions=3)
    out_topic = create_topic(partitions=1)
    vocabulary = [f"w{i}" for i in range(40)]
    lines = [" ".join(vocabulary[(i * 7 + j) % 40] for j in range(5)) for i in range(120)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, line in enumerate(lines):
        producer.produce(in_topic, value=line.encode(), partition=i % 3)  # no key
    assert producer.flush(30) == 0
    expected = word_counts(lines)

    env = {**job_env, "DSTREAMS_SHUFFLE": "kafka"}
    args = ["examples/kafka_wordcount.py", in_topic, out_topic]
    want = {w: str(c) for w, c in expected.items()}
    ports = [free_port(), free_port()]
    with (
        job(args, {**env, "DSTREAMS_METRICS_PORT": str(ports[0])}) as first,
        job(args, {**env, "DSTREAMS_METRICS_PORT": str(ports[1])}) as second,
    ):
        give_up = time.monotonic() + 3 * WAIT_SECONDS
        seen: dict[str, str] = {}
        while time.monotonic() < give_up and seen != want:
            time.sleep(1.0)
            seen = read_topic(kafka_bootstrap, out_topic)
        assert seen == want, f"{first.output()}\n=== second ===\n{second.output()}"
        assert redis_state(redis_url, job_env["DSTREAMS_JOB_NAME"]) == dict(expected)
        # the lag of the internal topic's partitions is exported by whoever owns them
        internal = f'topic="{job_env["DSTREAMS_JOB_NAME"]}-repartition-0"'
        lag_lines = [
            line
            for port in ports
            for line in scrape(port).splitlines()
            if line.startswith("dstreams_kafka_consumer_lag_records{") and internal in line
        ]
        assert len(lag_lines) == 3, lag_lines  # the topic has the input's 3 partitions
        assert first.terminate() == 0, first.output()
        assert second.terminate() == 0, second.output()
