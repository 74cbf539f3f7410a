"""Exactly-once effect under failure (issue 5, "Proof"): the service as real processes.

Every scenario runs the keyed counter job (tests/e2e/jobs/keyed_counter.py) as several
``python -m service run`` processes in one consumer group on a 6-partition topic, does its fault
while an idempotent producer feeds numbered records, waits until the group drained the input and
the output stopped growing, then checks every key's Redis state and output exactly
(tests/e2e/support/checker.py). Random choices come from one seeded RNG per test: the seed is
printed, and ``E2E_SEED`` replays it. How to run them, and what they measured:
docs/testing-faults.md.
"""

from __future__ import annotations

import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from service.devstack.process import free_port
from service.runtime.crashpoints import ENV_VAR as CRASH_AT
from service.runtime.crashpoints import STEPS
from tests.e2e.support.checker import (
    Plan,
    Producing,
    Report,
    ledger_shards,
    make_plan,
    read_output,
    read_state,
    verify,
    wait_drained,
)
from tests.e2e.support.fleet import Fleet, Instance
from tests.support.services import ServiceHandle

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
            # revive what dies meanwhile: draining needs members
            on_tick=self.fleet.revive,
        )
        report = verify(
            self.name,
            self.plan,
            read_state(self.redis_url, self.fleet.job_name),
            read_output(self.kafka_bootstrap, self.output_topic),
            trials=trials,
            drained=drain.drained,
        )
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


@pytest.fixture
def start_run(
    make_fleet: Callable[..., Fleet],
    topics: tuple[str, str],
    kafka_bootstrap: str,
    redis_url: str,
) -> StartRun:
    def start(
        name: str,
        rng: random.Random,
        *,
        records: int,
        rate: float,
        instances: int = INSTANCES,
        env: dict[str, str] | None = None,
        metrics: bool = False,
    ) -> Run:
        input_topic, output_topic = topics
        fleet = make_fleet(input_topic, output_topic, extra_env=env)
        for _ in range(instances):
            own = {"DSTREAMS_METRICS_PORT": str(free_port())} if metrics else {}
            fleet.add(own).env.update(own)  # kept for restarts
        plan = make_plan(KEYS, records, rng)
        producing = Producing(kafka_bootstrap, input_topic, plan, rng, rate=rate).start()
        return Run(
            name, fleet, plan, producing, input_topic, output_topic, kafka_bootstrap, redis_url
        )

    return start


def assert_exact(report: Report) -> None:
    assert report.drained, report.summary()
    assert report.lost == 0, report.summary()
    assert report.doubled_state == 0, report.summary()
    assert report.doubled_output == 0, report.summary()
    assert report.lost_output == 0, report.summary()
    assert report.bad_keys == 0 and report.output_mismatch == 0, report.summary()


def test_no_fault_baseline(start_run: StartRun) -> None:
    """The harness itself: with no fault, three instances give the exact result."""
    run = start_run("baseline", seeded("baseline"), records=10_000, rate=2_000)
    assert_exact(run.finish())


# --- 1. kill -9 ---------------------------------------------------------------------------------

CRASHES_PER_STEP = 3


@pytest.mark.faults
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_crash_step(start_run: StartRun, step: str) -> None:
    """An instance SIGKILLs itself at ``step`` of a batch, three times, restarted each time."""
    rng = seeded(f"crash at {step}")
    run = start_run(f"crash@{step}", rng, records=12_000, rate=800)
    armed = run.fleet.instances[0]
    armed.kill()
    armed.start({CRASH_AT: f"{step}:{rng.randint(2, 6)}"})
    crashes, problems = 0, []
    for _ in range(CRASHES_PER_STEP):
        code = armed.wait_exit(30.0)
        if code is None:
            problems.append(f"{CRASH_AT}={step} did not fire within 30 s (not wired?)")
            break
        if code == -signal.SIGKILL:
            crashes += 1
        else:
            problems.append(f"armed instance exited {code}, not by its crash point (SIGKILL)")
        armed.start({CRASH_AT: f"{step}:{rng.randint(2, 6)}"})
    armed.kill()
    armed.start()  # unarmed, to drain
    report = run.finish(trials=crashes)
    assert not problems, f"{problems}\n{report.summary()}"
    assert_exact(report)


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


@pytest.mark.faults
def test_kill_at_random_instants(start_run: StartRun) -> None:
    """20 SIGKILLs at random instants of a 3-instance fleet under load (CI size)."""
    rng = seeded("random kills")
    run = start_run("random-kill", rng, records=20_000, rate=600)
    trials = random_kills(run, rng, 20, (0.8, 2.2))
    assert_exact(run.finish(trials=trials))


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_at_random_instants_500(start_run: StartRun) -> None:
    """The long form: 500 SIGKILLs over ~15 minutes of load; prints the figures of issue 5."""
    rng = seeded("random kills x500")
    run = start_run("random-kill-500", rng, records=200_000, rate=220)
    trials = random_kills(run, rng, 500, (0.8, 2.6))
    assert_exact(run.finish(trials=trials))


# --- 2. scale -------------------------------------------------------------------------------------


@pytest.mark.faults
def test_scale_1_3_1_under_load(start_run: StartRun) -> None:
    rng = seeded("scale 1-3-1")
    run = start_run("scale-1-3-1", rng, records=20_000, rate=1_000, instances=1)
    run.while_producing(5.0)
    run.fleet.scale_to(3)
    run.while_producing(7.0)
    newest = run.fleet.running()[1:]
    run.fleet.scale_to(1)
    codes = [i.exit_codes[-1] for i in newest]
    report = run.finish(trials=2)
    assert codes == [0] * len(codes), f"scale-down exits {codes}\n{report.summary()}"
    assert_exact(report)


# --- 3. zombie ------------------------------------------------------------------------------------

POLL_INTERVAL_MS = 6_000


@pytest.mark.faults
def test_zombie_after_sigstop_is_fenced(start_run: StartRun) -> None:
    """SIGSTOP one instance past max.poll.interval.ms and session.timeout.ms, then SIGCONT."""
    rng = seeded("zombie")
    run = start_run(
        "zombie",
        rng,
        records=15_000,
        rate=800,
        env={"DSTREAMS_MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS)},
    )
    run.while_producing(4.0 + rng.uniform(0, 1))
    zombie = run.fleet.instances[0]
    zombie.pause()
    run.while_producing(POLL_INTERVAL_MS / 1000 + 6.0)  # the group moved its partitions on
    zombie.cont()
    report = run.finish(trials=1)
    assert_exact(report)


# --- 4. Redis and broker restarts ----------------------------------------------------------------


OUTAGE_S = 10.0


def assert_paused_through_outage(run: Run, seen: dict[int, set[int]]) -> None:
    """Every instance stayed up, said not ready during the outage, and is ready again."""
    assert run.fleet.unexpected_exits() == {}, "an instance exited instead of pausing"
    assert seen and all(503 in codes for codes in seen.values()), f"/readyz seen: {seen}"
    assert set(run.readiness().values()) == {200}, run.readiness()


@pytest.mark.faults
def test_redis_down_then_restarted(start_run: StartRun, redis_server: ServiceHandle) -> None:
    """Redis SIGKILLed mid-run and started again 10 s later (appendonly, appendfsync always):
    every instance pauses (/readyz 503, no exit), then catches up by itself, exactly."""
    rng = seeded("redis outage")
    run = start_run("redis-outage", rng, records=15_000, rate=800, metrics=True)
    run.while_producing(4.0 + rng.uniform(0, 1))
    redis_server.kill()
    try:
        seen = run.watch_readiness(OUTAGE_S)
    finally:
        redis_server.start()
    report = run.finish(trials=1)
    assert_exact(report)
    assert_paused_through_outage(run, seen)


@pytest.mark.faults
def test_broker_down_then_restarted(start_run: StartRun, kafka_broker: ServiceHandle) -> None:
    """The broker stopped mid-run and started again 10 s later: the same, for Kafka."""
    rng = seeded("broker outage")
    run = start_run("broker-outage", rng, records=15_000, rate=800, metrics=True)
    run.while_producing(4.0 + rng.uniform(0, 1))
    kafka_broker.stop()
    try:
        seen = run.watch_readiness(OUTAGE_S)
    finally:
        kafka_broker.start()
    report = run.finish(trials=1)
    assert_exact(report)
    assert_paused_through_outage(run, seen)


# --- 5. SIGTERM -----------------------------------------------------------------------------------


@pytest.mark.faults
def test_sigterm_mid_batch_then_restart(start_run: StartRun) -> None:
    """SIGTERM a random instance three times (graceful stop, exit 0) and restart it."""
    rng = seeded("sigterm")
    run = start_run("sigterm", rng, records=15_000, rate=800)
    codes = []
    for _ in range(3):
        run.while_producing(rng.uniform(2.0, 4.0))
        victim = rng.choice(run.fleet.running())
        codes.append(victim.terminate())
        victim.start()
    report = run.finish(trials=len(codes))
    assert codes == [0] * len(codes), f"SIGTERM exits {codes}\n{report.summary()}"
    assert_exact(report)
