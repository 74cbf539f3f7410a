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
import signal
import time

import pytest

from service.runtime.crashpoints import ENV_VAR as CRASH_AT
from service.runtime.crashpoints import STEPS
from service.runtime.crashpoints import STOP_ENV_VAR as SIGSTOP_AT
from tests.e2e.support.fleet import JOB_FORMS, every_form
from tests.e2e.support.scenario import Run, StartRun, assert_exact, random_kills, seeded
from tests.support.services import ServiceHandle


def test_no_fault_baseline(start_run: StartRun) -> None:
    """The harness itself: with no fault, three instances give the exact result."""
    run = start_run("baseline", seeded("baseline"), records=10_000, rate=2_000)
    assert_exact(run.finish())


# --- 1. kill -9 ---------------------------------------------------------------------------------

CRASHES_PER_STEP = 3


@pytest.mark.faults
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_crash_step(start_run: StartRun, step: str) -> None:
    """An instance SIGKILLs itself at ``step`` of a batch, three times, restarted each time.

    The three instances run the three job forms; the armed one's form turns with the step, so
    each form crashes at some steps and is a survivor taking over at the others."""
    rng = seeded(f"crash at {step}")
    # slow enough that records flow through all three crashes (crash points count batches
    # with records only)
    forms = every_form(STEPS.index(step))
    run = start_run(f"crash@{step}", rng, records=12_000, rate=400, job=forms)
    armed = run.fleet.instances[0]
    armed.kill()
    armed.start({CRASH_AT: f"{step}:{rng.randint(1, 3)}"})
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
        armed.start({CRASH_AT: f"{step}:{rng.randint(1, 3)}"})
    armed.kill()
    armed.start()  # unarmed, to drain
    report = run.finish(trials=crashes)
    assert not problems, f"{problems}\n{report.summary()}"
    assert_exact(report)


@pytest.mark.faults
def test_kill_at_random_instants(start_run: StartRun) -> None:
    """20 SIGKILLs at random instants of a 3-instance fleet under load (CI size); the
    instances run the three job forms."""
    rng = seeded("random kills")
    run = start_run("random-kill", rng, records=20_000, rate=600, job=every_form())
    trials = random_kills(run, rng, 20, (0.8, 2.2))
    assert_exact(run.finish(trials=trials))


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_at_random_instants_500(start_run: StartRun) -> None:
    """The long form: 500 SIGKILLs over ~15 minutes of load, on the three job forms; prints
    the figures of docs/testing-faults.md."""
    rng = seeded("random kills x500")
    run = start_run("random-kill-500", rng, records=200_000, rate=220, job=every_form())
    trials = random_kills(run, rng, 500, (0.8, 2.6))
    assert_exact(run.finish(trials=trials))


# --- 2. scale -------------------------------------------------------------------------------------


@pytest.mark.faults
def test_scale_1_3_1_under_load(start_run: StartRun) -> None:
    rng = seeded("scale 1-3-1")
    run = start_run("scale-1-3-1", rng, records=20_000, rate=1_000, instances=1, job=every_form())
    run.while_producing(5.0)
    run.fleet.scale_to(3)
    run.while_producing(7.0)
    newest = run.fleet.running()[1:]
    run.fleet.scale_to(1)
    codes = [i.exit_codes[-1] for i in newest]
    report = run.finish(trials=2)
    assert codes == [0] * len(codes), f"scale-down exits {codes}\n{report.summary()}"
    assert_exact(report)


@pytest.mark.faults
@pytest.mark.parametrize("form", sorted(JOB_FORMS))
def test_every_job_form_resumes_through_joins_and_a_sigterm(start_run: StartRun, form: str) -> None:
    """Instances join one after another, then one is stopped with SIGTERM and restarted.

    Issue 9's new-user run: before every form resumed its state, a ``setup(ssc)`` job ended
    with 11 of 40 keys exact, since its state restarted from zero whenever a partition moved
    while the consumer still sought to the ledger's offsets.
    """
    rng = seeded(f"job form {form}")
    run = start_run(f"form-{form}", rng, records=12_000, rate=800, instances=1, job=JOB_FORMS[form])
    for _ in range(2):
        run.while_producing(3.0)
        run.fleet.add()
    run.while_producing(3.0)
    victim = rng.choice(run.fleet.running())
    code = victim.terminate()
    victim.start()
    report = run.finish(trials=3)
    assert code == 0, f"SIGTERM exit {code}\n{report.summary()}"
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
    every instance pauses (/readyz 503, no exit), one is stopped with SIGTERM meanwhile (exit
    0) and restarted after, and all catch up by themselves, exactly."""
    rng = seeded("redis outage")
    run = start_run("redis-outage", rng, records=15_000, rate=800, metrics=True)
    run.while_producing(4.0 + rng.uniform(0, 1))
    redis_server.kill()
    try:
        seen = run.watch_readiness(OUTAGE_S / 2)
        # a graceful stop while Redis is down: the batch in flight cannot commit, the process
        # still exits 0 within its grace period, and its successor reads that batch again
        stopped = rng.choice(run.fleet.running())
        stop_code = stopped.terminate(timeout_s=40.0)
        for index, codes in run.watch_readiness(OUTAGE_S / 2).items():
            seen.setdefault(index, set()).update(codes)
    finally:
        redis_server.start()
    stopped.start()
    report = run.finish(trials=1)
    assert stop_code == 0, f"SIGTERM during the outage: exit {stop_code}\n{report.summary()}"
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


PAUSE_S = 10.0


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.faults
def test_broker_paused_as_a_commit_is_sent(
    start_run: StartRun, kafka_broker: ServiceHandle
) -> None:
    """The broker frozen (SIGSTOP) by an instance the moment it commits a batch's transaction
    (``DSTREAMS_SIGSTOP_AT=commit_transaction:<n>:<broker pid>``), so the EndTxn waits in the
    broker's socket and no reply comes; the instance gives up on the commit (its sinks' timeouts
    lowered to 2 s), its outcome unknown; 10 s later the broker resumes and handles the EndTxn
    then. Every instance's transactions hang meanwhile, and the group rebalances after. The
    instance must settle the unknown commit (a new producer, the group's offsets) before it takes
    records again, and every output must be published once."""
    rng = seeded("broker paused at commit")
    flush = {"E2E_FLUSH_TIMEOUT_S": "2"}
    run = start_run("broker-paused-at-commit", rng, records=12_000, rate=600, env=flush)
    run.while_producing(3.0)
    broker_pid = kafka_broker.pid
    armed = run.fleet.instances[0]
    armed.kill()
    armed.start({SIGSTOP_AT: f"commit_transaction:{rng.randint(2, 4)}:{broker_pid}"})
    try:
        deadline = time.monotonic() + 60.0
        while not stopped(broker_pid):
            assert time.monotonic() < deadline, "the armed instance never froze the broker"
            run.while_producing(0.05)
        run.while_producing(PAUSE_S)
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    report = run.finish(trials=1)
    settled = run.fleet.count_in_logs(r"the outcome of the unknown commit is settled")
    # a replay: the EndTxn committed after all, and its records were replayed without outputs
    replays = run.fleet.count_in_logs(r"kafka_partition_replay\s")
    report.notes.append(f"unknown commits settled: {settled}; partitions replayed: {replays}")
    print(report.summary())
    assert settled >= 1, report.summary()
    assert_exact(report)


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
