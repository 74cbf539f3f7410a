"""Benchmark: the same keyed word count on kafka-dstreams, Faust and quixstreams, one at a time.

    .venv-bench/bin/python bench/run.py --records 200000

Produces N keyed word records to an input topic once, then runs each system from a fresh
consumer group on that backlog until every record is reflected (lag 0 and exact counts on its
output topic), stops it, and writes a markdown report to bench/results/<date>-<N>.md (also
printed). Speed is only reported as ratios to the Faust rows of the same run, on the same
broker; bench/README.md says how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.observe import ProcessTree, end_offsets, watch
from harness.report import Row, machine, render, versions
from harness.stack import services
from harness.systems import BENCH, DEFAULT_SYSTEMS, ROOT, SYSTEMS, System, start_workers
from harness.workload import Workload, create_topics, delete_topics, produce

STOP_GRACE_S = 30.0


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="input records (N)")
    parser.add_argument("--partitions", type=int, default=6, help="input partitions (P)")
    parser.add_argument("--vocabulary", type=int, default=1000, help="distinct words")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated rows, in order, from: {', '.join(s.key for s in SYSTEMS)}",
    )
    parser.add_argument(
        "--batch-interval",
        type=float,
        default=1.0,
        help="kafka-dstreams batch interval, s (DSTREAMS_BATCH_INTERVAL_SECONDS; default 1)",
    )
    parser.add_argument(
        "--max-rate",
        type=int,
        default=None,
        help="kafka-dstreams records/s per partition (DSTREAMS_MAX_RATE_PER_PARTITION; "
        "default unbounded: a backlog is read in batches as large as the consumer fetched)",
    )
    parser.add_argument(
        "--ours-python",
        default=sys.executable,
        help="interpreter for the kafka-dstreams rows (default this one; .venv/bin/python runs "
        "them on the project's own client versions)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per row, s")
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--keep-services", action="store_true", help="leave the broker and Redis running"
    )
    return parser.parse_args(argv)


def _load() -> float:
    return os.getloadavg()[0]


def _stop(workers: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM each worker's process group, SIGKILL what outlives the grace period."""
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        try:
            w.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    for w in workers:  # anything a worker spawned and left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(w.pid, signal.SIGKILL)
    return [w.returncode for w in workers]


def _forget_redis_state(redis_url: str, name: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{name}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def _run_system(
    system: System,
    *,
    tag: str,
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    service_pids: tuple[int, ...],
    input_topic: str,
    end: dict[int, int],
    expected: dict[str, int],
    rundir: Path,
) -> Row:
    name = f"{tag}-{system.key}"
    output_topic = f"{name}-out"
    create_topics(bootstrap, [output_topic], args.partitions)
    launch = system.launch(
        name=name,
        bootstrap=bootstrap,
        redis_url=redis_url,
        input_topic=input_topic,
        output_topic=output_topic,
        partitions=args.partitions,
        batch_interval=args.batch_interval,
        max_rate=args.max_rate,
        ours_python=args.ours_python,
        workdir=rundir / system.key,
    )
    log = rundir / f"{system.key}.log"
    load_before = _load()
    print(f"-- {system.key}: {system.name}, {system.guarantee}, {system.processes} process(es)")
    services = ProcessTree(service_pids) if service_pids else None
    with log.open("wb") as out:
        if services is not None:
            services.sample()
        started = time.monotonic()
        workers = start_workers(launch, out)
        try:
            outcome = watch(
                workers,
                started=started,
                bootstrap=bootstrap,
                group=launch.group,
                input_topic=input_topic,
                output_topic=output_topic,
                partitions=args.partitions,
                end=end,
                expected=expected,
                timeout_s=args.timeout,
                services=services,
            )
        finally:
            codes = _stop(workers)
    outcome.exit_codes = codes
    if system.key.startswith("ours"):
        _forget_redis_state(redis_url, name)
    shutil.rmtree(rundir / system.key, ignore_errors=True)
    row = Row(system, outcome, args.records, load_before, log)
    print(
        f"   {row.verdict}; wall {outcome.wall_s}; output {outcome.output_records} records;"
        f" exit codes {codes}"
    )
    return row


def _result_path(results: Path, records: int) -> Path:
    stem = f"{datetime.date.today().isoformat()}-{records}"
    path = results / f"{stem}.md"
    i = 2
    while path.exists():
        path = results / f"{stem}-{i}.md"
        i += 1
    return path


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    by_key = {s.key: s for s in SYSTEMS}
    chosen = [k.strip() for k in args.systems.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in by_key]
    if unknown:
        print(f"error: unknown systems {unknown}", file=sys.stderr)
        return 2
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/run.py", *sys.argv[1:]])
    tag = f"bench{int(time.time())}"
    rundir = ROOT / ".devstack" / "bench" / "runs" / tag
    rundir.mkdir(parents=True)
    workload = Workload(args.records, args.vocabulary, seed=args.seed)
    words = workload.words()
    expected = workload.expected(words)
    rows: list[Row] = []
    with services(keep=args.keep_services) as svc:
        import redis

        client = redis.Redis.from_url(svc.redis_url)
        redis_version = str(client.info("server")["redis_version"])
        client.close()
        if svc.origin == "devstack":
            from service.devstack.kafka import KAFKA_VERSION

            kafka_version = f"Apache Kafka {KAFKA_VERSION} (devstack, single KRaft node)"
        else:
            kafka_version = f"given by KAFKA_BOOTSTRAP_SERVERS ({svc.bootstrap})"
        input_topic = f"{tag}-input"
        print(f"producing {args.records:,} records to {input_topic} ({args.partitions} partitions)")
        create_topics(svc.bootstrap, [input_topic], args.partitions)
        produce(svc.bootstrap, input_topic, words)
        end = end_offsets(svc.bootstrap, input_topic, args.partitions)
        if sum(end.values()) != args.records:
            print(f"error: input topic holds {sum(end.values())} records", file=sys.stderr)
            return 1
        try:
            for key in chosen:
                rows.append(
                    _run_system(
                        by_key[key],
                        tag=tag,
                        args=args,
                        bootstrap=svc.bootstrap,
                        redis_url=svc.redis_url,
                        service_pids=svc.pids,
                        input_topic=input_topic,
                        end=end,
                        expected=expected,
                        rundir=rundir,
                    )
                )
        finally:
            from confluent_kafka.admin import AdminClient

            topics = AdminClient({"bootstrap.servers": svc.bootstrap}).list_topics(timeout=10)
            delete_topics(svc.bootstrap, [t for t in topics.topics if tag in t])
    hot = max(expected.values())
    report = render(
        title=f"kafka-dstreams vs Faust: keyed word count, {args.records:,} records",
        command=command,
        workload={
            "N (records)": f"{args.records:,}, produced once before the first row; every row "
            "drains the same backlog from a fresh consumer group",
            "P (input partitions)": str(args.partitions),
            "keys": f"{args.vocabulary:,} distinct words, Zipf s={workload.zipf_s}, seed "
            f"{args.seed} (hottest word {hot:,} records, {len(expected):,} words present)",
            "job": "running count per word; each result is (word, new count) on an output topic",
            "kafka-dstreams batch interval": f"{args.batch_interval} s, max rate "
            + (f"{args.max_rate:,} records/s per partition" if args.max_rate else "unbounded"),
            "row order": ", ".join(chosen),
            "per-row timeout": f"{args.timeout:.0f} s",
        },
        machine_info=machine(),
        version_info=versions(kafka_version, redis_version, args.ours_python),
        rows=rows,
        services_origin=svc.origin,
    )
    args.results.mkdir(parents=True, exist_ok=True)
    path = _result_path(args.results, args.records)
    path.write_text(report)
    print()
    print(report)
    print(f"written to {os.path.relpath(path, ROOT)}; worker logs in {rundir}")
    return 0 if all(r.verdict == "exact" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
