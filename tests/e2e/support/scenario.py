"""The moving parts of one exactly-once scenario (tests/e2e): a fleet, a producer, the verdict.

Shared by the scenario modules; ``start_run`` (tests/e2e/conftest.py) builds a ``Run``.
"""

from __future__ import annotations

import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from tests.e2e.support.checker import (
    Plan,
    Producing,
    Report,
    ledger_shards,
    read_joined_state,
    read_output,
    read_state,
    verify,
    verify_joined,
    wait_drained,
)
from tests.e2e.support.fleet import Fleet, Instance
from tests.e2e.support.windows import read_window_state, verify_windows

KEYS = 50
# E2E_INSTANCES=1 separates what a fault does from what moving partitions between members does
INSTANCES = int(os.environ.get("E2E_INSTANCES", "3"))


def seeded(name: str) -> random.Random:
    seed = int(os.environ.get("E2E_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\n{name}: seed {seed} (E2E_SEED={seed} replays it)")
    return random.Random(seed)


@dataclass
class Run:
    """One scenario's moving parts, so that each test reads as its fault and nothing else."""

    name: str
    fleet: Fleet
    plan: Plan
    producing: Producing
    input_topic: str
    output_topic: str
    kafka_bootstrap: str
    redis_url: str
    # a second output topic the job writes the same results to (through a second KafkaSink)
    second_output: str | None = None
    # the topic of the job's sliding window (tests/e2e/support/windows.py)
    window_output: str | None = None
    # the join's second input topic, a copy of the input (tests/e2e/jobs/keyed_counter.py)
    join_input: str | None = None

    def while_producing(self, seconds: float) -> None:
        """Sleep up to ``seconds`` while reviving instances that died on their own."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.fleet.revive()
            time.sleep(0.1)

    def finish(self, trials: int = 0) -> Report:
        """Let the producer end, drain, judge; prints the report (and logs nothing else)."""
        while not self.producing.done():
            self.while_producing(0.5)
        self.producing.join()
        drain = wait_drained(
            self.kafka_bootstrap,
            self.fleet.group_id,
            self.input_topic,
            self.output_topic,
            *[t for t in (self.second_output, self.window_output) if t is not None],
            # revive what dies meanwhile: draining needs members
            on_tick=self.fleet.revive,
            more_inputs=[self.join_input] if self.join_input is not None else [],
            job_name=self.fleet.job_name,
        )
        state = read_state(self.redis_url, self.fleet.job_name)
        report = verify(
            self.name,
            self.plan,
            state,
            read_output(self.kafka_bootstrap, self.output_topic),
            trials=trials,
            drained=drain.drained,
        )
        if self.second_output is not None:
            # the second sink's topic must hold exactly what the first holds
            second = verify(
                self.name, self.plan, state, read_output(self.kafka_bootstrap, self.second_output)
            )
            report.doubled_output += second.doubled_output
            report.lost_output += second.lost_output
            report.output_mismatch += second.output_mismatch
            report.examples += [f"second topic: {e}" for e in second.examples if "output" in e]
        if self.window_output is not None:
            report.window = verify_windows(
                self.plan,
                read_output(self.kafka_bootstrap, self.window_output),
                read_window_state(self.redis_url, self.fleet.job_name),
            )
        if self.join_input is not None:
            wrong = verify_joined(self.plan, read_joined_state(self.redis_url, self.fleet.job_name))
            report.joined_wrong = len(wrong)
            report.examples += wrong
        if not drain.drained:
            report.notes.append(f"not drained after {drain.waited_s:.0f} s, lag {drain.lag}")
        if ledger_shards(self.redis_url, self.fleet.job_name):
            # the service's log lines for a refused or abandoned batch (service/commit/ledger.py,
            # service/streaming/context.py)
            report.fenced = self.fleet.count_in_logs(r"not applied: FENCED|not committed, fenced")
            report.duplicates_refused = self.fleet.count_in_logs(r"not applied: DUPLICATE")
        else:
            report.notes.append("fenced/duplicates: the job ran without a commit ledger")
        exits = self.fleet.unexpected_exits()
        if exits:
            report.notes.append(f"instances that exited unasked and were restarted: {exits}")
        print(report.summary())
        return report

    def readiness(self) -> dict[int, int]:
        """Each running instance's /readyz status (0: no answer); needs ``metrics=True``."""
        codes: dict[int, int] = {}
        for instance in self.fleet.running():
            port = instance.env.get("DSTREAMS_METRICS_PORT")
            if port is None:
                raise RuntimeError("readiness needs start_run(..., metrics=True)")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    codes[instance.index] = r.status
            except urllib.error.HTTPError as exc:
                codes[instance.index] = exc.code
            except OSError:
                codes[instance.index] = 0
        return codes

    def watch_readiness(self, seconds: float) -> dict[int, set[int]]:
        """The /readyz statuses each instance answered over ``seconds`` (reviving meanwhile)."""
        seen: dict[int, set[int]] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for index, code in self.readiness().items():
                seen.setdefault(index, set()).add(code)
            self.while_producing(0.5)
        return seen


StartRun = Callable[..., Run]


def assert_exact(report: Report) -> None:
    assert report.drained, report.summary()
    assert report.lost == 0, report.summary()
    assert report.doubled_state == 0, report.summary()
    assert report.doubled_output == 0, report.summary()
    assert report.lost_output == 0, report.summary()
    assert report.bad_keys == 0 and report.output_mismatch == 0, report.summary()
    assert report.window is None or report.window.exact, report.summary()
    assert not report.joined_wrong, report.summary()


def random_kills(run: Run, rng: random.Random, trials: int, gap_s: tuple[float, float]) -> int:
    """SIGKILL a random running instance every ``gap_s`` seconds and restart it at once."""
    done = 0
    while done < trials:
        run.while_producing(rng.uniform(*gap_s))
        running = run.fleet.running()
        if not running:
            continue
        victim: Instance = rng.choice(running)
        victim.kill()
        done += 1
        victim.start()
    return done
