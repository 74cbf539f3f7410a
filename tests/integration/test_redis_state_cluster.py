"""State on a real 3-master Redis Cluster (issue 5, scenario 7) named by a redis+cluster:// URL.

The store's contract across hash slots (one transaction per slot, SCAN on every master or only
on the one that holds a shard), and a Kafka job whose only change from the single-Redis setup
is its checkpoint URL: exact counts through restarts, by getOrCreate and by a context built
directly (a Kafka job resumes either way).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from redis.cluster import RedisCluster

from service.commit.ledger import BatchLedger, Shard
from service.devstack.process import free_port
from service.observability.health import redis_check
from service.state.base import StateWrites
from service.state.redis_store import RedisStateStore
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils
from service.streaming.persistence import loads
from tests.integration.commit.conftest import close_client

WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def cluster_url(redis_cluster_url: str) -> str:
    """The fixture's node address in the checkpoint form a job would be given."""
    assert redis_cluster_url.startswith("redis://"), redis_cluster_url
    return "redis+cluster://" + redis_cluster_url.removeprefix("redis://")


@pytest.fixture
def store(cluster_url: str) -> Iterator[RedisStateStore]:
    opened = RedisStateStore.from_url(cluster_url)
    yield opened
    close_client(opened.client)


def _cluster(store: RedisStateStore) -> Any:
    client = store.client
    assert isinstance(client, RedisCluster), "a redis+cluster:// URL must give a cluster client"
    return client


def _calls(store: RedisStateStore, command: str) -> dict[str, int]:
    """Calls of ``command`` so far, per master."""
    cluster = _cluster(store)
    calls = {}
    for node in cluster.get_primaries():
        stats: dict[str, Any] = cluster.get_redis_connection(node).info("commandstats")
        calls[node.name] = int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return calls


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def _spread(store: RedisStateStore, make: Callable[[int], str], per_master: int = 2) -> list[str]:
    """Names from ``make(0)``, ``make(1)``, ... until every master holds ``per_master`` of them."""
    cluster = _cluster(store)
    masters = {node.name for node in cluster.get_primaries()}
    by_master: dict[str, list[str]] = {m: [] for m in masters}
    i = 0
    while any(len(names) < per_master for names in by_master.values()):
        name = make(i)
        i += 1
        names = by_master[cluster.get_node_from_key(name).name]
        if len(names) < per_master:
            names.append(name)
    return [name for names in by_master.values() for name in names]


def _slots(store: RedisStateStore, names: list[str]) -> int:
    return len({_cluster(store).keyslot(name) for name in names})


def test_the_cluster_url_gives_a_cluster_client_on_every_master(store: RedisStateStore) -> None:
    assert len(_cluster(store).get_primaries()) == 3


def test_commit_and_load_across_slots_one_transaction_per_slot(store: RedisStateStore) -> None:
    base = uuid.uuid4().hex
    names = _spread(store, lambda i: f"test:{base}:m{i}")
    dropped = _spread(store, lambda i: f"test:{base}:gone{i}", per_master=1)
    for name in dropped:
        _cluster(store).hset(name, b"old", b"1")
    before = _calls(store, "multi"), _calls(store, "exec")
    w = StateWrites()
    for i, name in enumerate(names):
        w.set(name, b"a", b"%d" % i)
        w.set(name, b"b", b"x")
        w.map_ttls_ms[name] = 60_000
    w.map_drops.update(dropped)
    store.commit(w)
    multi = _delta(before[0], _calls(store, "multi"))
    execs = _delta(before[1], _calls(store, "exec"))
    slots = _slots(store, names + dropped)
    assert sum(multi.values()) == sum(execs.values()) == slots
    assert all(count > 0 for count in multi.values()), "every master took its own transaction"
    for i, name in enumerate(names):
        assert store.load_map(name) == {b"a": b"%d" % i, b"b": b"x"}
        assert 0 < _cluster(store).pttl(name) <= 60_000
    assert all(store.load_map(name) == {} for name in dropped)

    w = StateWrites()
    for name in names:
        w.delete(name, b"a")
    store.commit(w)
    assert all(store.load_map(name) == {b"b": b"x"} for name in names)
    w = StateWrites()
    w.map_drops.update(names)
    store.commit(w)
    assert all(store.load_map(name) == {} for name in names)


def test_maps_of_one_shard_commit_in_one_transaction_on_its_master(
    store: RedisStateStore,
) -> None:
    shard = Shard(f"job-{uuid.uuid4().hex[:8]}", "lines", 4)
    names = [shard.key("s1", "state"), shard.key("s2", "slice", "1500"), shard.key("meta")]
    owner = _cluster(store).get_node_from_key(names[0]).name
    before = _calls(store, "multi")
    w = StateWrites()
    for name in names:
        w.set(name, b"k", b"v")
    w.map_ttls_ms[names[1]] = 60_000
    store.commit(w)
    assert _delta(before, _calls(store, "multi")) == {name: int(name == owner) for name in before}
    assert all(store.load_map(name) == {b"k": b"v"} for name in names)


def test_a_large_map_commits_in_chunks_and_loads_whole(store: RedisStateStore) -> None:
    name = f"test:{uuid.uuid4().hex}"
    w = StateWrites()
    for i in range(12_000):
        w.set(name, b"k%d" % i, b"%d" % i)
    store.commit(w)
    loaded = store.load_map(name)
    assert len(loaded) == 12_000 and loaded[b"k11999"] == b"11999"
    _cluster(store).delete(name)


def test_drop_prefix_without_a_tag_finds_keys_on_every_master(store: RedisStateStore) -> None:
    job = f"drop-{uuid.uuid4().hex[:8]}"
    mine = _spread(store, lambda i: f"dstreams:{job}*:s{i}:state", per_master=3)
    neighbours = [f"dstreams:{job}-other:meta", f"dstreams:{job}x:s1:state"]
    cluster = _cluster(store)
    for name in mine + neighbours:
        cluster.hset(name, b"f", b"1")
    before = _calls(store, "scan")
    store.drop_prefix(f"dstreams:{job}*:")  # '*' in a job name is literal, not a glob
    assert all(count > 0 for count in _delta(before, _calls(store, "scan")).values())
    assert [name for name in mine if cluster.exists(name)] == []
    assert all(cluster.exists(name) for name in neighbours)
    cluster.delete(*neighbours)


def test_drop_prefix_of_one_shard_scans_only_its_master(store: RedisStateStore) -> None:
    job = f"drop-{uuid.uuid4().hex[:8]}"
    shard, other = Shard(job, "lines", 0), Shard(job, "lines", 1)
    engine = [shard.key(f"s{i}", "state") for i in range(600)]  # more than one UNLINK chunk
    kept = [shard.ledger_key, shard.epoch_key, other.key("s1", "state")]
    cluster = _cluster(store)
    for name in engine + kept:
        cluster.hset(name, b"f", b"1")
    owner = cluster.get_node_from_key(shard.ledger_key).name
    before = _calls(store, "scan")
    store.drop_prefix(shard.key("s"))
    scans = _delta(before, _calls(store, "scan"))
    assert scans[owner] > 0 and sum(scans.values()) == scans[owner], scans
    assert [name for name in engine if cluster.exists(name)] == []
    assert all(cluster.exists(name) for name in kept)
    cluster.delete(*kept)


def test_a_url_naming_a_dead_node_first_still_reaches_the_cluster(cluster_url: str) -> None:
    live = cluster_url.removeprefix("redis+cluster://")
    store = RedisStateStore.from_url(f"redis+cluster://127.0.0.1:{free_port()},{live}")
    try:
        name = f"test:{uuid.uuid4().hex}"
        w = StateWrites()
        w.set(name, b"k", b"v")
        store.commit(w)
        assert store.load_map(name) == {b"k": b"v"}
        _cluster(store).delete(name)
    finally:
        close_client(store.client)


def test_readiness_pings_the_cluster_and_fails_without_it(cluster_url: str) -> None:
    redis_check(cluster_url)()
    down = redis_check(f"redis+cluster://127.0.0.1:{free_port()}")  # made while Redis is down
    with pytest.raises(Exception):  # noqa: B017 - any failure of the probe is the point
        down()


# --- a Kafka job on the cluster ---------------------------------------------------------------

PARTITIONS = 3


def _produce(bootstrap: str, topic: str, records: list[tuple[str, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, key=key, value=str(value), partition=int(key[1:]) % PARTITIONS)
    assert producer.flush(30) == 0


def _records(keys: int, per_key: int, start: int) -> list[tuple[str, int]]:
    return [(f"k{k}", start + i) for i in range(per_key) for k in range(keys)]


def _per_partition(records: list[tuple[str, int]]) -> Counter[int]:
    return Counter(int(key[1:]) % PARTITIONS for key, _ in records)


def _add(values: Any, last: tuple[int, int] | None) -> tuple[int, int]:
    count, total = last or (0, 0)
    for value in values:
        count, total = count + 1, total + value
    return (count, total)


def _expected(records: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for key, value in records:
        count, total = out.get(key, (0, 0))
        out[key] = (count + 1, total + value)
    return out


def _run(
    url: str,
    bootstrap: str,
    topic: str,
    job: str,
    offsets: Counter[int],
    *,
    recover: bool,
) -> dict[str, tuple[int, int]]:
    """Run the job until the ledger of every partition reaches ``offsets``; the last output."""
    latest: dict[str, tuple[int, int]] = {}

    def create() -> StreamingContext:
        ssc = StreamingContext(0.3, jobName=job)
        ssc.checkpoint(url)
        records = KafkaUtils.createDirectStream(
            ssc, [topic], {"metadata.broker.list": bootstrap, "group.id": f"dstreams-{job}"}
        )
        states = records.mapValues(int).updateStateByKey(_add)
        states.foreachRDD(lambda rdd: latest.update(rdd.collect()))
        return ssc

    ssc = StreamingContext.getOrCreate(url, create) if recover else create()
    ledger_store = RedisStateStore.from_url(url)
    ledger = BatchLedger(ledger_store.client)
    ssc.start()
    try:
        give_up = time.monotonic() + WAIT_SECONDS
        while True:
            positions = {p: ledger.read_position(Shard(job, topic, p)) for p in range(PARTITIONS)}
            at = {p: pos.next_offset if pos else 0 for p, pos in positions.items()}
            if all(at[p] >= offsets[p] for p in range(PARTITIONS)):
                assert at == {p: offsets[p] for p in range(PARTITIONS)}
                break
            assert time.monotonic() < give_up, f"ledger at {at}, expected {dict(offsets)}"
            ssc.awaitTerminationOrTimeout(0.2)
    finally:
        ssc.stop(stopSparkContext=True, stopGraceFully=True)
        close_client(ledger_store.client)
    return latest


def _stored_state(store: RedisStateStore, job: str, topic: str) -> dict[str, tuple[int, int]]:
    """Every key's state as the cluster holds it, from the maps of all partitions."""
    state: dict[str, tuple[int, int]] = {}
    cluster = _cluster(store)
    for p in range(PARTITIONS):
        names = list(cluster.scan_iter(match=Shard(job, topic, p).key("s*", "state")))
        for name in names:
            for key, value in store.load_map(name.decode()).items():
                assert loads(key) not in state, f"{loads(key)} in two partitions' maps"
                state[loads(key)] = loads(value)[2]
    return state


def test_a_kafka_job_counts_exactly_on_the_cluster_through_a_restart(
    cluster_url: str,
    store: RedisStateStore,
    kafka_bootstrap: str,
    create_topic: Callable[..., str],
) -> None:
    topic = create_topic(partitions=PARTITIONS)
    # a job name whose three partitions are not all on one master
    cluster = _cluster(store)
    while True:
        job = f"cluster-{uuid.uuid4().hex[:8]}"
        owners = {cluster.get_node_from_key(Shard(job, topic, p).ledger_key).name for p in range(3)}
        if len(owners) > 1:
            break

    first = _records(keys=12, per_key=20, start=1)
    _produce(kafka_bootstrap, topic, first)
    out = _run(cluster_url, kafka_bootstrap, topic, job, _per_partition(first), recover=True)
    assert out == _expected(first)

    # a restart through getOrCreate continues from the cluster's state and ledger
    second = _records(keys=12, per_key=15, start=21)
    _produce(kafka_bootstrap, topic, second)
    reached = _per_partition(first + second)
    out = _run(cluster_url, kafka_bootstrap, topic, job, reached, recover=True)
    assert out == _expected(first + second)
    assert _stored_state(store, job, topic) == _expected(first + second)

    # a context built directly resumes too: state goes on with the ledger's positions
    third = _records(keys=12, per_key=5, start=100)
    _produce(kafka_bootstrap, topic, third)
    reached = _per_partition(first + second + third)
    out = _run(cluster_url, kafka_bootstrap, topic, job, reached, recover=False)
    assert out == _expected(first + second + third)
    assert _stored_state(store, job, topic) == _expected(first + second + third)
