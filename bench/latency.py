"""End-to-end latency under a steady feed, with and without a shuffle through Kafka.

The word count of bench/run.py (bench/jobs/ours_wordcount.py) runs on a fresh topic while a
producer feeds it at ``--rate`` records/s for ``--seconds``. The producer keeps, per word, the
wall-clock time it produced each occurrence; an output record ``(word, c)`` is the count after
the word's c-th occurrence, so its latency is the time a ``read_committed`` reader saw it minus
the time the c-th occurrence was produced: from the newest input a result reflects to that
result being visible. Records produced in the first ``--warmup`` seconds (startup, the group
join) are left out. A count that goes back or repeats is reported: the answer must stay exact.

    .venv/bin/python bench/latency.py --rate 2000 --seconds 40

It prints one table (p50, p99, max per row) and writes it to
``bench/results/<date>-latency.md``. Kafka and Redis as bench/run.py finds or starts them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from harness.stack import services
from harness.systems import ROOT, SYSTEMS, start_workers
from harness.workload import Workload, create_topics, delete_topics

DEFAULT_ROWS = "ours,ours-shuffle,ours3,ours3-shuffle"


@dataclass
class Feed:
    """The steady producer: per word, the produce time of each occurrence, in order."""

    bootstrap: str
    topic: str
    words: list[str]
    rate: float
    produced: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "partitioner": "murmur2_random",
                    "linger.ms": 1,
                    "enable.idempotence": True,
                }
            )
            started = time.monotonic()
            for i, word in enumerate(self.words):
                ahead = started + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                data = word.encode()
                # appended before the record can be counted: a reader never looks it up early
                self.produced[word].append(time.time())
                producer.produce(self.topic, key=data, value=data)
                producer.poll(0)
            if producer.flush(60):
                raise RuntimeError("the feed's records were not all acknowledged")
        except BaseException as exc:
            self.error = exc


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)
    outputs: int = 0
    went_back: int = 0  # a count at or below the word's last one, or above what was produced

    def percentile(self, q: float) -> float | None:
        if len(self.seconds) < 2:
            return None
        return statistics.quantiles(self.seconds, n=1000, method="inclusive")[round(q * 1000) - 1]


def watch_output(
    bootstrap: str, topic: str, partitions: int, feed: Feed, since: float, stop: threading.Event
) -> Latencies:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-latency",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found = Latencies()
    last: dict[str, int] = {}
    try:
        while not stop.is_set():
            for message in consumer.consume(1000, timeout=0.05):
                seen = time.time()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                word = (message.key() or b"").decode()
                count = int(message.value() or b"0")
                found.outputs += 1
                occurrences = feed.produced[word]
                if count <= last.get(word, 0) or count > len(occurrences):
                    found.went_back += 1  # seen twice, or counted more than produced
                    continue
                last[word] = count
                produced_at = occurrences[count - 1]
                if produced_at >= since:
                    found.seconds.append(seen - produced_at)
    finally:
        consumer.close()
    return found


def run_row(key: str, args: argparse.Namespace, bootstrap: str, redis_url: str, tag: str) -> str:
    system = next(s for s in SYSTEMS if s.key == key)
    name = f"{tag}-{key}"
    input_topic, output_topic = f"{name}-input", f"{name}-out"
    create_topics(bootstrap, [input_topic, output_topic], args.partitions)
    launch = system.launch(
        name=name,
        bootstrap=bootstrap,
        redis_url=redis_url,
        input_topic=input_topic,
        output_topic=output_topic,
        partitions=args.partitions,
        batch_interval=args.batch_interval,
        max_rate=None,
        ours_python=sys.executable,
        workdir=ROOT / ".devstack" / "bench" / "runs" / name,
    )
    words = Workload(int(args.rate * args.seconds), seed=args.seed).words()
    feed = Feed(bootstrap, input_topic, words, args.rate)
    log = ROOT / ".devstack" / "bench" / "runs" / f"{name}.log"
    with log.open("wb") as out:
        workers = start_workers(launch, out)
    stop = threading.Event()
    result: list[Latencies] = []
    since = time.time() + args.warmup
    reader = threading.Thread(
        target=lambda: result.append(
            watch_output(bootstrap, output_topic, args.partitions, feed, since, stop)
        )
    )
    reader.start()
    producing = threading.Thread(target=feed.run)
    producing.start()
    producing.join()
    time.sleep(args.batch_interval * 3 + 3)  # the last batches' results
    stop.set()
    reader.join()
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    if feed.error is not None:
        raise feed.error
    found = result[0]

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:,.0f}"

    top = max(found.seconds) if found.seconds else None
    row = (
        f"| {key} | {system.processes} | {ms(found.percentile(0.5))} "
        f"| {ms(found.percentile(0.99))} | {ms(top)} | {len(found.seconds):,} "
        f"| {found.went_back} |"
    )
    print(row, flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="records/s fed")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long each row is fed")
    parser.add_argument("--warmup", type=float, default=10.0, help="s left out at the start")
    parser.add_argument("--batch-interval", type=float, default=1.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--systems", default=DEFAULT_ROWS)
    args = parser.parse_args()
    keys = [k for k in args.systems.split(",") if k]
    unknown = [k for k in keys if not k.startswith("ours") or k not in {s.key for s in SYSTEMS}]
    if unknown:
        print(f"error: rows {unknown}: only kafka-dstreams rows (ours*) here", file=sys.stderr)
        return 2
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/latency.py", *sys.argv[1:]])
    tag = f"latency{int(time.time())}"
    header = [
        "| row | procs | p50 ms | p99 ms | max ms | results measured | went back |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(header), flush=True)
    rows = []
    with services() as svc:
        try:
            for key in keys:
                rows.append(run_row(key, args, svc.bootstrap, svc.redis_url, tag))
        finally:
            from confluent_kafka.admin import AdminClient

            topics = AdminClient({"bootstrap.servers": svc.bootstrap}).list_topics(timeout=10)
            delete_topics(svc.bootstrap, [t for t in topics.topics if tag in t])
    report = "\n".join(
        [
            "# kafka-dstreams: end-to-end latency of the word count, steady feed",
            "",
            f"Command: `{command}`",
            "",
            f"- feed: {args.rate:,.0f} records/s for {args.seconds:.0f} s per row, keyed words "
            f"(Zipf, 1,000 words), {args.partitions} partitions; the first {args.warmup:.0f} s "
            "left out",
            f"- batch interval {args.batch_interval} s; latency: produce time of the newest "
            "occurrence a result counts -> the result read by a read_committed consumer",
            f"- machine: {os.cpu_count()} cores, shared with the broker and Redis",
            "",
            *header,
            *rows,
            "",
        ]
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{datetime.date.today().isoformat()}-latency.md"
    path.write_text(report)
    print(f"written to {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
