"""Exactly-once across a shuffle through Kafka (issue 10, "Proof"): the keyed counter with
``DSTREAMS_SHUFFLE=kafka``, whose state and window stages read repartition topics, joined
with a second topic.

The input is keyed, but the job declares it not partitioned by key
(``dstreams.partitioned.by.key``: False, through ``E2E_SHUFFLE_INPUT``), so
``updateStateByKey``, ``reduceByKey`` and ``reduceByKeyAndWindow`` all shuffle, through one
repartition topic (they have one partition count), each parent's pairs tagged; its partitions
are the downstream tasks, where the join of the state with the batch's keys meets. With
``join=True`` the producer also writes a copy of every record to a second topic, and per-batch
totals of both topics meet in a ``fullOuterJoin`` (both sides shuffled into the same topic, 12
upstream tasks) kept by ``updateStateByKey``. The checker is the fault suite's
(tests/e2e/support/checker.py, windows.py): every key's state, both outputs, every window and
every key's join totals exact.

The runs once stopped making progress (3 of 6 baseline runs): a window output that never
emptied, because slices were expired by the batch time of the task ahead while another
downstream task of the instance, behind after an abandoned batch, still had to subtract them
(fixed in ``_SliceLog.expire``; docs/testing-faults.md).
"""

from __future__ import annotations

import signal

import pytest

from service.runtime.crashpoints import ENV_VAR as CRASH_AT
from service.runtime.crashpoints import STEPS
from tests.e2e.support.fleet import every_form
from tests.e2e.support.scenario import StartRun, assert_exact, random_kills, seeded

SHUFFLE = {"DSTREAMS_SHUFFLE": "kafka", "E2E_SHUFFLE_INPUT": "1"}


def test_shuffled_baseline(start_run: StartRun) -> None:
    run = start_run(
        "shuffle-baseline",
        seeded("shuffle baseline"),
        records=6_000,
        rate=1_000,
        env=SHUFFLE,
        join=True,
    )
    assert_exact(run.finish())


@pytest.mark.faults
def test_shuffled_kill_at_each_step(start_run: StartRun) -> None:
    """One SIGKILL at every step of the commit protocol in turn, each by another instance (the
    three job forms), restarted each time; then all drain."""
    rng = seeded("shuffle kill at each step")
    run = start_run(
        "shuffle-each-step",
        rng,
        records=20_000,
        rate=400,
        env=SHUFFLE,
        join=True,
        job=every_form(),
    )
    crashes, problems = 0, []
    for index, step in enumerate(STEPS):
        armed = run.fleet.instances[index % len(run.fleet.instances)]
        armed.kill()
        armed.start({CRASH_AT: f"{step}:{rng.randint(1, 3)}"})
        code = armed.wait_exit(30.0)
        if code is None:
            problems.append(f"{CRASH_AT}={step} did not fire within 30 s")
            armed.kill()
        elif code == -signal.SIGKILL:
            crashes += 1
        else:
            problems.append(f"{step}: the armed instance exited {code}, not by its crash point")
        armed.start()
    report = run.finish(trials=crashes)
    assert not problems, f"{problems}\n{report.summary()}"
    assert_exact(report)


@pytest.mark.faults
def test_shuffled_kill_at_random_instants(start_run: StartRun) -> None:
    rng = seeded("shuffle random kills")
    run = start_run(
        "shuffle-random-kill",
        rng,
        records=10_000,
        rate=500,
        env=SHUFFLE,
        join=True,
        job=every_form(),
    )
    trials = random_kills(run, rng, 10, (0.8, 2.2))
    assert_exact(run.finish(trials=trials))
