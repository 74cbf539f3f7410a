"""N instances of one job as real ``python -m service run`` processes, and the faults done to them.

Each instance is a subprocess in its own process group with its own log file, so a test can
kill -9, SIGTERM, SIGSTOP/SIGCONT or restart one of them exactly as an orchestrator would, and
show the logs when it fails. ``close`` always leaves no process behind, stopped ones included.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
KEYED_COUNTER = REPO_ROOT / "tests" / "e2e" / "jobs" / "keyed_counter.py"
# the same job in each form a job takes: getOrCreate script, setup(ssc), main()
JOB_FORMS = {
    "script": KEYED_COUNTER,
    "setup": KEYED_COUNTER.with_name("keyed_counter_setup.py"),
    "main": KEYED_COUNTER.with_name("keyed_counter_main.py"),
}


def every_form(first: int = 0) -> tuple[Path, ...]:
    """The three forms, one per instance in turn starting with the ``first``-th: a fleet of
    them puts every form under the same faults in one run (they build the same graph, so they
    share state and offsets as replicas of one job do)."""
    forms = [JOB_FORMS[f] for f in ("script", "setup", "main")]
    first %= len(forms)
    return (*forms[first:], *forms[:first])


@dataclass
class Instance:
    """One service process; ``generation`` counts its (re)starts, each with its own log file."""

    index: int
    log_dir: Path
    argv: list[str]
    env: dict[str, str]
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)
    stopped: bool = False  # SIGSTOPped
    wanted: bool = False  # meant to be running: an exit not asked for is revived
    unexpected_exits: list[int] = field(default_factory=list)

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"instance-{self.index}.{self.generation}.log"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, extra_env: Mapping[str, str] | None = None) -> None:
        if self.alive():
            raise RuntimeError(f"instance {self.index} is already running")
        self.generation += 1
        env = {**self.env, **(extra_env or {})}
        with self.log_file.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.stopped = False
        self.wanted = True

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL and reap; returns the exit status (-9, or what it had already exited with)."""
        self.wanted = False
        self.signal(signal.SIGKILL)
        return self.wait(30.0)

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait: a graceful stop finishes its batch and exits 0."""
        self.wanted = False
        if self.stopped:
            self.cont()
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def wait(self, timeout_s: float) -> int:
        """Exit status once the process ended; SIGKILL if it outlives ``timeout_s``."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_codes.append(self.process.wait(30.0))
            raise
        self.exit_codes.append(code)
        return code

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit status if the process ends on its own within ``timeout_s``, else None."""
        assert self.process is not None
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self.wanted = False
        self.exit_codes.append(code)
        return code

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in sorted(self.log_dir.glob(f"instance-{self.index}.*.log"))
        )


class Fleet:
    """Instances of ``job`` sharing one job name and consumer group (replicas of one service).

    ``job``: one job file, or several that instances take in turn (``every_form``).
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        job_args: list[str],
        kafka_bootstrap: str,
        redis_url: str,
        job_name: str,
        batch_interval_s: float = 0.3,
        job: Path | Sequence[Path] = KEYED_COUNTER,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.job_name = job_name
        self.group_id = f"dstreams-{job_name}"
        self.jobs = [job] if isinstance(job, Path) else list(job)
        self.job_args = job_args
        base = {k: v for k, v in os.environ.items() if not k.startswith("DSTREAMS_")}
        self.env = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "REDIS_URL": redis_url,
            "DSTREAMS_JOB_NAME": job_name,
            "DSTREAMS_GROUP_ID": self.group_id,
            "DSTREAMS_BATCH_INTERVAL_SECONDS": str(batch_interval_s),
            **(extra_env or {}),
        }
        self.instances: list[Instance] = []

    def add(self, extra_env: Mapping[str, str] | None = None) -> Instance:
        """Start one more instance (it joins the group, which rebalances)."""
        index = len(self.instances)
        # a stable id per replica, as a StatefulSet's pod name: a restarted instance's producer
        # aborts the transaction its predecessor left open at once (service/sinks/kafka.py)
        env = {**self.env, "DSTREAMS_INSTANCE_ID": f"{self.job_name}-{index}"}
        job = self.jobs[index % len(self.jobs)]
        argv = [sys.executable, "-m", "service", "run", str(job), *self.job_args]
        instance = Instance(index, self.log_dir, argv, env)
        self.instances.append(instance)
        instance.start(extra_env)
        return instance

    def scale_to(self, n: int) -> None:
        """Start instances, or SIGTERM the newest running ones, until ``n`` run."""
        running = self.running()
        for instance in running[n:][::-1]:
            instance.terminate()
        for _ in range(n - len(running)):
            self.add()

    def revive(self) -> int:
        """Restart every instance that exited without being asked to, as a supervisor would."""
        revived = 0
        for instance in self.instances:
            process = instance.process
            if instance.wanted and process is not None and process.poll() is not None:
                instance.exit_codes.append(process.returncode)
                instance.unexpected_exits.append(process.returncode)
                instance.start()
                revived += 1
        return revived

    def unexpected_exits(self) -> dict[int, list[int]]:
        return {i.index: i.unexpected_exits for i in self.instances if i.unexpected_exits}

    def running(self) -> list[Instance]:
        return [i for i in self.instances if i.alive()]

    def close(self) -> None:
        """SIGKILL whatever still runs (a stopped process dies of SIGKILL too)."""
        for instance in self.instances:
            if instance.alive():
                instance.signal(signal.SIGKILL)
        for instance in self.instances:
            if instance.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    instance.process.wait(30.0)

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for instance in self.instances:
            tail = instance.logs().splitlines()[-lines:]
            parts.append(
                f"--- instance {instance.index} (exits {instance.exit_codes}) ---\n"
                + "\n".join(tail)
            )
        return "\n".join(parts)

    def count_in_logs(self, pattern: str) -> int:
        """Lines of every instance's logs that match ``pattern`` (case-insensitive)."""
        regex = re.compile(pattern, re.IGNORECASE)
        return sum(
            1 for i in self.instances for line in i.logs().splitlines() if regex.search(line)
        )
