"""Redis fails over to a replica that lost acknowledged writes (issue 9, "Proof"), as processes.

A real primary and a real replica (redis-server, ``REPLICAOF``); the fleet reaches Redis through
a TCP proxy, as clients reach a primary through a Kubernetes Service or a failover-aware proxy
(tests/support/proxy.py). Mid-run the replica stops following (``REPLICAOF NO ONE``): from then
on none of the primary's writes reach it. The fleet goes on committing to the primary for two
seconds, then the primary is SIGKILLed and the proxy moves to the promoted replica: every ledger
commit of those two seconds is gone, epochs included, as in a failover without ``WAIT``. The
service must notice (ledger GAP or REGRESSED), rebuild from what the replica holds and what
Kafka still has, and publish nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from service.devstack.redis import RedisServer
from tests.e2e.support.scenario import StartRun, assert_exact, seeded
from tests.support.proxy import TcpProxy


def ledgers(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    """Every commit ledger in ``client`` (one hash per partition of every job)."""
    return {name: client.hgetall(name) for name in client.scan_iter(match="*:ledger", count=1000)}


def wait_for(predicate: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


@pytest.mark.faults
def test_failover_to_a_replica_that_lost_commits(start_run: StartRun, tmp_path: Path) -> None:
    rng = seeded("redis failover")
    primary = RedisServer(tmp_path / "primary", appendfsync="always")
    replica = RedisServer(tmp_path / "replica", appendfsync="always")
    primary.start()
    replica.start()
    assert primary.port is not None and replica.port is not None
    proxy = TcpProxy(primary.port)
    to_primary = redis.Redis(port=primary.port)
    to_replica = redis.Redis(port=replica.port)
    try:
        to_replica.replicaof("127.0.0.1", primary.port)
        wait_for(
            lambda: to_replica.info("replication")["master_link_status"] == "up",
            "the replica never caught up with the primary",
        )
        run = start_run("redis-failover", rng, records=15_000, rate=800, redis=proxy.url)
        run.while_producing(4.0 + rng.uniform(0, 1))
        to_replica.replicaof("NO", "ONE")  # promoted; the primary's writes stop reaching it
        run.while_producing(2.0)
        on_primary, on_replica = ledgers(to_primary), ledgers(to_replica)
        primary.kill()
        proxy.retarget(replica.port)
        report = run.finish(trials=1)
    finally:
        proxy.close()
        to_primary.close()
        to_replica.close()
        primary.kill()
        replica.stop()
    behind = sum(1 for name, fields in on_primary.items() if on_replica.get(name) != fields)
    assert behind > 0, "the failover was meant to lose ledger commits, and lost none"
    noticed = run.fleet.count_in_logs(
        r"refused \((gap|regressed)\)|kafka_partition_resynced|kafka_partition_reclaimed_after_loss"
    )
    report.notes.append(f"ledgers behind after the failover: {behind}; loss noticed {noticed}x")
    print(report.summary())
    assert noticed > 0, report.summary()
    assert_exact(report)
