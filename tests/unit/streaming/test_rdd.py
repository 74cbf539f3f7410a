"""The batch object's RDD methods, against PySpark's documented results."""

from __future__ import annotations

import math
import operator

import pytest

from service.streaming.rdd import BatchRDD, LocalContext, ResultIterable, portable_hash

sc = LocalContext(2)


def test_parallelize_slices_like_spark() -> None:
    assert sc.parallelize([1, 2, 3, 4, 5], 2).glom().collect() == [[1, 2], [3, 4, 5]]
    assert sc.parallelize([], 3).getNumPartitions() == 3
    assert sc.emptyRDD().getNumPartitions() == 0


def test_actions() -> None:
    rdd = sc.parallelize([3, 1, 2, 5, 4], 2)
    assert rdd.count() == 5
    assert rdd.take(3) == [3, 1, 2]
    assert rdd.first() == 3
    assert rdd.sum() == 15
    assert rdd.max() == 5 and rdd.min() == 1
    assert rdd.max(key=lambda x: -x) == 1
    assert rdd.mean() == 3.0
    assert math.isnan(sc.emptyRDD().mean())
    assert rdd.reduce(operator.add) == 15
    assert rdd.fold(0, operator.add) == 15
    assert rdd.aggregate(
        (0, 0), lambda a, x: (a[0] + x, a[1] + 1), lambda a, b: (a[0] + b[0], a[1] + b[1])
    ) == (15, 5)
    assert rdd.top(2) == [5, 4]
    assert rdd.takeOrdered(2) == [1, 2]
    assert not rdd.isEmpty() and sc.parallelize([], 2).isEmpty()
    with pytest.raises(ValueError):
        sc.emptyRDD().first()
    with pytest.raises(ValueError):
        sc.emptyRDD().reduce(operator.add)


def test_keyed_methods() -> None:
    pairs = sc.parallelize([("a", 1), ("b", 2), ("a", 3)])
    other = sc.parallelize([("a", "x"), ("c", "y")])
    assert sorted(pairs.reduceByKey(operator.add).collect()) == [("a", 4), ("b", 2)]
    assert sorted(pairs.foldByKey(10, operator.add).collect()) == [("a", 24), ("b", 12)]
    assert sorted(pairs.aggregateByKey(0, operator.add, operator.add).collect()) == [
        ("a", 4),
        ("b", 2),
    ]
    grouped = dict(pairs.groupByKey().collect())
    assert isinstance(grouped["a"], ResultIterable) and sorted(grouped["a"]) == [1, 3]
    assert sorted(pairs.join(other).collect()) == [("a", (1, "x")), ("a", (3, "x"))]
    assert sorted(pairs.fullOuterJoin(other).collect()) == [
        ("a", (1, "x")),
        ("a", (3, "x")),
        ("b", (2, None)),
        ("c", (None, "y")),
    ]
    assert sorted(pairs.subtractByKey(other).collect()) == [("b", 2)]
    assert sorted(pairs.keys().distinct().collect()) == ["a", "b"]
    assert pairs.countByKey() == {"a": 2, "b": 1}
    assert pairs.lookup("a") == [1, 3]
    assert pairs.collectAsMap() == {"a": 3, "b": 2}
    assert sorted(pairs.values().subtract(sc.parallelize([1])).collect()) == [2, 3]


def test_sorting_zipping_and_reshaping() -> None:
    rdd = sc.parallelize([5, 3, 1, 4], 2)
    assert rdd.sortBy(lambda x: x).collect() == [1, 3, 4, 5]
    assert rdd.map(lambda x: (x, x)).sortByKey(False).keys().collect() == [5, 4, 3, 1]
    assert rdd.zipWithIndex().collect() == [(5, 0), (3, 1), (1, 2), (4, 3)]
    assert rdd.zip(rdd.map(str)).collect()[0] == (5, "5")
    with pytest.raises(ValueError):
        rdd.zip(sc.parallelize([1], 2))
    assert rdd.coalesce(1).glom().collect() == [[5, 3, 1, 4]]
    assert rdd.repartition(4).getNumPartitions() == 4
    assert rdd.union(rdd).getNumPartitions() == 4
    assert rdd.countByValue() == {5: 1, 3: 1, 1: 1, 4: 1}


def test_partitioning_uses_a_process_stable_hash() -> None:
    assert portable_hash(None) == 0
    assert portable_hash(7) == 7
    assert portable_hash("a") == portable_hash("a") != portable_hash("b")
    rdd = BatchRDD([[("x", 1), ("y", 2), ("z", 3)]], sc).partitionBy(2)
    for i, part in enumerate(rdd.partitions):
        assert all(portable_hash(k) % 2 == i for k, _ in part)


def test_tasks_follow_narrow_operations_and_union_and_keyed_shuffles_group_per_task() -> None:
    a, b = ("t", 0), ("t", 1)
    rdd = BatchRDD([[("x", 1), ("y", 2)], [("x", 3)]], tasks=[a, b])
    assert rdd.map(lambda kv: kv).tasks == [a, b]
    assert rdd.filter(lambda kv: kv[1] > 1).glom().tasks == [a, b]
    both = rdd.union(BatchRDD([[("x", 5)]], tasks=[a]))
    assert both.tasks == [a, b, a]
    reduced = both.reduceByKey(lambda x, y: x + y, 9)
    assert (reduced.partitions, reduced.tasks) == ([[("x", 6), ("y", 2)], [("x", 3)]], [a, b])
    joined = rdd.join(rdd.mapValues(lambda v: -v))
    assert joined.tasks == [a, b]
    assert joined.partitions == [[("x", (1, -1)), ("y", (2, -2))], [("x", (3, -3))]]
    assert rdd.partitionBy(5).partitions == [[("x", 1), ("y", 2)], [("x", 3)]]
    assert rdd.repartition(2).tasks == [None, None]  # mixed
    assert not BatchRDD([[1]], tasks=[None]).task_scoped
