"""The conformance cases: inputs, batch counts and operator pipelines, run by both engines.

Durations are seconds for a 0.2 s batch (the held-out suite's), written as literals the way user
code writes them. Cases use only the ``pyspark.streaming`` API and RDD methods that
``service.streaming`` batches also offer. Outputs must be JSON data: grouped values are turned
into sorted lists inside the case, and anything whose order inside a partition is not specified
(after a shuffle) is sorted before it is observed. Several cases come from PySpark's own
``python/pyspark/streaming/tests/test_dstream.py`` (scaled from 0.5 s to 0.2 s batches).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tests.conformance import Batch, Case

BATCH_DURATION = 0.2


def r(start: int, stop: int | None = None) -> Batch:
    return list(range(start)) if stop is None else list(range(start, stop))


def one(name: str, batches: Sequence[Batch], num_batches: int, build: Any, **kw: Any) -> Case:
    return Case(name, (batches,), num_batches, build, **kw)


def two(
    name: str, first: Sequence[Batch], second: Sequence[Batch], num_batches: int, build: Any
) -> Case:
    return Case(name, (first, second), num_batches, build)


def sorted_values(kv: tuple[Any, Iterable[Any]]) -> tuple[Any, list[Any]]:
    return kv[0], sorted(kv[1])


def partition_sum(it: Iterable[int]) -> Iterator[int]:
    yield sum(it)


def indexed_partition(i: int, it: Iterable[Any]) -> Iterator[tuple[int, list[Any]]]:
    # Contents sorted: record order inside a shuffled partition is unspecified.
    yield i, sorted(it)


def append_state(values: Iterable[Any], state: list[Any] | None) -> list[Any]:
    # Mutates and returns the old state, as PySpark's own test does.
    if not state:
        state = []
    state.extend(values)
    return state


def sum_state(values: Iterable[int], state: int | None) -> int:
    return sum(values, state or 0)


def sum_or_forget(values: Sequence[int], state: int | None) -> int | None:
    """Drop a key in a batch without new values, and once its total passes 10."""
    if not values:
        return None
    total = sum(values, state or 0)
    return None if total > 10 else total


def words(line: str) -> list[str]:
    return line.split()


def fail_on_one(x: int) -> int:
    if x == 1:
        raise ValueError("This is a special error")
    return x


def count_and_last(
    values: Sequence[int], state: tuple[int, int | None] | None
) -> tuple[int, int | None]:
    """State as a pair: how many values so far, and the largest of the latest batch."""
    count = (state[0] if state else 0) + len(values)
    return count, max(values) if values else (state[1] if state else None)


PAIRS_A: list[Batch] = [
    [("a", 1), ("a", 1), ("b", 1), ("b", 1)],
    [("", 1), ("", 1), ("", 1), ("", 1)],
    [(1, 1), (1, 1), (2, 1), (2, 1), (3, 1)],
]
PAIRS_B: list[Batch] = [
    [(1, 1), (2, 1), (3, 1), (4, 1)],
    [(1, 1), (1, 1), (1, 1), (2, 1), (2, 1), (3, 1)],
    [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 1), ("", 1)],
]
UNEVEN = [r(1, 5), r(5, 10), [7], []]
GROWING = [r(1), r(2), r(3), r(4), r(5)]
GROWING6 = [r(1), r(2), r(3), r(4), r(5), r(6)]
KEYED = [
    [("a", 1), ("b", 2)],
    [("a", 3)],
    [("b", 4), ("c", 5), ("a", 6)],
    [],
    [("c", 7)],
]
LINES = [["to be or", "not to be"], ["be quick"], [], ["or not"]]
LEFT = [[("a", 1), ("b", 2)], [("a", 3), ("a", 4), ("d", 0)], [], [("x", 9)]]
RIGHT = [[("b", 3), ("c", 4)], [("a", 5), ("d", 6), ("d", 7)], [("x", 1)]]

BASIC = [
    one("map_str", [r(1, 5), r(5, 9), r(9, 13)], 4, lambda ssc, s: s.map(str)),
    one("map_to_pair", [r(1, 5), r(5, 9)], 3, lambda ssc, s: s.map(lambda x: (x % 3, x * x))),
    one(
        "flatMap_pairs",
        [r(1, 5), r(5, 9), r(9, 13)],
        4,
        lambda ssc, s: s.flatMap(lambda x: (x, x * 2)),
    ),
    one(
        "flatMap_split_words", [["a b", "c"], ["", "d d d"], []], 4, lambda ssc, s: s.flatMap(words)
    ),
    one(
        "filter_even",
        [r(1, 5), r(5, 9), r(9, 13)],
        4,
        lambda ssc, s: s.filter(lambda x: x % 2 == 0),
    ),
    one("filter_nothing_passes", [r(1, 5), r(5, 9)], 3, lambda ssc, s: s.filter(lambda x: x > 99)),
    one("mapPartitions_sum", UNEVEN, 6, lambda ssc, s: s.mapPartitions(partition_sum)),
    one(
        "mapPartitionsWithIndex_sum",
        UNEVEN,
        6,
        lambda ssc, s: s.mapPartitionsWithIndex(lambda i, it: [(i, sum(it))]),
    ),
    one("glom", UNEVEN, 6, lambda ssc, s: s.glom()),
    one("glom_after_map", [r(1, 8), r(0, 3)], 3, lambda ssc, s: s.map(lambda x: -x).glom()),
    one("count", [r(5), r(10), [], r(20)], 6, lambda ssc, s: s.count()),
    one("reduce_add", [r(1, 5), r(5, 9), [], r(9, 13)], 5, lambda ssc, s: s.reduce(operator.add)),
    one(
        "reduce_max_str",
        [["b", "a", "c"], ["x"], ["m", "n"]],
        4,
        lambda ssc, s: s.reduce(lambda a, b: max(a, b)),
    ),
    one(
        "countByValue",
        [r(1, 5) * 2, r(5, 7) + r(5, 9), ["a", "a", "b", ""]],
        4,
        lambda ssc, s: s.countByValue(),
    ),
    one("reduceByKey_add", PAIRS_A, 4, lambda ssc, s: s.reduceByKey(operator.add)),
    one(
        "reduceByKey_numPartitions_3",
        [[(k % 4, k) for k in range(1, 12)], [(0, 5)]],
        3,
        lambda ssc, s: s.reduceByKey(operator.mul, 3),
    ),
    one(
        "combineByKey_concat",
        PAIRS_B,
        4,
        lambda ssc, s: s.combineByKey(str, lambda a, b: a + str(b), lambda a, b: a + b),
    ),
    one(
        "combineByKey_average",
        [[("x", 1), ("y", 2), ("x", 4), ("x", 2)], [("y", 3), ("y", 4)]],
        3,
        lambda ssc, s: s.combineByKey(
            lambda v: (v, 1),
            lambda c, v: (c[0] + v, c[1] + 1),
            lambda a, b: (a[0] + b[0], a[1] + b[1]),
        ).mapValues(lambda c: c[0] / c[1]),
    ),
    one(
        "partitionBy_2_int_keys",
        [[(k, k * 10) for k in [-3, -2, -1, 0, 1, 2, 3, 4, 5]], [(7, 1), (7, 2)]],
        3,
        lambda ssc, s: s.partitionBy(2).mapPartitionsWithIndex(indexed_partition),
    ),
    one(
        "partitionBy_3_custom_func",
        [[(k, k) for k in [1, 5, 12, 18, 25, 31, 44]]],
        2,
        lambda ssc, s: s.partitionBy(3, lambda k: k // 10).mapPartitionsWithIndex(
            indexed_partition
        ),
    ),
    one(
        "mapValues",
        [[("a", 2), ("b", 2), ("c", 1), ("d", 1)], [(0, 4), (1, 1), (2, 2), (3, 3)]],
        3,
        lambda ssc, s: s.mapValues(lambda x: x + 10),
    ),
    one(
        "flatMapValues",
        [[("a", 2), ("b", 2), ("c", 1)], [(0, 4), (1, 1)], [(1, 0)]],
        4,
        lambda ssc, s: s.flatMapValues(lambda x: range(x)),
    ),
    one("groupByKey", PAIRS_B, 4, lambda ssc, s: s.groupByKey().map(sorted_values)),
    one(
        "groupByKey_numPartitions_1",
        KEYED,
        6,
        lambda ssc, s: s.groupByKey(1).mapValues(lambda vs: sorted(vs)),
    ),
    one(
        "word_count_per_batch",
        LINES,
        5,
        lambda ssc, s: s.flatMap(words).map(lambda w: (w, 1)).reduceByKey(operator.add),
    ),
    one(
        "cache_and_union_of_branches",
        [r(1, 6), r(6, 9)],
        3,
        lambda ssc, s: (lambda m: m.union(m.filter(lambda x: x > 40)))(
            s.map(lambda x: x * 10).cache()
        ),
    ),
]

BASIC += [
    # PySpark's test_repartition, with the partition contents sorted: after a shuffle their
    # order is unspecified.
    one(
        "repartition_1_glom",
        [r(1, 5), r(5, 9)],
        3,
        lambda ssc, s: s.repartition(1).glom().map(sorted),
    ),
    one(
        "repartition_3_partition_count",
        [r(1, 10), []],
        3,
        lambda ssc, s: s.repartition(3).glom().count(),
    ),
    # PySpark's test_failed_func_with_resetting_failure: batch 2 fails, later batches still run.
    one(
        "map_raises_in_batch_2",
        [[0], [1], [2], [3]],
        5,
        lambda ssc, s: s.map(fail_on_one),
        error="This is a special error",
    ),
]

TWO_STREAMS = [
    two("union", [r(3), r(5), r(6)], [r(3, 6), r(5, 6)], 4, lambda ssc, a, b: a.union(b)),
    Case(
        "ssc_union_three",
        ([[1], [2]], [[10], [20], [30]], [[100]]),
        4,
        # map() first: PySpark's ssc.union wants equal serializers, which queue streams of
        # differently sized batches need not have.
        lambda ssc, a, b, c: ssc.union(*(s.map(lambda x: x) for s in (a, b, c))),
    ),
    two("join", LEFT, RIGHT, 5, lambda ssc, a, b: a.join(b)),
    two(
        "join_many_to_many",
        [[("k", 1), ("k", 2), ("j", 0)]],
        [[("k", "x"), ("k", "y")]],
        2,
        lambda ssc, a, b: a.join(b),
    ),
    two("join_numPartitions_3", LEFT, RIGHT, 4, lambda ssc, a, b: a.join(b, 3)),
    two("leftOuterJoin", LEFT, RIGHT, 5, lambda ssc, a, b: a.leftOuterJoin(b)),
    two("rightOuterJoin", LEFT, RIGHT, 5, lambda ssc, a, b: a.rightOuterJoin(b)),
    two("fullOuterJoin", LEFT, RIGHT, 5, lambda ssc, a, b: a.fullOuterJoin(b)),
    two(
        "cogroup",
        [
            [(1, 1), (2, 1), (3, 1)],
            [(1, 1), (1, 1), (1, 1), (2, 1)],
            [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 1)],
        ],
        [[(1, 2)], [(4, 1)], [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 2)]],
        4,
        lambda ssc, a, b: a.cogroup(b).mapValues(lambda vs: [sorted(vs[0]), sorted(vs[1])]),
    ),
]

TRANSFORMS = [
    one(
        "transform_sortBy_zipWithIndex",
        [[5, 3, 9, 1], [2, 8], []],
        4,
        lambda ssc, s: s.transform(
            lambda rdd: rdd.sortBy(lambda x: x, ascending=False).zipWithIndex()
        ),
    ),
    one(
        "transform_distinct",
        [[1, 1, 2, 3, 3, 3], ["a", "a"], []],
        4,
        lambda ssc, s: s.transform(lambda rdd: rdd.distinct()),
    ),
    one(
        "transform_time_arity_reduceByKey",
        KEYED,
        6,
        lambda ssc, s: s.transform(lambda t, rdd: rdd.reduceByKey(operator.add)),
    ),
    one(
        "transform_sortByKey_zipWithIndex",
        [[(3, "c"), (1, "a"), (2, "b")], [(0, "z")]],
        3,
        lambda ssc, s: s.transform(lambda rdd: rdd.sortByKey().zipWithIndex()),
    ),
    one(
        "transform_keys_union_values",
        KEYED,
        6,
        lambda ssc, s: s.transform(lambda rdd: rdd.keys().union(rdd.values().map(str))),
    ),
    two(
        "transformWith_union_distinct",
        [[1, 2, 2], [3], []],
        [[2, 3], [3, 4], [5]],
        4,
        lambda ssc, a, b: a.transformWith(lambda x, y: x.union(y).distinct(), b),
    ),
    two(
        "transformWith_time_arity_join",
        LEFT,
        RIGHT,
        5,
        lambda ssc, a, b: a.transformWith(lambda t, x, y: x.join(y), b),
    ),
    two(
        "transformWith_subtract",
        [[1, 2, 3, 4], [5, 6]],
        [[2, 4], [7]],
        3,
        lambda ssc, a, b: a.transformWith(lambda x, y: x.subtract(y), b),
    ),
    two(
        "ssc_transform_two_streams",
        [[1, 2], [3]],
        [[10], [20, 30]],
        3,
        lambda ssc, a, b: ssc.transform(
            [a, b], lambda rdds: rdds[0].union(rdds[1]).map(lambda x: x * 2)
        ),
    ),
]

WINDOWS = [
    one(
        "window_elements_3_slide_1",
        [[1], [2, 3], [4], [5, 6]],
        8,
        lambda ssc, s: s.window(0.6, 0.2),
    ),
    one("window_count_3_slide_1", GROWING, 9, lambda ssc, s: s.window(0.6, 0.2).count()),
    one("window_tumbling_2", [[1], [2], [3], [4], [5]], 8, lambda ssc, s: s.window(0.4, 0.4)),
    one("window_tumbling_3", [[1], [2], [3], [4], [5]], 9, lambda ssc, s: s.window(0.6, 0.6)),
    one("window_3_slide_2", [[1], [2], [3], [4], [5]], 9, lambda ssc, s: s.window(0.6, 0.4)),
    one("window_default_slide", [[1], [2], [3]], 6, lambda ssc, s: s.window(0.4)),
    one(
        "window_float_multiples_count",
        GROWING,
        10,
        lambda ssc, s: s.window(3 * 0.2, 2 * 0.2).count(),
    ),
    one(
        "window_4_slide_2_then_map_filter",
        [[1, 2], [3], [4, 5], [6]],
        9,
        lambda ssc, s: s.window(0.8, 0.4).map(lambda x: x * 10).filter(lambda x: x != 30),
    ),
    one(
        "window_3_slide_2_reduceByKey",
        KEYED,
        10,
        lambda ssc, s: s.window(0.6, 0.4).reduceByKey(operator.add),
    ),
    one(
        "reduceByWindow_inverse",
        GROWING,
        9,
        lambda ssc, s: s.reduceByWindow(operator.add, operator.sub, 0.6, 0.2),
    ),
    one(
        "reduceByWindow_no_inverse_slide_2",
        GROWING,
        9,
        lambda ssc, s: s.reduceByWindow(operator.add, None, 0.6, 0.4),
    ),
    one("countByWindow", GROWING, 9, lambda ssc, s: s.countByWindow(0.6, 0.2)),
    one("countByWindow_large", GROWING6, 12, lambda ssc, s: s.countByWindow(1.0, 0.2)),
    one("countByWindow_slide_2", GROWING, 10, lambda ssc, s: s.countByWindow(0.8, 0.4)),
    one("countByValueAndWindow", GROWING6, 12, lambda ssc, s: s.countByValueAndWindow(1.0, 0.2)),
    one(
        "countByValueAndWindow_slide_2",
        [[1, 1], [2], [1, 3], [], [3]],
        10,
        lambda ssc, s: s.countByValueAndWindow(0.6, 0.4),
    ),
    one(
        "groupByKeyAndWindow",
        [[("a", i)] for i in range(5)],
        9,
        lambda ssc, s: s.groupByKeyAndWindow(0.6, 0.2).map(sorted_values),
    ),
    one(
        "groupByKeyAndWindow_slide_2",
        KEYED,
        10,
        lambda ssc, s: s.groupByKeyAndWindow(0.6, 0.4).mapValues(lambda vs: sorted(vs)),
    ),
    one(
        "reduceByKeyAndWindow_no_inverse",
        KEYED,
        9,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, None, 0.6, 0.2),
    ),
    one(
        "reduceByKeyAndWindow_inverse",
        KEYED,
        9,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, operator.sub, 0.6, 0.2),
    ),
    one(
        "reduceByKeyAndWindow_inverse_filterFunc",
        KEYED,
        9,
        lambda ssc, s: s.reduceByKeyAndWindow(
            operator.add, operator.sub, 0.6, 0.2, filterFunc=lambda kv: kv[1] != 0
        ),
    ),
    one(
        "reduceByKeyAndWindow_inverse_slide_2",
        KEYED,
        10,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, operator.sub, 0.8, 0.4),
    ),
    one(
        "reduceByKeyAndWindow_no_inverse_slide_2_numPartitions",
        KEYED,
        10,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, None, 0.6, 0.4, 3),
    ),
    one(
        "reduceByKeyAndWindow_inverse_default_slide",
        KEYED,
        8,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, operator.sub, 0.6),
    ),
    # PySpark applies invFunc only when the window is at least 5 slides wide; narrower
    # windows are reduced afresh, so zero-valued keys disappear there but survive here.
    one(
        "reduceByKeyAndWindow_inverse_5x_keeps_zeros",
        KEYED,
        11,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, operator.sub, 1.0, 0.2),
    ),
    one(
        "reduceByKeyAndWindow_inverse_5x_filterFunc",
        KEYED,
        11,
        lambda ssc, s: s.reduceByKeyAndWindow(
            operator.add, operator.sub, 1.0, 0.2, filterFunc=lambda kv: kv[1] != 0
        ),
    ),
    one(
        "reduceByKeyAndWindow_inverse_5x_slide_2",
        KEYED,
        17,
        lambda ssc, s: s.reduceByKeyAndWindow(operator.add, operator.sub, 2.0, 0.4),
    ),
    one(
        "reduceByWindow_inverse_5x",
        GROWING6,
        12,
        lambda ssc, s: s.reduceByWindow(operator.add, operator.sub, 1.0, 0.2),
    ),
    one(
        "groupByKeyAndWindow_5x",
        [[("a", i)] for i in range(7)],
        13,
        lambda ssc, s: s.groupByKeyAndWindow(1.0, 0.2).map(sorted_values),
    ),
    one(
        "reduceByKeyAndWindow_no_inverse_filter_count",
        GROWING6,
        12,
        lambda ssc, s: (
            s.map(lambda x: (x, 1))
            .reduceByKeyAndWindow(operator.add, None, 1.0, 0.2)
            .filter(lambda kv: kv[1] > 0)
            .count()
        ),
    ),
    two(
        "union_of_two_windows",
        [[1], [2], [3], [4]],
        [[10], [20], [30]],
        9,
        lambda ssc, a, b: a.window(0.4, 0.4).union(b.window(0.6, 0.4)),
    ),
    two(
        "join_of_windows",
        [[("a", 1)], [("b", 2)], [("a", 3)]],
        [[("a", "x")], [], [("b", "y")]],
        6,
        lambda ssc, a, b: a.window(0.6, 0.2).join(b.window(0.4, 0.2)),
    ),
    one(
        "windowed_word_count",
        LINES,
        7,
        lambda ssc, s: (
            s.flatMap(words)
            .map(lambda w: (w, 1))
            .reduceByKeyAndWindow(
                operator.add, operator.sub, 0.6, 0.2, filterFunc=lambda kv: kv[1] > 0
            )
        ),
    ),
]

STATE = [
    one(
        "updateStateByKey_append",
        [[("k", i)] for i in range(5)],
        6,
        lambda ssc, s: s.updateStateByKey(append_state),
    ),
    one("updateStateByKey_running_sum", KEYED, 7, lambda ssc, s: s.updateStateByKey(sum_state)),
    one(
        "updateStateByKey_None_removes_keys",
        [[("a", 1), ("b", 5)], [("a", 2), ("b", 7)], [("a", 3)], [], [("a", 9), ("b", 1)]],
        7,
        lambda ssc, s: s.updateStateByKey(sum_or_forget),
    ),
    one(
        "updateStateByKey_initialRDD",
        [[("k", i)] for i in range(2, 5)],
        4,
        lambda ssc, s: s.updateStateByKey(append_state, initialRDD=[("k", [0, 1])]),
    ),
    one(
        "updateStateByKey_initialRDD_untouched_keys",
        [[("a", 1)], [("b", 2)], []],
        4,
        lambda ssc, s: s.updateStateByKey(sum_state, initialRDD=[("a", 100), ("z", 7)]),
    ),
    one(
        "updateStateByKey_numPartitions_3",
        KEYED,
        6,
        lambda ssc, s: s.updateStateByKey(sum_state, 3),
    ),
    one(
        "updateStateByKey_word_count",
        LINES,
        5,
        lambda ssc, s: s.flatMap(words).map(lambda w: (w, 1)).updateStateByKey(sum_state),
    ),
    one(
        "updateStateByKey_tuple_state",
        KEYED,
        6,
        lambda ssc, s: s.updateStateByKey(count_and_last),
    ),
    one(
        "updateStateByKey_on_tumbling_window",
        KEYED,
        8,
        lambda ssc, s: s.window(0.4, 0.4).updateStateByKey(sum_state),
    ),
]

QUEUES = [
    one(
        "queue_oneAtATime_false",
        [[1, 2], [3], [4, 5]],
        4,
        lambda ssc, s: s.map(lambda x: x + 1),
        one_at_a_time=False,
    ),
    one("queue_default", [[1, 2], [3]], 5, lambda ssc, s: s.map(lambda x: x * 2), default=[0, 7]),
    one(
        "queue_oneAtATime_false_default",
        [[1], [2, 3]],
        4,
        lambda ssc, s: s.count(),
        one_at_a_time=False,
        default=[-1],
    ),
    one("queue_default_window", [[1], [2]], 6, lambda ssc, s: s.window(0.4, 0.2), default=[9]),
]

CASES: list[Case] = BASIC + TWO_STREAMS + TRANSFORMS + WINDOWS + STATE + QUEUES
CASES_BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"

# Replayed in real time (0.2 s batches, system clock) by the integration test, like the
# held-out suite: windows with slide 1 and 2, inverse reduce, state with removal and initial RDD.
REALTIME_CASES = [
    "window_count_3_slide_1",
    "window_3_slide_2",
    "reduceByKeyAndWindow_inverse_filterFunc",
    "countByValueAndWindow_slide_2",
    "updateStateByKey_None_removes_keys",
    "updateStateByKey_initialRDD",
    "join",
    "map_raises_in_batch_2",
]
