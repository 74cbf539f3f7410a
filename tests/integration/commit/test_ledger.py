"""The ledger on a real Redis and on a real 3-master Redis Cluster: every outcome of a commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import OutOfMemoryError

from service.commit.ledger import (
    AnyRedis,
    BatchLedger,
    ForeignKeyError,
    LedgerError,
    Outcome,
    Position,
    Shard,
    UnsafeRedisError,
    check_redis,
    encode_commit,
)
from service.state.base import StateWrites
from tests.integration.commit.conftest import close_client


@pytest.fixture(params=["redis", "cluster"])
def client(request: pytest.FixtureRequest) -> Iterator[AnyRedis]:
    conn: AnyRedis
    if request.param == "redis":
        conn = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    else:
        conn = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    yield conn
    close_client(conn)


@pytest.fixture
def shard() -> Shard:
    return Shard(f"job-{uuid.uuid4().hex[:8]}", "lines", 3)


def _writes(shard: Shard, counts: dict[bytes, int], stream: str = "s1") -> StateWrites:
    writes = StateWrites()
    for word, count in counts.items():
        writes.set(shard.key(stream, "state"), word, str(count).encode())
    return writes


def _state(client: AnyRedis, shard: Shard, stream: str = "s1") -> dict[bytes, bytes]:
    raw: dict[Any, Any] = client.hgetall(shard.key(stream, "state"))
    return raw


def _applied(client: AnyRedis, shard: Shard) -> int:
    return int(client.hget(shard.ledger_key, "applied_batches") or 0)


def test_applied_then_duplicate_on_retry(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    assert ledger.read_position(shard) is None
    epoch = ledger.acquire_epoch(shard)

    first = ledger.commit_batch(shard, epoch, 1000, 0, 10, _writes(shard, {b"a": 2, b"b": 1}))
    assert first.outcome is Outcome.APPLIED
    assert first.position is not None
    assert (first.position.next_offset, first.position.batch_id) == (10, 1000)
    # the same batch again, and a recomputation of it from the state it already changed
    again = ledger.commit_batch(shard, epoch, 1000, 0, 10, _writes(shard, {b"a": 2, b"b": 1}))
    recomputed = ledger.commit_batch(shard, epoch, 1000, 0, 10, _writes(shard, {b"a": 4, b"b": 2}))
    assert again.outcome is recomputed.outcome is Outcome.DUPLICATE
    assert again.position == first.position
    assert _state(client, shard) == {b"a": b"2", b"b": b"1"}
    assert _applied(client, shard) == 1
    assert ledger.read_position(shard) == first.position

    # records already covered under a later batch id (a replay from older offsets): ignored too
    replay = ledger.commit_batch(shard, epoch, 2000, 5, 10, _writes(shard, {b"a": 9}))
    assert replay.outcome is Outcome.DUPLICATE
    assert _state(client, shard) == {b"a": b"2", b"b": b"1"}


def test_next_batches_and_empty_batches_apply(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    assert ledger.commit_batch(shard, epoch, 1, 0, 10, _writes(shard, {b"a": 1})).outcome is (
        Outcome.APPLIED
    )
    # no new records, but state changed (updateStateByKey runs every batch)
    empty = ledger.commit_batch(shard, epoch, 2, 10, 10, _writes(shard, {b"a": 0}))
    assert empty.outcome is Outcome.APPLIED
    writes = _writes(shard, {b"b": 5})
    writes.delete(shard.key("s1", "state"), b"a")
    writes.map_drops.add(shard.key("s2", "state"))
    writes.map_ttls_ms[shard.key("s3", "slice")] = 60_000
    client.hset(shard.key("s2", "state"), "x", "1")
    client.hset(shard.key("s3", "slice"), "p0", "r")
    third = ledger.commit_batch(shard, epoch, 3, 10, 12, writes)
    assert third.outcome is Outcome.APPLIED
    assert _state(client, shard) == {b"b": b"5"}
    assert client.exists(shard.key("s2", "state")) == 0
    assert 0 < client.pttl(shard.key("s3", "slice")) <= 60_000
    assert _applied(client, shard) == 3


def test_zombie_is_fenced_after_reassignment(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    old = ledger.acquire_epoch(shard)
    assert ledger.commit_batch(shard, old, 1, 0, 10, _writes(shard, {b"a": 1})).outcome is (
        Outcome.APPLIED
    )
    new = ledger.acquire_epoch(shard)  # the partition moved to another instance
    assert new > old

    zombie = ledger.commit_batch(shard, old, 2, 10, 20, _writes(shard, {b"a": 99}))
    assert zombie.outcome is Outcome.FENCED
    assert zombie.current_epoch == new
    assert zombie.position is not None and zombie.position.next_offset == 10
    assert _state(client, shard) == {b"a": b"1"}

    owner = ledger.commit_batch(shard, new, 2, 10, 20, _writes(shard, {b"a": 2}))
    assert owner.outcome is Outcome.APPLIED
    assert owner.position is not None and owner.position.epoch == new
    # fencing is checked before idempotence: a zombie's retry of its own old batch is fenced too
    assert ledger.commit_batch(shard, old, 1, 0, 10, StateWrites()).outcome is Outcome.FENCED
    assert _applied(client, shard) == 2


def test_gap_and_overlap_are_refused(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 1, 0, 10, _writes(shard, {b"a": 1}))
    for from_offset, next_offset in ((12, 20), (5, 15)):
        result = ledger.commit_batch(
            shard, epoch, 2, from_offset, next_offset, _writes(shard, {b"a": 7})
        )
        assert result.outcome is Outcome.GAP
        assert result.position is not None and result.position.next_offset == 10
    assert _state(client, shard) == {b"a": b"1"}
    assert _applied(client, shard) == 1


def test_new_records_under_an_old_batch_id_are_applied(client: AnyRedis, shard: Shard) -> None:
    """Issue 9: a new owner whose clock is behind the previous owner's made batch ids go back;
    the ledger refused its batches (LedgerError) and the service crash-looped. New records are
    new whatever the id: applied, and the recorded id never goes back."""
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 5, 0, 10, StateWrites())
    result = ledger.commit_batch(shard, epoch, 4, 10, 20, _writes(shard, {b"a": 1}))
    assert result.outcome is Outcome.APPLIED
    assert result.position is not None and result.position.batch_id == 5
    assert _state(client, shard) == {b"a": b"1"}
    # its retry is still a duplicate, and an empty batch under an old id writes nothing
    again = ledger.commit_batch(shard, epoch, 4, 10, 20, _writes(shard, {b"a": 1}))
    assert again.outcome is Outcome.DUPLICATE
    assert ledger.commit_batch(shard, epoch, 3, 20, 20, StateWrites()).outcome is Outcome.DUPLICATE


def test_wrong_type_midway_writes_nothing(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 1, 0, 10, StateWrites())
    client.set(shard.key("s9", "state"), "not a hash")  # sorts after s1: written later
    writes = _writes(shard, {b"a": 1})
    writes.set(shard.key("s9", "state"), b"k", b"v")
    writes.map_drops.add(shard.key("s0", "state"))
    client.hset(shard.key("s0", "state"), "keep", "me")

    with pytest.raises(LedgerError, match="WRONGTYPE"):
        ledger.commit_batch(shard, epoch, 2, 10, 20, writes)
    assert _state(client, shard) == {}
    assert client.hgetall(shard.key("s0", "state")) == {b"keep": b"me"}
    position = ledger.read_position(shard)
    assert position is not None and position.next_offset == 10

    # a key of another type that the batch drops first is fine: it is a fresh hash by then
    writes.map_drops.add(shard.key("s9", "state"))
    assert ledger.commit_batch(shard, epoch, 2, 10, 20, writes).outcome is Outcome.APPLIED
    assert client.hgetall(shard.key("s9", "state")) == {b"k": b"v"}


def test_redis_does_not_roll_back_a_failing_script(client: AnyRedis, shard: Shard) -> None:
    """Why the ledger validates first: a bare script that fails midway keeps its first writes."""
    bare = client.register_script(
        "redis.call('HSET', KEYS[1], 'f', 'v'); redis.call('HSET', KEYS[2], 'f', 'v')"
    )
    first, second = shard.key("s1", "state"), shard.key("s2", "state")
    client.set(second, "a string")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        bare(keys=[first, second])
    assert client.hgetall(first) == {b"f": b"v"}


def test_script_reloads_after_script_flush(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 1, 0, 10, _writes(shard, {b"a": 1}))
    client.script_flush()
    result = ledger.commit_batch(shard, epoch, 2, 10, 20, _writes(shard, {b"a": 2}))
    assert result.outcome is Outcome.APPLIED
    assert _state(client, shard) == {b"a": b"2"}


def test_fifty_thousand_fields_in_one_batch(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    name = shard.key("s1", "state")
    writes = StateWrites()
    for i in range(50_000):
        writes.set(name, b"\x00k" + i.to_bytes(4, "big"), b"\xff\x00" + str(i).encode())
    assert ledger.commit_batch(shard, epoch, 1, 0, 50_000, writes).outcome is Outcome.APPLIED
    assert client.hlen(name) == 50_000
    assert client.hget(name, b"\x00k" + (49_999).to_bytes(4, "big")) == b"\xff\x0049999"

    deletes = StateWrites()
    for i in range(0, 50_000, 2):
        deletes.delete(name, b"\x00k" + i.to_bytes(4, "big"))
    assert ledger.commit_batch(shard, epoch, 2, 50_000, 50_001, deletes).outcome is (
        Outcome.APPLIED
    )
    assert client.hlen(name) == 25_000


def test_two_shards_in_one_call_are_refused_before_redis(client: AnyRedis, shard: Shard) -> None:
    ledger = BatchLedger(client)
    other = Shard(shard.job, shard.topic, shard.partition + 1)
    writes = _writes(shard, {b"a": 1})
    writes.set(other.key("s1", "state"), b"a", b"1")
    with pytest.raises(ForeignKeyError):
        ledger.commit_batch(shard, 1, 1, 0, 10, writes)
    assert _state(client, shard) == {} and _state(client, other) == {}
    assert ledger.read_position(shard) is None


def test_script_itself_refuses_a_foreign_key(
    redis_url: str, shard: Shard, closing: Callable[[redis.Redis], redis.Redis]
) -> None:
    """Defense in depth for callers that bypass the Python check (one Redis: no CROSSSLOT)."""
    client = closing(redis.Redis.from_url(redis_url))
    script = client.register_script(
        resources.files("service.commit").joinpath("ledger.lua").read_text()
    )
    encoded = encode_commit(shard, 1, 1, 0, 10, _writes(shard, {b"a": 1}))
    stray = "dstreams:{elsewhere}:state"
    keys = [*encoded.keys, stray]
    args: list[Any] = [*encoded.args, "S", len(keys), 1, b"f", b"v"]
    with pytest.raises(redis.ResponseError, match="lacks the hash tag"):
        script(keys=keys, args=args)
    assert client.exists(stray, shard.key("s1", "state"), shard.ledger_key) == 0


def test_check_redis_refuses_an_evicting_server(client: AnyRedis) -> None:
    check_redis(client)
    node: Any = client
    if isinstance(client, RedisCluster):
        cluster: Any = client
        node = cluster.get_redis_connection(cluster.get_primaries()[-1])
    node.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(UnsafeRedisError, match="maxmemory-policy is 'allkeys-lru'"):
            check_redis(client)
    finally:
        node.config_set("maxmemory-policy", "noeviction")
    check_redis(client)


def test_out_of_memory_refuses_the_whole_batch(
    redis_url: str, shard: Shard, closing: Callable[[redis.Redis], redis.Redis]
) -> None:
    """The other realistic runtime failure: Redis refuses a script's first write, no later one."""
    client = closing(redis.Redis.from_url(redis_url))
    ledger = BatchLedger(client)
    epoch = ledger.acquire_epoch(shard)
    writes = _writes(shard, {b"a": 1})
    writes.set(shard.key("s2", "state"), b"b", b"2")
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(OutOfMemoryError, match="maxmemory"):
            ledger.commit_batch(shard, epoch, 1, 0, 10, writes)
    finally:
        client.config_set("maxmemory", 0)
    assert _state(client, shard) == {} and _state(client, shard, "s2") == {}
    assert ledger.read_position(shard) is None
    assert ledger.commit_batch(shard, epoch, 1, 0, 10, writes).outcome is Outcome.APPLIED


def test_wait_for_replicas_reports_acks(client: AnyRedis, shard: Shard) -> None:
    """The test servers have no replicas: WAIT answers 0 within its timeout, the batch applies."""
    ledger = BatchLedger(client, wait_replicas=1, wait_timeout_ms=50, wait_aof=True)
    epoch = ledger.acquire_epoch(shard)
    result = ledger.commit_batch(shard, epoch, 1, 0, 10, _writes(shard, {b"a": 1}))
    assert result.outcome is Outcome.APPLIED
    assert result.replicas_acked == 0
    assert isinstance(result.position, Position)
