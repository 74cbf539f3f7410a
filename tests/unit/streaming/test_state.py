"""updateStateByKey, and state that lives in the store: restart, key schema, one commit a batch."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from service.sources.queue import QueueSource
from service.state.base import StateWrites
from service.state.memory_store import MemoryStateStore
from service.streaming import DStream
from service.streaming.testing import run_batches
from tests.unit.streaming.util import Collector, make_ssc, run


def append_state(values: list[Any], state: list[Any] | None) -> list[Any]:
    if not state:
        state = []
    state.extend(values)
    return state


def test_update_state_by_key() -> None:
    out = run([[("k", i)] for i in range(5)], lambda d: d.updateStateByKey(append_state), 6)
    assert out == [
        [("k", [0])],
        [("k", [0, 1])],
        [("k", [0, 1, 2])],
        [("k", [0, 1, 2, 3])],
        [("k", [0, 1, 2, 3, 4])],
        [("k", [0, 1, 2, 3, 4])],
    ]


def test_update_state_by_key_initial_rdd_list_and_batch() -> None:
    inputs = [[("k", i)] for i in range(2, 5)]
    expected = [[("k", [0, 1, 2])], [("k", [0, 1, 2, 3])], [("k", [0, 1, 2, 3, 4])]]
    out = run(inputs, lambda d: d.updateStateByKey(append_state, initialRDD=[("k", [0, 1])]), 3)
    assert out == expected

    def with_batch(d: DStream) -> DStream:
        initial = d.context().sparkContext.parallelize([("k", [0, 1])], 1)
        return d.updateStateByKey(append_state, initialRDD=initial)

    assert run(inputs, with_batch, 3) == expected


def test_update_func_sees_every_key_every_batch_and_none_removes() -> None:
    calls: list[tuple[str, list[int], int | None]] = []

    def update(values: list[int], state: int | None) -> int | None:
        key = "?"
        calls.append((key, list(values), state))
        if not values:
            return None
        return sum(values, state or 0)

    out = run(
        [[("a", 1), ("b", 2)], [("a", 3)], [], [("b", 1)]],
        lambda d: d.updateStateByKey(update),
        5,
        sort=True,
    )
    assert out == [[("a", 1), ("b", 2)], [("a", 4)], [], [("b", 1)], []]
    # batch 2: a (new values) and b (state only); batch 3: a only; batch 4: b; batch 5: b
    assert [(v, s) for _, v, s in calls] == [
        ([1], None),
        ([2], None),
        ([3], 1),
        ([], 2),
        ([], 4),
        ([1], None),
        ([], 1),
    ]


def test_word_count_state_with_windows_downstream() -> None:
    out = run(
        [["a b", "a"], ["b"], ["c a"]],
        lambda d: (
            d.flatMap(str.split)
            .map(lambda w: (w, 1))
            .updateStateByKey(lambda vs, s: sum(vs, s or 0))
            .window(1.0, 1.0)
        ),
        4,
        sort=True,
    )
    assert out[1] == [("a", 2), ("a", 2), ("b", 1), ("b", 2)]
    assert out[3] == [("a", 3), ("a", 3), ("b", 2), ("b", 2), ("c", 1), ("c", 1)]


# -- restart ---------------------------------------------------------------------------------

Build = Callable[[DStream], DStream]

PIPELINES: dict[str, Build] = {
    "state": lambda d: d.map(lambda w: (w, 1)).updateStateByKey(lambda vs, s: sum(vs, s or 0)),
    "window": lambda d: d.window(1.5, 1.0),
    "reduce_inv": lambda d: d.map(lambda w: (w, 1)).reduceByKeyAndWindow(
        operator.add, operator.sub, 2.5, 0.5
    ),
    "reduce_full": lambda d: d.map(lambda w: (w, 1)).reduceByKeyAndWindow(
        operator.add, None, 1.5, 0.5
    ),
    "group_window": lambda d: d.map(lambda w: (w, w.upper())).groupByKeyAndWindow(3.0, 0.5),
}

INPUT = [["a", "b"], ["a"], ["c", "a", "b"], [], ["b"], ["d", "a"], [], ["a"], [], []]


def _run_job(
    store: MemoryStateStore,
    build: Build,
    batches: Sequence[list[str]],
    n: int,
    recover: bool = False,
) -> list[Any]:
    ssc = make_ssc(parallelism=2, store=store, job="restartable", recover=recover)
    collector = Collector()
    stream = build(ssc.queueStream([list(b) for b in batches]))
    stream.map(lambda kv: kv if not isinstance(kv, tuple) else (kv[0], _plain(kv[1]))).foreachRDD(
        collector
    )
    times = run_batches(ssc, n)
    ssc.stop()
    return collector.per_batch(times)


def _plain(v: Any) -> Any:
    return v if isinstance(v, int | str) else sorted(v)


def test_restart_continues_exactly_as_uninterrupted() -> None:
    for name, build in PIPELINES.items():
        whole = _run_job(MemoryStateStore(), build, INPUT, len(INPUT))
        store = MemoryStateStore()
        first = _run_job(store, build, INPUT[:4], 4)
        second = _run_job(store, build, INPUT[4:], len(INPUT) - 4, recover=True)
        assert first + second == whole, name


def test_a_context_built_directly_starts_afresh() -> None:
    # Spark restores a checkpoint only through getOrCreate; a new context ignores old state.
    for name, build in PIPELINES.items():
        store = MemoryStateStore()
        _run_job(store, build, INPUT[:4], 4)
        fresh = _run_job(store, build, INPUT[4:], len(INPUT) - 4)
        assert fresh == _run_job(MemoryStateStore(), build, INPUT[4:], len(INPUT) - 4), name


def test_restart_keeps_the_time_grid() -> None:
    store = MemoryStateStore()
    ssc = make_ssc(store=store, job="grid")
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
    first = run_batches(ssc, 3)
    ssc.stop()
    again = make_ssc(store=store, job="grid", recover=True)
    again.queueStream([[1]]).foreachRDD(lambda rdd: None)
    assert run_batches(again, 2) == [first[-1] + 500, first[-1] + 1000]


# -- store layout ----------------------------------------------------------------------------


class RecordingStore(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[StateWrites] = []

    def commit(self, writes: StateWrites) -> None:
        self.batches.append(writes)
        super().commit(writes)


def test_state_schema_one_write_per_key_and_one_commit_per_batch() -> None:
    store = RecordingStore()
    ssc = make_ssc(store=store, job="j")
    words = ssc.queueStream([["a", "a", "b"], ["a"], []])
    state = words.map(lambda w: (w, 1)).updateStateByKey(lambda vs, s: sum(vs, s or 0))
    state.foreachRDD(lambda rdd: None)
    run_batches(ssc, 3)
    ssc.stop()
    assert len(store.batches) == 1 + 3  # the job's grid at start, then one commit per batch
    state_map = f"dstreams:j:s{state._id}:state"
    first, second, third = store.batches[1:]
    assert {pickle.loads(k) for k in first.map_sets[state_map]} == {"a", "b"}
    assert pickle.loads(first.map_sets[state_map][pickle.dumps("a", protocol=5)])[2] == 2
    # only the changed key is written again; an unchanged state writes nothing
    assert {pickle.loads(k) for k in second.map_sets[state_map]} == {"a"}
    assert state_map not in third.map_sets
    meta = store.load_map("dstreams:j:meta")
    assert int(meta[b"last_batch_ms"]) == 1500
    assert int(meta[b"zero_ms"]) == 0


def test_window_slices_are_written_reduced_indexed_and_dropped() -> None:
    store = RecordingStore()
    ssc = make_ssc(store=store, job="w")
    pairs = ssc.queueStream([[("a", 1), ("a", 2), ("b", 1)], [("a", 1)]])
    windowed = pairs.reduceByKeyAndWindow(operator.add, None, 1.0, 0.5)
    windowed.foreachRDD(lambda rdd: None)
    run_batches(ssc, 6)
    ssc.stop()
    reduced_id = windowed._parents[0]._parents[0]._id
    name = f"dstreams:w:s{reduced_id}:slice:500"
    first = store.batches[1]
    fields = {pickle.loads(k): pickle.loads(v)[2] for k, v in first.map_sets[name].items()}
    assert fields == {"a": 3, "b": 1}
    # no TTL: a slice lives until batch time leaves it out of every window (issue 9, hole 5)
    assert first.map_ttls_ms == {}
    index = f"dstreams:w:s{reduced_id}:slices"
    assert first.map_sets[index] == {b"500": b"1"}
    dropped = set().union(*(b.map_drops for b in store.batches))
    assert name in dropped
    assert not [n for n in store.map_names() if ":slice:" in n]
    assert store.load_map(index) == {}


def test_source_sees_persisted_after_commit() -> None:
    events: list[str] = []

    class Store(MemoryStateStore):
        def commit(self, writes: StateWrites) -> None:
            events.append("commit")
            super().commit(writes)

    class Source(QueueSource):
        def take_partitions(self, batch_time_ms: int) -> list[list[Any]]:
            events.append(f"take {batch_time_ms}")
            return super().take_partitions(batch_time_ms)

        def on_batch_persisted(self, batch_time_ms: int) -> None:
            events.append(f"persisted {batch_time_ms}")

    ssc = make_ssc(store=Store())
    stream = ssc._sourceStream(Source([[[1]]]))
    stream.foreachRDD(lambda rdd: events.append("output"))
    run_batches(ssc, 2)
    assert events == [
        "commit",
        "take 500",
        "output",
        "commit",
        "persisted 500",
        "take 1000",
        "output",
        "commit",
        "persisted 1000",
    ]
