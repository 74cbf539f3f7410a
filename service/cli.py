"""`python -m service`: the command line of the service and of its local development stack."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from service import __version__
from service.devstack.kafka import KAFKA_VERSION, fetch_jars
from service.devstack.process import DevstackError, default_home
from service.devstack.stack import LocalStack


def _devstack(args: argparse.Namespace) -> int:
    stack = LocalStack(default_home())
    if args.action == "fetch":
        started = time.monotonic()
        jars = fetch_jars(default_home())
        print(f"Kafka {KAFKA_VERSION} jars ready in {jars} ({time.monotonic() - started:.1f}s)")
    elif args.action == "up":
        started = time.monotonic()
        env = stack.up()
        print(f"local Kafka and Redis are ready ({time.monotonic() - started:.1f}s):")
        for key, value in env.items():
            print(f"  {key}={value}")
        print(f"point a shell at them with: source {stack.env_file}")
    elif args.action == "down":
        stack.down()
        print("local Kafka and Redis stopped")
    else:
        status = stack.status()
        if not status:
            print("no local stack has been started here")
        for name, line in status.items():
            print(f"{name}: {line}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from service import runner

    return runner.main(args.job, args.job_args)


def _demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    return run_demo(args.seconds, args.lines_per_second)


def _dlq(args: argparse.Namespace) -> int:
    from service.config import ConfigError, load_settings
    from service.sinks.dead_letter import ReplayError, replay

    try:
        settings = load_settings()
        count = replay(
            settings.kafka_bootstrap_servers, args.topic, to=args.to, max_records=args.max
        )
    except (ConfigError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {count} dead letters from {args.topic}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    import redis
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from service.commit.reset import ResetError, plan_reset, reset_job
    from service.config import ConfigError, load_settings
    from service.state.redis_client import connect

    job = args.job.removesuffix(".py").rsplit("/", 1)[-1] if args.job.endswith(".py") else args.job
    try:
        settings = load_settings()
        group = args.group or settings.consumer_group(job)
        client = connect(settings.redis_url)
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        plan = plan_reset(client, admin, job, group)
        print(f"reset would remove: {plan.describe()}")
        plan.check()
        if not args.yes:
            print("nothing removed: add --yes to reset the job")
            return 2
        reset_job(client, admin, plan)
    except (ConfigError, ResetError, KafkaException, redis.RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"job {job} reset: it starts afresh at its next run")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Spark Streaming's DStream model on Kafka, with state in Redis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    devstack = commands.add_parser(
        "devstack",
        help="start, stop or show a local Kafka broker and redis-server (no Docker needed)",
    )
    devstack.add_argument("action", choices=["fetch", "up", "down", "status"])
    devstack.set_defaults(handler=_devstack)

    run = commands.add_parser(
        "run",
        help="run a PySpark-style streaming job (a .py file or module:function), see docs/jobs.md",
    )
    run.add_argument("job", help="path/to/job.py, package.module or package.module:function")
    run.add_argument("job_args", nargs=argparse.REMAINDER, help="arguments given to the job")
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo", help="run the Kafka word count live on local Kafka and Redis, fed by a producer"
    )
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.add_argument("--lines-per-second", type=float, default=4.0)
    demo.set_defaults(handler=_demo)

    reset = commands.add_parser(
        "reset",
        help="start a job afresh: delete its state, ledger, epochs, attempts and group offsets",
    )
    reset.add_argument("job", help="the job's name (DSTREAMS_JOB_NAME, else its file's name)")
    reset.add_argument("--group", default=None, help="its consumer group, if not the default")
    reset.add_argument("--yes", action="store_true", help="really delete (without: only show)")
    reset.set_defaults(handler=_reset)

    dlq = commands.add_parser("dlq", help="dead letters: send them back to their topic")
    dlq_actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    replay = dlq_actions.add_parser(
        "replay", help="send dead letters not replayed yet back to their original topic"
    )
    replay.add_argument("--topic", required=True, help="the dead-letter topic")
    replay.add_argument("--to", default=None, help="send here instead of the original topic")
    replay.add_argument("--max", type=int, default=None, help="replay at most this many")
    replay.set_defaults(handler=_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code
