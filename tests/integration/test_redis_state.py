"""State in a real Redis: the store's transactions and a stateful job restarted mid-stream."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from typing import Any

import redis

from service.runtime.clock import ManualClock
from service.state.base import StateWrites
from service.state.redis_store import RedisStateStore
from service.streaming import DStream, StreamingContext
from service.streaming.testing import run_batches


def test_commit_and_load(redis_url: str) -> None:
    store = RedisStateStore.from_url(redis_url)
    name = f"test:{uuid.uuid4().hex}"
    w = StateWrites()
    w.set(name, b"a", b"1")
    w.set(name, b"b", b"2")
    w.map_ttls_ms[name] = 60_000
    store.commit(w)
    assert store.load_map(name) == {b"a": b"1", b"b": b"2"}
    assert 0 < store.client.pttl(name) <= 60_000
    w = StateWrites()
    w.delete(name, b"a")
    store.commit(w)
    assert store.load_map(name) == {b"b": b"2"}
    w = StateWrites()
    w.map_drops.add(name)
    store.commit(w)
    assert store.load_map(name) == {}
    store.close()


def test_large_map_loads_whole(redis_url: str) -> None:
    store = RedisStateStore.from_url(redis_url)
    name = f"test:{uuid.uuid4().hex}"
    w = StateWrites()
    for i in range(12_000):
        w.set(name, b"k%d" % i, b"%d" % i)
    store.commit(w)
    loaded = store.load_map(name)
    assert len(loaded) == 12_000 and loaded[b"k11999"] == b"11999"
    store.client.delete(name)
    store.close()


def _calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_one_transaction_per_commit(redis_url: str) -> None:
    store = RedisStateStore.from_url(redis_url)
    client = redis.Redis.from_url(redis_url)
    names = [f"test:{uuid.uuid4().hex}" for _ in range(3)]
    before = _calls(client, "multi"), _calls(client, "exec")
    w = StateWrites()
    for name in names:
        w.set(name, b"k", b"v")
        w.map_ttls_ms[name] = 10_000
    w.map_drops.add(f"test:{uuid.uuid4().hex}")
    store.commit(w)
    after = _calls(client, "multi"), _calls(client, "exec")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert all(store.load_map(n) == {b"k": b"v"} for n in names)
    client.delete(*names)
    store.close()


Build = Callable[[DStream], DStream]


def _job(
    url: str, job: str, build: Build, batches: list[list[str]], n: int, recover: bool = False
) -> list[Any]:
    def create() -> StreamingContext:
        ssc = StreamingContext(0.5, clock=ManualClock(), defaultParallelism=2, jobName=job)
        ssc.checkpoint(url)
        return ssc

    ssc = StreamingContext.getOrCreate(url, create) if recover else create()
    out: dict[int, list[Any]] = {}
    build(ssc.queueStream(batches)).foreachRDD(
        lambda t, rdd: out.__setitem__(round(t.timestamp() * 1000), rdd.collect())
    )
    times = run_batches(ssc, n)
    ssc.stop()
    return [out.get(t) for t in times]


def _pipeline(d: DStream) -> DStream:
    pairs = d.flatMap(str.split).map(lambda w: (w, 1))
    totals = pairs.updateStateByKey(lambda vs, s: sum(vs, s or 0))
    windowed = pairs.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5)
    recent = pairs.groupByKeyAndWindow(1.0, 0.5).mapValues(len)
    return totals.union(windowed).union(recent)


def test_job_restart_continues_as_if_uninterrupted(redis_url: str) -> None:
    lines = [["a b", "a"], ["b c"], [], ["a"], ["c c d"], [], ["b"], [], [], [], [], []]
    whole = _job(redis_url, f"whole-{uuid.uuid4().hex}", _pipeline, lines, len(lines))
    job = f"restart-{uuid.uuid4().hex}"
    first = _job(redis_url, job, _pipeline, lines[:5], 5)
    second = _job(redis_url, job, _pipeline, lines[5:], len(lines) - 5, recover=True)
    assert first + second == whole
    client = redis.Redis.from_url(redis_url)
    keys = {k.decode() for k in client.scan_iter(f"dstreams:{job}:*")}
    assert f"dstreams:{job}:meta" in keys
    assert any(k.endswith(":state") for k in keys)
    # slices older than every window were dropped; the rest live by batch time (no TTL, so a
    # long pause cannot expire a slice a window still needs) and are listed in their index
    slices = [k for k in keys if ":slice:" in k]
    assert slices
    assert all(client.pttl(k) == -1 for k in slices)
    assert all(int(k.rsplit(":", 1)[1]) > 6000 - 3000 for k in slices)
    indexed = {
        f"{index.removesuffix(':slices')}:slice:{t.decode()}"
        for index in keys
        if index.endswith(":slices")
        for t in client.hkeys(index)
    }
    assert indexed == set(slices)


def test_get_or_create_restores_state(redis_url: str) -> None:
    job = f"goc-{uuid.uuid4().hex}"
    seen: list[Any] = []

    def make(batches: list[list[tuple[str, int]]]) -> Callable[[], StreamingContext]:
        def setup() -> StreamingContext:
            ssc = StreamingContext(None, 0.5, clock=ManualClock(), jobName=job)
            ssc.queueStream(batches).updateStateByKey(lambda vs, s: sum(vs, s or 0)).foreachRDD(
                lambda rdd: seen.append(sorted(rdd.collect()))
            )
            return ssc

        return setup

    ssc = StreamingContext.getOrCreate(redis_url, make([[("k", 1)], [("k", 2)]]))
    run_batches(ssc, 2)
    ssc.stop()
    ssc = StreamingContext.getOrCreate(redis_url, make([[("k", 10)]]))
    run_batches(ssc, 1)
    ssc.stop()
    assert seen == [[("k", 1)], [("k", 3)], [("k", 13)]]


def test_a_new_context_with_the_same_checkpoint_starts_afresh(redis_url: str) -> None:
    # Spark restores only through getOrCreate: a suite of jobs sharing one checkpoint URL and
    # job name must not see each other's state. Other jobs' keys (even with glob characters
    # in their names) are left alone.
    base = f"fresh-{uuid.uuid4().hex[:8]}"
    job, neighbour = f"{base}*", f"{base}-other"  # unescaped, "fresh-..*:*" matches both
    lines = [["a b", "a"], ["b c"], [], ["a"]]
    alone = _job(redis_url, f"alone-{uuid.uuid4().hex}", _pipeline, lines, len(lines))
    _job(redis_url, neighbour, _pipeline, lines, len(lines))
    _job(redis_url, job, _pipeline, lines, len(lines))
    assert _job(redis_url, job, _pipeline, lines, len(lines)) == alone
    client = redis.Redis.from_url(redis_url)
    assert client.exists(f"dstreams:{neighbour}:meta")
