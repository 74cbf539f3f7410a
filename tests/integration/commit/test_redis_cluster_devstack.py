"""The local Redis Cluster: it forms, survives a restart with its data, and fails cleanly."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from service.commit.ledger import BatchLedger, Outcome, Shard
from service.devstack.process import DevstackError
from service.devstack.redis_cluster import RedisClusterServer, free_cluster_port
from service.state.base import StateWrites
from tests.support.services import ServiceHandle


def test_cluster_serves_shards_on_every_master_and_survives_restart(
    redis_cluster: ServiceHandle, closing: Callable[[Any], Any]
) -> None:
    if not isinstance(redis_cluster, RedisClusterServer):
        pytest.skip("the cluster was given by the environment and cannot be restarted")
    client: Any = closing(RedisCluster.from_url(redis_cluster.url))
    assert len(client.get_primaries()) == 3
    job = f"job-{uuid.uuid4().hex[:8]}"
    shards = [Shard(job, "lines", p) for p in range(12)]
    owners = {client.get_node_from_key(s.ledger_key).name for s in shards}
    assert len(owners) > 1  # the shards really are spread over masters
    ledger = BatchLedger(client)
    for shard in shards:
        writes = StateWrites()
        writes.set(shard.key("s1", "state"), b"k", str(shard.partition).encode())
        epoch = ledger.acquire_epoch(shard)
        assert ledger.commit_batch(shard, epoch, 1, 0, 5, writes).outcome is Outcome.APPLIED

    redis_cluster.restart()

    client = closing(RedisCluster.from_url(redis_cluster.url))
    ledger = BatchLedger(client)
    for shard in shards:
        position = ledger.read_position(shard)
        assert position is not None and position.next_offset == 5
        assert client.hget(shard.key("s1", "state"), "k") == str(shard.partition).encode()


def test_failed_start_names_the_port_and_leaves_no_process(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        first = free_cluster_port()
        (tmp_path / "ports.json").write_text(
            json.dumps({"ports": [first, busy, free_cluster_port()]})
        )
        cluster = RedisClusterServer(tmp_path)
        with pytest.raises(DevstackError, match=f"127.0.0.1:{busy} is already in use") as err:
            cluster.start()
    assert "\n" not in str(err.value)
    assert (cluster.nodes[0].workdir / "redis.log").exists()  # the first node had started
    with pytest.raises(ConnectionRefusedError):  # and is gone
        socket.create_connection(("127.0.0.1", first), timeout=2).close()
    assert not list(tmp_path.glob("node-*/redis.pid"))
