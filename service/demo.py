"""`python -m service demo`: the Kafka word count running live on local Kafka and Redis.

It starts the local stack (unless KAFKA_BOOTSTRAP_SERVERS and REDIS_URL already point at
services), runs ``examples/kafka_wordcount.py`` as the service would run it, and feeds the input
topic a few lines a second so the running counts visibly change. A second terminal can add lines
by hand with ``examples/produce_lines.py``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from service.devstack.process import default_home, project_root
from service.devstack.stack import LocalStack

INPUT_TOPIC = "wordcount-input"
OUTPUT_TOPIC = "wordcount-output"
_TEXT = """\
the quick brown fox jumps over the lazy dog
a stream is a sequence of batches and a batch is a small dataset
state lives in redis and offsets are committed after the state
kafka keeps the log and the consumer group shares the partitions
the fox counts the words and the dog counts the batches
"""


def _services() -> dict[str, str]:
    given = {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL") if k in os.environ}
    if len(given) == 2:
        return given
    env = LocalStack(default_home()).up()
    print(f"local Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']}, Redis at {env['REDIS_URL']}")
    return env


def _ensure_topics(bootstrap: str) -> None:
    # One input partition: the word count's lines are unkeyed, and state under a Kafka input is
    # kept per partition (docs/semantics.md), so one partition keeps every word's count whole.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=15).topics
    wanted = [
        NewTopic(topic, num_partitions=1, replication_factor=1)
        for topic in (INPUT_TOPIC, OUTPUT_TOPIC)
        if topic not in existing
    ]
    for future in admin.create_topics(wanted).values() if wanted else []:
        future.result(timeout=30)


def run_demo(seconds: float | None, lines_per_second: float) -> int:
    env = {**os.environ, **_services(), "DSTREAMS_BATCH_INTERVAL_SECONDS": "1"}
    _ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"])
    job = project_root() / "examples" / "kafka_wordcount.py"
    print(
        f"running {job.relative_to(project_root())}; counts print each second. Add lines from "
        f"another shell with:\n  source {default_home() / 'env'} && "
        f".venv/bin/python examples/produce_lines.py {INPUT_TOPIC}\n",
        flush=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "run", str(job), INPUT_TOPIC, OUTPUT_TOPIC],
        env=env,
        cwd=Path.cwd(),
    )
    producer = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        for line in itertools.cycle(_TEXT.splitlines()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if process.poll() is not None:
                print(f"error: the job exited with status {process.returncode}", file=sys.stderr)
                return 1
            producer.produce(INPUT_TOPIC, value=line.encode())
            producer.poll(0)
            time.sleep(1 / lines_per_second)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(10)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # finish the batch in flight, commit, exit 0
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0 if process.returncode == 0 else 1
