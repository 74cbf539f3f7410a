"""Exactly-once across a shuffle through Kafka (issue 10, "Proof"): the keyed counter with
``DSTREAMS_SHUFFLE=kafka``, whose state and window stages read repartition topics.

The input is keyed, but the job re-keys it with a plain ``map`` (not declared key-preserving),
so ``updateStateByKey``, ``reduceByKey`` and ``reduceByKeyAndWindow`` all shuffle, through one
repartition topic (they have one partition count), each parent's pairs tagged; its partitions
are the downstream tasks, where the join of the state with the batch's keys meets. The
checker is the fault suite's (tests/e2e/support/checker.py, windows.py): every key's state,
both outputs and every window exact.

The runs once stopped making progress (3 of 6 baseline runs): a window output that never
emptied, because slices were expired by the batch time of the task ahead while another
downstream task of the instance, behind after an abandoned batch, still had to subtract them
(fixed in ``_SliceLog.expire``; docs/testing-faults.md).
"""

from __future__ import annotations

import pytest

from tests.e2e.support.scenario import StartRun, assert_exact, random_kills, seeded

SHUFFLE = {"DSTREAMS_SHUFFLE": "kafka"}


def test_shuffled_baseline(start_run: StartRun) -> None:
    run = start_run(
        "shuffle-baseline", seeded("shuffle baseline"), records=6_000, rate=1_000, env=SHUFFLE
    )
    assert_exact(run.finish())


@pytest.mark.faults
def test_shuffled_kill_at_random_instants(start_run: StartRun) -> None:
    rng = seeded("shuffle random kills")
    run = start_run("shuffle-random-kill", rng, records=10_000, rate=500, env=SHUFFLE)
    trials = random_kills(run, rng, 10, (0.8, 2.2))
    assert_exact(run.finish(trials=trials))
