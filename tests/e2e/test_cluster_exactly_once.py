"""Scenario 7 of issue 5: scenario 1 (random SIGKILLs of a 3-instance fleet) with its state on a
real 3-master Redis Cluster (``redis-cli --cluster create``, tests/conftest.py ``redis_cluster``).

The jobs are unchanged: only ``REDIS_URL`` differs, ``redis+cluster://<one node>``. The run and
its verdict are tests/e2e/support/scenario.py's; the checker reads state from every master.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.state.redis_client import connect
from tests.e2e.support.checker import ledger_shards
from tests.e2e.support.scenario import StartRun, assert_exact, random_kills, seeded
from tests.integration.commit.conftest import close_client

PARTITIONS = 6


@pytest.fixture
def redis_url(redis_cluster_url: str) -> str:
    """Overrides the single Redis for every fixture of this module (the fleet, the run)."""
    assert redis_cluster_url.startswith("redis://"), redis_cluster_url
    return "redis+cluster://" + redis_cluster_url.removeprefix("redis://")


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_kill_at_random_instants_on_redis_cluster(start_run: StartRun, redis_url: str) -> None:
    """20 SIGKILLs at random instants of a 3-instance fleet under load, state on the cluster."""
    rng = seeded("random kills on redis cluster")
    run = start_run("cluster-random-kill", rng, records=20_000, rate=600)
    trials = random_kills(run, rng, 20, (0.8, 2.2))
    report = run.finish(trials=trials)
    assert_exact(report)
    # every partition's ledger is on the cluster, spread over its masters by hash tag
    assert ledger_shards(redis_url, run.fleet.job_name) == PARTITIONS, report.summary()
    cluster: Any = connect(redis_url)
    try:
        owners = {
            cluster.get_node_from_key(name).name
            for name in cluster.scan_iter(match=f"dstreams:*{run.fleet.job_name}*:ledger")
        }
    finally:
        close_client(cluster)
    print(f"ledgers of {PARTITIONS} partitions on {len(owners)} of 3 masters")
