"""The SparkContext and RDD surface PySpark streaming code uses (issue 11): files, broadcast
variables, accumulators, and the RDD methods examples call, modelled on what PySpark's own
tests check (no Spark here: results are compared with plain Python)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.runtime.clock import ManualClock
from service.streaming import (
    RDD,
    Accumulator,
    AccumulatorParam,
    Broadcast,
    DStream,
    SparkContext,
    StreamingContext,
)
from service.streaming.testing import run_batches


@pytest.fixture
def sc() -> Iterator[SparkContext]:
    context = SparkContext("local[2]", "surface")
    yield context
    context.stop()


def test_text_file_reads_a_file_a_directory_and_a_glob(sc: SparkContext, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\r\nfour")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("never")
    assert sc.textFile(str(tmp_path / "a.txt")).collect() == ["one", "two"]
    assert sc.textFile(str(tmp_path)).collect() == ["one", "two", "three", "four"]
    assert sc.textFile(str(tmp_path / "b*")).collect() == ["three", "four"]
    assert sc.textFile(str(tmp_path / "a.txt"), minPartitions=4).getNumPartitions() == 4
    with pytest.raises(FileNotFoundError, match="Input path does not exist"):
        sc.textFile(str(tmp_path / "missing.txt"))


def test_a_broadcast_holds_its_value_until_destroyed(sc: SparkContext) -> None:
    words = sc.broadcast(["a", "b"])
    assert isinstance(words, Broadcast)
    assert sc.parallelize(["a", "c"]).filter(lambda w: w in words.value).collect() == ["a"]
    words.unpersist()
    assert words.value == ["a", "b"]
    words.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        _ = words.value


def test_an_accumulator_adds_what_a_job_function_counts() -> None:
    ssc = StreamingContext(SparkContext("local[2]", "acc"), 1.0, clock=ManualClock())
    dropped = ssc.sparkContext.accumulator(0)
    assert isinstance(dropped, Accumulator)

    def keep_short(word: str) -> bool:
        if len(word) > 3:
            dropped.add(1)
            return False
        return True

    stream = ssc.queueStream([["a", "long", "bb"], ["longer", "c"]])
    stream.filter(keep_short).foreachRDD(lambda rdd: rdd.count())
    run_batches(ssc, 2)
    ssc.stop(stopSparkContext=True, stopGraceFully=False)
    assert dropped.value == 2
    dropped += 3
    assert dropped.value == 5 and str(dropped) == "5"


def test_an_accumulator_of_another_type_takes_its_param(sc: SparkContext) -> None:
    class SetParam(AccumulatorParam[set[str]]):
        def zero(self, value: set[str]) -> set[str]:
            return set()

        def addInPlace(self, value1: set[str], value2: set[str]) -> set[str]:
            return value1 | value2

    seen = sc.accumulator(set(), SetParam())
    sc.parallelize(["x", "y", "x"]).foreach(lambda w: seen.add({w}))
    assert seen.value == {"x", "y"}
    with pytest.raises(TypeError, match="No default accumulator param"):
        sc.accumulator("text")
    assert sc.accumulator(1.5).value == 1.5


def test_cartesian_and_tree_reduce(sc: SparkContext) -> None:
    a, b = sc.parallelize([1, 2]), sc.parallelize(["x", "y", "z"], 2)
    pairs = a.cartesian(b)
    assert sorted(pairs.collect()) == sorted((i, s) for i in (1, 2) for s in "xyz")
    assert pairs.getNumPartitions() == a.getNumPartitions() * b.getNumPartitions()
    assert sc.parallelize(range(1, 11), 3).treeReduce(lambda x, y: x + y) == 55
    with pytest.raises(ValueError, match="Depth cannot be smaller than 1"):
        sc.parallelize([1]).treeReduce(lambda x, y: x + y, 0)


def test_sample_keeps_its_law_and_its_seed(sc: SparkContext) -> None:
    data = sc.parallelize(range(1000), 4)
    assert data.sample(False, 0.0, 7).count() == 0
    assert data.sample(False, 1.0, 7).collect() == list(range(1000))
    some = data.sample(False, 0.3, 7)
    assert some.collect() == data.sample(False, 0.3, 7).collect()
    assert 200 < some.count() < 400 and set(some.collect()) <= set(range(1000))
    more = data.sample(True, 2.0, 11).count()
    assert 1700 < more < 2300
    with pytest.raises(ValueError, match="nonnegative"):
        data.sample(False, -0.1)


def test_rdd_and_dstream_are_subscriptable_for_annotations() -> None:
    """``RDD[Tuple[float, str]]`` in a signature is evaluated when the module is imported
    (network_wordjoinsentiments.py): it failed with "type 'BatchRDD' is not subscriptable"."""
    alias = RDD[tuple[float, str]]
    assert alias.__origin__ is RDD and alias.__args__ == (tuple[float, str],)
    assert DStream[str].__origin__ is DStream


def test_grouping_set_and_statistics_methods(sc: SparkContext) -> None:
    data = sc.parallelize([1, 2, 3, 4, 5, 6], 2)
    grouped = {k: sorted(v) for k, v in data.groupBy(lambda x: x % 3).collect()}
    assert grouped == {0: [3, 6], 1: [1, 4], 2: [2, 5]}
    both = sc.parallelize([2, 2, 4, 9]).intersection(data)
    assert sorted(both.collect()) == [2, 4]
    assert data.variance() == pytest.approx(35 / 12) and data.stdev() == pytest.approx(1.7078, 1e-3)
    assert data.sampleVariance() == pytest.approx(3.5)
    assert data.sampleStdev() == pytest.approx(3.5**0.5)
    assert data.treeAggregate(0, lambda a, x: a + x, lambda a, b: a + b) == 21
    assert list(data.toLocalIterator()) == [1, 2, 3, 4, 5, 6]


def test_take_sample_and_unique_ids(sc: SparkContext) -> None:
    data = sc.parallelize(range(10), 2)
    picked = data.takeSample(False, 4, 3)
    assert len(set(picked)) == 4 and set(picked) <= set(range(10))
    assert picked == data.takeSample(False, 4, 3)
    assert len(data.takeSample(True, 25, 3)) == 25
    assert sorted(data.takeSample(False, 50, 3)) == list(range(10))
    ids = dict(sc.parallelize(["a", "b", "c", "d", "e"], 2).zipWithUniqueId().collect())
    assert ids == {"a": 0, "b": 2, "c": 1, "d": 3, "e": 5}
