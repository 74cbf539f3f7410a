"""The ledger waits through a Redis that refuses writes for a while (issue 9, hole 6): a primary
demoted during a failover (READONLY) and a full Redis (OOM under noeviction). Each refuses the
script before its first write, so the same call is sent again until Redis takes it, instead of
the batch failing and the service exiting."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from service.commit.ledger import BatchLedger, Outcome, Shard
from service.devstack.process import free_port
from service.devstack.redis import RedisServer
from service.state.base import StateWrites


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    own = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always")
    own.start()
    yield own
    own.stop()


def _later(seconds: float, action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_the_ledger_waits_through_readonly_and_oom(
    server: RedisServer, closing: Callable[[redis.Redis], redis.Redis]
) -> None:
    client = closing(redis.Redis.from_url(server.url))
    admin = closing(redis.Redis.from_url(server.url))
    ledger = BatchLedger(client, retry_seconds=30)
    shard = Shard("failover", "t", 0)
    epoch = ledger.acquire_epoch(shard)
    writes = StateWrites()
    writes.set(shard.key("s1", "state"), b"k", b"1")

    # demoted: a replica of a primary that is not there yet (its data stays)
    admin.replicaof("127.0.0.1", str(free_port()))
    with pytest.raises(redis.ReadOnlyError):
        client.set(shard.key("probe"), "x")
    promoted = _later(1.0, lambda: admin.replicaof("NO", "ONE"))
    result = ledger.commit_batch(shard, epoch, 1, 0, 5, writes)
    promoted.join()
    assert result.outcome is Outcome.APPLIED
    assert client.hget(shard.key("s1", "state"), "k") == b"1"

    # full: every write refused until memory is raised
    admin.config_set("maxmemory", "1")
    freed = _later(1.0, lambda: admin.config_set("maxmemory", "0"))
    writes = StateWrites()
    writes.set(shard.key("s1", "state"), b"k", b"2")
    result = ledger.commit_batch(shard, epoch, 2, 5, 9, writes)
    freed.join()
    assert result.outcome is Outcome.APPLIED
    assert result.position is not None and result.position.next_offset == 9
    assert client.hget(shard.key("s1", "state"), "k") == b"2"
