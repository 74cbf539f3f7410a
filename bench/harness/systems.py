"""How each benchmarked system is started: one row of the report is one ``System`` run.

Every run gets names of its own (consumer group, output topic, job name, state directory) built
from the run's tag, so it starts from a fresh group and empty state, and everything it leaves in
Kafka can be found by the tag and deleted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    processes: int
    group: str


def start_workers(launch: Launch, out: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    """The launch's processes, each in a session of its own, all logging to ``out``."""
    return [
        subprocess.Popen(
            launch.argv,
            env=launch.env,
            cwd=launch.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(launch.processes)
    ]


@dataclass(frozen=True)
class System:
    key: str  # what --systems selects
    name: str
    guarantee: str  # exactly-once or at-least-once
    how: str  # the setting or mechanism behind it, for the report
    processes: int = 1
    settings: tuple[tuple[str, str], ...] = ()  # extra environment of the workers

    @property
    def is_faust(self) -> bool:
        return self.key.startswith("faust")

    def launch(
        self,
        *,
        name: str,
        bootstrap: str,
        redis_url: str,
        input_topic: str,
        output_topic: str,
        partitions: int,
        batch_interval: float,
        max_rate: int | None,
        ours_python: str,
        workdir: Path,
    ) -> Launch:
        """Command line and environment for this system; ``name`` is unique to the run."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DSTREAMS_", "BENCH_"))}
        base["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        base["PYTHONUNBUFFERED"] = "1"
        workdir.mkdir(parents=True, exist_ok=True)
        if self.key.startswith("ours"):
            env = base | {
                "REDIS_URL": redis_url,
                "DSTREAMS_JOB_NAME": name,
                "DSTREAMS_GROUP_ID": name,
                "DSTREAMS_BATCH_INTERVAL_SECONDS": str(batch_interval),
                "DSTREAMS_LOG_LEVEL": "WARNING",
            }
            if max_rate:
                env["DSTREAMS_MAX_RATE_PER_PARTITION"] = str(max_rate)
            env |= dict(self.settings)
            argv = [
                ours_python,
                "-m",
                "service",
                "run",
                str(BENCH / "jobs" / "ours_wordcount.py"),
                input_topic,
                output_topic,
            ]
            return Launch(argv, env, ROOT, self.processes, name)
        env = base | {
            "BENCH_APP_ID": name,
            "BENCH_INPUT": input_topic,
            "BENCH_OUTPUT": output_topic,
            "BENCH_PARTITIONS": str(partitions),
            "BENCH_STATE_DIR": str(workdir / "state"),
        }
        if self.is_faust:
            env["BENCH_GUARANTEE"] = "exactly_once" if "eos" in self.key else "at_least_once"
            argv = [
                sys.executable,
                str(BENCH / "jobs" / "faust_wordcount.py"),
                "worker",
                "--loglevel",
                "info",  # warn or above makes the root logger DEBUG (spinner)
            ]
            return Launch(argv, env, workdir, self.processes, name)
        env["BENCH_GUARANTEE"] = "exactly-once" if "eos" in self.key else "at-least-once"
        argv = [sys.executable, str(BENCH / "jobs" / "quix_wordcount.py")]
        return Launch(argv, env, workdir, self.processes, name)


_EOS_OURS = "Redis ledger for state and offsets, output in Kafka transactions"
# the cost of a shuffle through Kafka (issue 10): the same job, its re-keyed pairs written to a
# repartition topic and read back by the downstream tasks
_SHUFFLED = (("BENCH_SHUFFLE", "1"),)
_EOS_SHUFFLED = (
    f"{_EOS_OURS}; input declared not partitioned by key: pairs through <job>-repartition-0"
)
SYSTEMS = [
    System("ours", "kafka-dstreams", "exactly-once", _EOS_OURS),
    System("ours3", "kafka-dstreams", "exactly-once", _EOS_OURS, 3),
    System("ours-shuffle", "kafka-dstreams", "exactly-once", _EOS_SHUFFLED, 1, _SHUFFLED),
    System("ours3-shuffle", "kafka-dstreams", "exactly-once", _EOS_SHUFFLED, 3, _SHUFFLED),
    System("faust-eos", "Faust", "exactly-once", 'processing_guarantee="exactly_once"'),
    System("faust-alo", "Faust", "at-least-once", 'processing_guarantee="at_least_once"'),
    System("quix-eos", "quixstreams", "exactly-once", 'processing_guarantee="exactly-once"'),
    System("quix-alo", "quixstreams", "at-least-once", 'processing_guarantee="at-least-once"'),
]
DEFAULT_SYSTEMS = [
    "ours",
    "ours3",
    "ours-shuffle",
    "ours3-shuffle",
    "faust-eos",
    "faust-alo",
    "quix-eos",
]
