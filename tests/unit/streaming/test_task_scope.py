"""Kafka inputs: keyed shuffles and state per task (Kafka partition), under the shard's keys."""

from __future__ import annotations

import operator
import pickle
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.commit.ledger import Shard
from service.state.memory_store import MemoryStateStore
from service.state.redis_client import hash_tag
from service.state.split import split_by_hash_tag
from service.streaming import DStream
from service.streaming.rdd import BatchRDD
from service.streaming.testing import run_batches
from tests.unit.streaming.tasks_util import (
    JOB,
    TOPIC,
    RecordingStore,
    TaskCollector,
    TaskSource,
    run_global,
    run_tasks,
    task_ssc,
)

KEYS = ["a", "b", "c", "d", "e", "f", "g"]


def partition_of(key: str) -> int:
    """A keyed topic: the producer sends every key to one partition."""
    return KEYS.index(key) % 3


def keyed_batches(batches: list[list[tuple[str, int]]]) -> list[list[list[tuple[str, int]]]]:
    out = []
    for batch in batches:
        parts: list[list[tuple[str, int]]] = [[], [], []]
        for k, v in batch:
            parts[partition_of(k)].append((k, v))
        out.append(parts)
    return out


def task(p: int) -> tuple[str, int]:
    return (TOPIC, p)


def add_state(values: list[int], state: int | None) -> int:
    return sum(values, state or 0)


# -- per-task results --------------------------------------------------------------------------


def test_reduce_by_key_groups_within_each_partition() -> None:
    # the same key on two partitions (an unkeyed topic): one result per partition
    batches = [[[("x", 1), ("y", 2), ("x", 3)], [("x", 10)], []]]
    out = run_tasks(batches, lambda d: d.reduceByKey(operator.add, 7), 1)
    assert out == [{task(0): [("x", 4), ("y", 2)], task(1): [("x", 10)], task(2): []}]


def test_narrow_operators_keep_tasks_and_global_aggregations_do_not() -> None:
    batches = [[[1, 2], [3], []]]
    assert run_tasks(batches, lambda d: d.map(lambda x: x * 10).filter(bool), 1) == [
        {task(0): [10, 20], task(1): [30], task(2): []}
    ]
    assert run_tasks(batches, lambda d: d.count(), 1) == [{None: [3]}]
    assert run_tasks(batches, lambda d: d.reduce(operator.add), 1) == [{None: [6]}]
    assert run_tasks(batches, lambda d: d.glom().map(len), 1) == [
        {task(0): [2], task(1): [1], task(2): [0]}
    ]


def test_update_state_by_key_per_task() -> None:
    batches = [[[("x", 1)], [("x", 10)], []], [[("x", 2)], [], [("y", 5)]]]
    out = run_tasks(batches, lambda d: d.updateStateByKey(add_state), 3)
    assert out == [
        {task(0): [("x", 1)], task(1): [("x", 10)], task(2): []},
        {task(0): [("x", 3)], task(1): [("x", 10)], task(2): [("y", 5)]},
        {task(0): [("x", 3)], task(1): [("x", 10)], task(2): [("y", 5)]},
    ]


def test_an_instance_without_partitions_keeps_state_after_a_shuffle() -> None:
    """``reduceByKey(...).updateStateByKey(...)`` on an instance the group has given no partition
    yet: the shuffle of an empty batch makes empty partitions of no Kafka partition, which hold
    no state (they used to fail the batch, and the job, before its first assignment)."""
    batches: list[list[list[tuple[str, int]]]] = [[], []]
    for build in (
        lambda d: d.reduceByKey(operator.add, 2).updateStateByKey(add_state),
        lambda d: d.reduceByKey(operator.add, 2).reduceByKeyAndWindow(operator.add, None, 1.0),
    ):
        out = run_tasks(batches, build, 2, assigned=())
        assert len(out) == 2, "a batch failed"
        assert all(not records for batch in out for records in batch.values())


@pytest.mark.parametrize("inverse", [operator.sub, None])
@pytest.mark.parametrize("window", [1.0, 2.5])
def test_reduce_by_key_and_window_per_task(inverse: Any, window: float) -> None:
    batches = [[[("x", 1)], [("x", 10)], []]] + [[[("x", 1)], [], []]] * 6
    out = run_tasks(
        batches, lambda d: d.reduceByKeyAndWindow(operator.add, inverse, window, 0.5), 7
    )
    n = round(window / 0.5)
    for i, batch in enumerate(out):
        assert batch[task(0)] == [("x", min(i + 1, n))]
        in_window = i < n
        # partition 1's x never mixes with partition 0's
        if inverse is not None and n >= 5:
            assert batch[task(1)] == [("x", 10 if in_window else 0)]  # incremental keeps zeros
        else:
            assert batch[task(1)] == ([("x", 10)] if in_window else [])


def test_window_and_group_by_key_and_window_per_task() -> None:
    batches = [[[("x", 1)], [("x", 2)], []], [[("x", 3)], [], []]]
    out = run_tasks(batches, lambda d: d.window(1.0, 0.5), 3)
    assert out == [
        {task(0): [("x", 1)], task(1): [("x", 2)], task(2): []},
        {task(0): [("x", 1), ("x", 3)], task(1): [("x", 2)], task(2): []},
        {task(0): [("x", 3)], task(1): [], task(2): []},
    ]
    grouped = run_tasks(batches, lambda d: d.groupByKeyAndWindow(1.0, 0.5).mapValues(list), 2)
    assert grouped[1] == {task(0): [("x", [1, 3])], task(1): [("x", [2])], task(2): []}


# -- equal to Spark's global result on keyed topics --------------------------------------------

OPERATORS: dict[str, Any] = {
    "reduceByKey": lambda d: d.reduceByKey(operator.add),
    "groupByKey": lambda d: d.groupByKey().mapValues(sorted),
    "countByValue": lambda d: d.map(lambda kv: kv[0]).countByValue(),
    "join": lambda d: d.join(d.mapValues(lambda v: -v)),
    "updateStateByKey": lambda d: d.updateStateByKey(add_state),
    "rbkaw_inverse_incremental": lambda d: d.reduceByKeyAndWindow(
        operator.add, operator.sub, 2.5, 0.5
    ),
    "rbkaw_inverse_small": lambda d: d.reduceByKeyAndWindow(operator.add, operator.sub, 1.0, 0.5),
    "rbkaw_no_inverse": lambda d: d.reduceByKeyAndWindow(operator.add, None, 1.5, 1.0),
    "window": lambda d: d.window(1.5, 0.5),
    "groupByKeyAndWindow": lambda d: d.groupByKeyAndWindow(1.5, 0.5).mapValues(sorted),
    "countByValueAndWindow": lambda d: d.map(lambda kv: kv[0]).countByValueAndWindow(2.5, 0.5),
}

records = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(-5, 5)), max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=6), st.sampled_from(sorted(OPERATORS)))
def test_keyed_topic_union_of_tasks_equals_global_result(
    batches: list[list[tuple[str, int]]], name: str
) -> None:
    build = OPERATORS[name]
    n = len(batches) + 4  # and a few batches after input stops
    per_task = run_tasks(keyed_batches(batches), build, n)
    expected = run_global(keyed_batches(batches), build, n)
    assert len(per_task) == len(expected)
    for got, want in zip(per_task, expected, strict=True):
        assert None not in got
        assert Counter(map(repr, (x for part in got.values() for x in part))) == Counter(
            map(repr, want)
        )


# -- keys in the store -------------------------------------------------------------------------


def test_every_batch_write_carries_its_task_tag_and_no_map_mixes_tasks() -> None:
    store = RecordingStore()
    batches = keyed_batches([[("a", 1), ("b", 2), ("c", 3)], [("d", 4), ("a", 5)], []])

    def build(d: DStream) -> DStream:
        d.updateStateByKey(add_state).foreachRDD(lambda rdd: None)
        d.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5).foreachRDD(lambda r: None)
        return d.window(1.0, 0.5)

    run_tasks(batches, build, 4, store=store)
    start, *per_batch = store.history
    assert all(hash_tag(name) is None for name in start.map_sets)  # zero time, interval, graph
    assert len(per_batch) == 4
    tags = {Shard(JOB, TOPIC, p).tag: p for p in range(3)}
    for writes in per_batch:
        groups = split_by_hash_tag(writes)
        assert set(groups) == set(tags)  # every task wrote, nothing job-scoped
    names = store.map_names()
    state_names = [n for n in names if n.endswith(":state")]
    assert state_names and all(hash_tag(n) in tags for n in names if n != f"dstreams:{JOB}:meta")
    for name in state_names:
        p = tags[hash_tag(name) or ""]
        keys = {pickle.loads(k) for k in store.load_map(name)}
        assert keys and {partition_of(k) for k in keys} == {p}
    assert Shard(JOB, TOPIC, 0).key("s0", "state") not in names  # s0 is the input stream


def test_forget_task_then_reload_from_store_gives_the_same_results() -> None:
    batches = keyed_batches([[("a", 1), ("b", 2)], [("a", 3)], [("d", 1)], [], [("b", 7)], []])

    def build(d: DStream) -> DStream:
        state = d.updateStateByKey(add_state)
        win = d.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5)
        return state.union(win).union(d.window(1.0, 0.5))

    expected = run_tasks(batches, build, 8)
    store = MemoryStateStore()
    ssc = task_ssc(store)
    collector = TaskCollector()
    build(ssc._sourceStream(TaskSource(batches))).foreachRDD(collector)
    for _ in range(8):
        run_batches(ssc, 1)
        for p in range(3):
            ssc._graph.forget_task(task(p))
    ssc.stop()
    assert collector.batches == expected


def test_a_task_reassigned_to_another_instance_starts_from_the_stores_state() -> None:
    store = MemoryStateStore()
    first = keyed_batches([[("a", 1), ("b", 2)], [("a", 3), ("b", 4)]])

    def build(d: DStream) -> DStream:
        return d.updateStateByKey(add_state).union(
            d.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5)
        )

    a = task_ssc(store)
    build(a._sourceStream(TaskSource(first))).foreachRDD(lambda rdd: None)
    times = run_batches(a, 2)
    a.stop()
    # instance B joins the group and gets partition 1 (b's) only
    b = task_ssc(store, recover=True, start_ms=times[-1])
    collector = TaskCollector()
    later = keyed_batches([[("b", 10), ("a", 100)]])
    build(b._sourceStream(TaskSource(later, assigned=[1]))).foreachRDD(collector)
    assert run_batches(b, 1) == [times[-1] + 500]
    b.stop()
    # b's state: 2 + 4 + 10; its window over the last 5 batches likewise
    assert collector.batches == [{task(1): [("b", 16), ("b", 16)]}]


def test_a_context_built_directly_resumes_a_tasks_state() -> None:
    """Kafka positions resume from the checkpoint store whatever built the context, so state
    must too: dropping it while the consumer seeks to the recorded offset loses the counts
    (issue 9: a setup(ssc) job ended with 11 of 40 keys exact)."""
    store = MemoryStateStore()
    batches = keyed_batches([[("a", 1)]])
    run_tasks(batches, lambda d: d.updateStateByKey(add_state), 1, store=store)
    out = run_tasks(batches, lambda d: d.updateStateByKey(add_state), 1, store=store)
    assert out == [{task(0): [("a", 2)], task(1): [], task(2): []}]


# -- global state under Kafka inputs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("countByWindow", lambda d: d.countByWindow(1.0, 0.5)),
        ("reduceByWindow", lambda d: d.reduceByWindow(operator.add, None, 1.0, 0.5)),
        ("window", lambda d: d.count().window(1.0, 0.5)),
        ("updateStateByKey", lambda d: d.repartition(2).updateStateByKey(add_state)),
    ],
)
def test_global_state_under_kafka_inputs_raises_at_the_first_batch(name: str, build: Any) -> None:
    ssc = task_ssc(MemoryStateStore())
    build(ssc._sourceStream(TaskSource([[[("a", 1)], [], []]]))).foreachRDD(lambda rdd: None)
    run_batches(ssc, 1)
    with pytest.raises(ValueError, match=rf"^{name}: .*per Kafka partition.*key the stream"):
        ssc.awaitTerminationOrTimeout(0)
    ssc.stop()


def test_job_scoped_jobs_still_count_by_window_globally() -> None:
    out = run_global([[[1, 2], [3]], [[4]]], lambda d: d.countByWindow(1.0, 0.5), 3)
    assert out == [[3], [4], [1]]


def test_an_incremental_window_stays_exact_through_pauses_longer_than_any_slice_ttl() -> None:
    """Issue 9, hole 5: slices had a wall-clock TTL of 2(w+s)+60 s. A pause longer than that
    (an outage whose batch is abandoned, so its tasks re-read the store; a SIGSTOP) expired a
    slice the incremental window still had to subtract: it read as empty, and the window kept
    its values for ever. Slices now live until batch time leaves them out of every window."""
    now = [0.0]
    store = MemoryStateStore(now=lambda: now[0])
    records = [[("a", i), ("b", 1)] for i in range(1, 13)]
    window = lambda d: d.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5)  # noqa: E731
    expected = run_tasks(keyed_batches(records), window, len(records))

    ssc = task_ssc(store)
    collector = TaskCollector()
    window(ssc._sourceStream(TaskSource(keyed_batches(records)))).foreachRDD(collector)
    for _ in records:
        run_batches(ssc, 1)
        now[0] += 3600.0  # an hour between batches, whatever the TTL was
        for p in range(3):
            ssc._graph.forget_task(task(p))  # as an abandoned batch does: re-read the store
    ssc.stop()
    assert collector.batches == expected
    # and once out of every window, the slices are gone from the store
    assert len([n for n in store.map_names() if ":slice:" in n]) <= 2 * 6


DOWNTIME_PIPELINES = {
    "incremental window": lambda d: d.reduceByKeyAndWindow(operator.add, operator.sub, 2.5, 0.5),
    "incremental window, filtered": lambda d: d.reduceByKeyAndWindow(
        operator.add, operator.sub, 2.5, 0.5, filterFunc=lambda kv: kv[1] != 0
    ),
    "window recomputed": lambda d: d.reduceByKeyAndWindow(operator.add, None, 1.5, 0.5),
    "window(): its records": lambda d: d.window(1.5, 0.5).map(lambda kv: kv[1]),
    "updateStateByKey": lambda d: d.updateStateByKey(add_state),
}


@pytest.mark.parametrize("name", sorted(DOWNTIME_PIPELINES))
def test_a_restart_after_downtime_skips_its_batch_times_as_if_they_ran_empty(name: str) -> None:
    """The documented difference from Spark's JobGenerator (docs/semantics.md, "Kafka inputs"):
    a Kafka job restarted after a downtime does not run the downtime's batch times; its next
    batch is the next grid time after now. Its outputs are exactly those of an uninterrupted
    run in which the downtime's batches ran empty, without the outputs of those batches: the
    records before the downtime leave the windows at their own batch times, none is lost or
    counted twice, and an incremental window whose previous value is too old is recomputed
    from its stored slices."""
    build = DOWNTIME_PIPELINES[name]
    before = keyed_batches([[("a", i), ("b", 1), ("c", i)] for i in range(1, 5)])
    after = keyed_batches([[("a", 10 * i), ("d", 1)] for i in range(1, 5)])
    downtime = 6  # batch times while the job was down
    uninterrupted = run_tasks(before + [[[], [], []]] * downtime + after, build, 14)
    expected = uninterrupted[:4] + uninterrupted[4 + downtime :]

    store = MemoryStateStore()
    outputs = []
    for batches, n, start_ms, recover in ((before, 4, 0, False), (after, 4, 5000, True)):
        ssc = task_ssc(store, recover=recover, start_ms=start_ms)
        collector = TaskCollector()
        build(ssc._sourceStream(TaskSource(batches))).foreachRDD(collector)
        times = run_batches(ssc, n)
        ssc.stop()
        outputs += collector.batches
        if recover:
            # the next grid time after the restart at 5000 ms, not the downtime's 2500 ms
            assert times[0] == 5500
    assert outputs == expected


def test_a_task_behind_keeps_the_slices_a_task_ahead_is_done_with() -> None:
    """Past a shuffle through Kafka, the downstream tasks of one instance release batches at
    their own pace (a task whose batch was abandoned catches up later). Slices expired by the
    batch time of the task ahead were gone when the task behind had to subtract them: its
    incremental window kept them for ever (the shuffled e2e's 'stall': a window output that
    never emptied)."""
    store = MemoryStateStore()
    ssc = task_ssc(store, duration=1.0)
    window = ssc._sourceStream(TaskSource([])).reduceByKeyAndWindow(
        operator.add, operator.sub, 3.0, 1.0
    )
    window.foreachRDD(lambda rdd: None)
    run_batches(ssc, 1)
    log = window._parents[0]._slice_log
    assert log is not None
    ahead, behind = task(0), task(1)
    ctx = ssc.sparkContext
    first = ssc._graph._zero_ms + 2000
    log.record(first, BatchRDD([[("a", 1)], [("b", 1)]], ctx, [ahead, behind]))
    for step in range(1, 6):
        t = first + step * 1000
        log.record(t, BatchRDD([[("a", 1)]], ctx, [ahead]))
        log.expire(t)
    assert log.get(first, ahead) is None  # out of every window of the task ahead
    kept = log.get(first, behind)
    assert kept is not None and kept.collect() == [("b", 1)]
    # once the task behind reaches the same batch time, its slice goes as well
    log.record(first + 5000, BatchRDD([[]], ctx, [behind]))
    log.expire(first + 5000)
    assert log.get(first, behind) is None
    ssc.stop()
