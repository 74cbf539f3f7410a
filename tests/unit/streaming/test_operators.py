"""Per-batch operators, with expectations taken from PySpark's test_dstream.py semantics."""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any

import pytest

from service.streaming import DStream, StreamingContext
from service.streaming.rdd import BatchRDD
from service.streaming.testing import run_batches
from tests.unit.streaming.util import Collector, make_ssc, run

R = [list(range(1, 5)), list(range(5, 9)), list(range(9, 13))]


def test_map_flatmap_filter() -> None:
    assert run(R, lambda d: d.map(str), 3) == [[str(x) for x in b] for b in R]
    assert run(R, lambda d: d.flatMap(lambda x: (x, x * 2)), 3) == [
        [y for x in b for y in (x, x * 2)] for b in R
    ]
    assert run(R, lambda d: d.filter(lambda x: x % 2 == 0), 3) == [
        [x for x in b if x % 2 == 0] for b in R
    ]


def test_count_and_reduce() -> None:
    inputs = [list(range(5)), list(range(10)), list(range(20))]
    assert run(inputs, lambda d: d.count(), 3) == [[5], [10], [20]]
    assert run(R, lambda d: d.reduce(operator.add), 3) == [[10], [26], [42]]


def test_count_of_empty_batch_and_drained_queue() -> None:
    # An empty queued batch has partitions (count 0); so has a drained queue's batch: Spark
    # fills it with an empty RDD of one partition (PySpark 4.3's getNumPartitions() is 1).
    assert run([[], [1]], lambda d: d.count(), 3, parallelism=2) == [[0], [1], [0]]
    assert run([[1]], lambda d: d.glom(), 2, parallelism=2) == [[[], [1]], [[]]]


def test_keyed_per_batch_operators() -> None:
    pairs: list[list[Any]] = [
        [("a", 1), ("a", 1), ("b", 1), ("b", 1)],
        [("", 1), ("", 1), ("", 1), ("", 1)],
        [(1, 1), (1, 1), (2, 1), (2, 1), (3, 1)],
    ]
    assert run(pairs, lambda d: d.reduceByKey(operator.add), 3, sort=True) == [
        [("a", 2), ("b", 2)],
        [("", 4)],
        [(1, 2), (2, 2), (3, 1)],
    ]
    assert run(pairs, lambda d: d.groupByKey().mapValues(list), 3, sort=True) == [
        [("a", [1, 1]), ("b", [1, 1])],
        [("", [1, 1, 1, 1])],
        [(1, [1, 1]), (2, [1, 1]), (3, [1])],
    ]

    def add(a: str, b: int) -> str:
        return a + str(b)

    assert run(pairs, lambda d: d.combineByKey(str, add, add), 3, sort=True) == [
        [("a", "11"), ("b", "11")],
        [("", "1111")],
        [(1, "11"), (2, "11"), (3, "1")],
    ]
    assert run(pairs, lambda d: d.mapValues(lambda v: v + 10), 1) == [
        [("a", 11), ("a", 11), ("b", 11), ("b", 11)]
    ]
    assert run([[("a", 2)]], lambda d: d.flatMapValues(lambda v: (v, v + 10)), 1) == [
        [("a", 2), ("a", 12)]
    ]


def test_count_by_value() -> None:
    inputs: list[list[Any]] = [list(range(1, 5)) * 2, ["a", "a", "b", ""]]
    assert run(inputs, lambda d: d.countByValue(), 2, sort=True) == [
        [(1, 2), (2, 2), (3, 2), (4, 2)],
        [("", 1), ("a", 2), ("b", 1)],
    ]


def test_partition_visible_operators() -> None:
    ssc = make_ssc()
    rdds = [ssc.sparkContext.parallelize(r, 2) for r in R]
    stream = ssc.queueStream(rdds)
    glom, sums, indexed, single = Collector(), Collector(), Collector(), Collector()
    stream.glom().foreachRDD(glom)
    stream.mapPartitions(lambda it: [sum(it)]).foreachRDD(sums)
    stream.mapPartitionsWithIndex(lambda i, it: [(i, list(it))]).foreachRDD(indexed)
    stream.repartition(1).glom().foreachRDD(single)
    times = run_batches(ssc, 3)
    assert glom.per_batch(times) == [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]
    assert sums.per_batch(times) == [[3, 7], [11, 15], [19, 23]]
    assert indexed.per_batch(times)[0] == [(0, [1, 2]), (1, [3, 4])]
    assert single.per_batch(times)[1] == [[5, 6, 7, 8]]


def test_num_partitions_and_partition_by() -> None:
    out = run([[(i, i) for i in range(6)]], lambda d: d.reduceByKey(operator.add, 3).glom(), 1)
    assert out == [[[(0, 0), (3, 3)], [(1, 1), (4, 4)], [(2, 2), (5, 5)]]]
    out = run([[(i, i) for i in range(4)]], lambda d: d.partitionBy(2).glom(), 1)
    assert out == [[[(0, 0), (2, 2)], [(1, 1), (3, 3)]]]


def test_union_and_two_stream_joins() -> None:
    in1 = [list(range(3)), list(range(5)), list(range(6))]
    in2 = [list(range(3, 6)), list(range(5, 6))]
    assert run(in1, lambda a, b: a.union(b), 3, inputs2=in2, sort=True) == [
        list(range(6)),
        list(range(6)),
        list(range(6)),
    ]
    a = [[("a", 1), ("b", 2)]]
    b = [[("b", 3), ("c", 4)]]
    assert run(a, lambda x, y: x.join(y), 1, inputs2=b) == [[("b", (2, 3))]]
    assert run(a, lambda x, y: x.leftOuterJoin(y), 1, inputs2=b, sort=True) == [
        [("a", (1, None)), ("b", (2, 3))]
    ]
    assert run(a, lambda x, y: x.rightOuterJoin(y), 1, inputs2=b, sort=True) == [
        [("b", (2, 3)), ("c", (None, 4))]
    ]
    assert run(a, lambda x, y: x.fullOuterJoin(y), 1, inputs2=b, sort=True) == [
        [("a", (1, None)), ("b", (2, 3)), ("c", (None, 4))]
    ]


def test_cogroup() -> None:
    in1 = [[(1, 1), (2, 1), (3, 1)], [(1, 1), (1, 1), (1, 1), (2, 1)]]
    in2 = [[(1, 2)], [(4, 1)]]
    out = run(
        in1,
        lambda a, b: a.cogroup(b).mapValues(lambda vs: tuple(map(list, vs))),
        2,
        inputs2=in2,
        sort=True,
    )
    assert out == [
        [(1, ([1], [2])), (2, ([1], [])), (3, ([1], []))],
        [(1, ([1, 1, 1], [])), (2, ([1], [])), (4, ([], [1]))],
    ]


def test_union_requires_same_slide() -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1]])
    with pytest.raises(ValueError, match="same slide duration"):
        s.union(s.window(1.0, 1.0))
    with pytest.raises(ValueError, match="same slide duration"):
        ssc.union(s, s.window(1.0, 1.0))


def test_context_union_and_transform() -> None:
    ssc = make_ssc()
    a = ssc.queueStream([[1, 2], [3]])
    b = ssc.queueStream([[10], [20]])
    c = ssc.queueStream([[100], [200]])
    unioned, transformed = Collector(sort=True), Collector()
    ssc.union(a, b, c).foreachRDD(unioned)
    ssc.transform([a, b], lambda rdds: rdds[0].union(rdds[1]).map(lambda x: x * 2)).foreachRDD(
        transformed
    )
    times = run_batches(ssc, 2)
    assert unioned.per_batch(times) == [[1, 2, 10, 100], [3, 20, 200]]
    assert transformed.per_batch(times) == [[2, 4, 20], [6, 40]]


def test_transform_arity_and_none_result() -> None:
    seen: list[datetime] = []

    def with_time(t: datetime, rdd: BatchRDD) -> BatchRDD | None:
        seen.append(t)
        return None if rdd.isEmpty() else rdd.map(lambda x: x + 1)

    out = run([[1], [], [2]], lambda d: d.transform(with_time), 3)
    assert out == [[2], None, [3]]
    assert len(seen) == 3
    out = run([[1], [2]], lambda d: d.transform(lambda rdd: rdd.map(lambda x: -x)), 2)
    assert out == [[-1], [-2]]
    out = run(
        [[1], [2]],
        lambda a, b: a.transformWith(lambda t, x, y: x.union(y), b),
        2,
        inputs2=[[5]],
    )
    assert out == [[1, 5], [2]]
    with pytest.raises(TypeError):
        run([[1]], lambda d: d.transform(lambda a, b, c: a), 1)


def test_foreach_rdd_arity_and_shared_time() -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1], [2]])
    calls: list[tuple[str, Any]] = []
    s.foreachRDD(lambda rdd: calls.append(("plain", rdd.collect())))
    s.map(lambda x: x).foreachRDD(lambda t, rdd: calls.append(("timed", t)))
    s.filter(bool).foreachRDD(lambda t, rdd: calls.append(("timed", t)))

    class Sink:
        def write(self, t: datetime, rdd: BatchRDD) -> None:
            calls.append(("method", t))

    s.foreachRDD(Sink().write)
    times = run_batches(ssc, 2)
    assert [c for c in calls if c[0] == "plain"] == [("plain", [1]), ("plain", [2])]
    stamped = [c[1] for c in calls if c[0] != "plain"]
    assert len(stamped) == 6
    first = stamped[:3]
    assert first[0] is first[1] is first[2]
    assert first[0] == datetime.fromtimestamp(times[0] / 1000)
    assert stamped[3] == datetime.fromtimestamp(times[1] / 1000)


def test_queue_stream_modes() -> None:
    ssc = make_ssc()
    all_at_once = Collector()
    with_default = Collector()
    ssc.queueStream([[1], [2, 3]], oneAtATime=False).foreachRDD(all_at_once)
    ssc.queueStream([[1]], default=[9, 9]).foreachRDD(with_default)
    times = run_batches(ssc, 3)
    assert all_at_once.per_batch(times) == [[1, 2, 3], [], []]
    assert with_default.per_batch(times) == [[1], [9, 9], [9, 9]]


def test_slice_returns_remembered_batches() -> None:
    ssc = make_ssc(1.0)
    ssc.remember(4.0)
    stream = ssc.queueStream([[1], [2], [3], [4]])
    stream.foreachRDD(lambda rdd: None)
    times = run_batches(ssc, 4)
    begin = datetime.fromtimestamp(times[0] / 1000)

    def sliced(lo: float, hi: float) -> set[int]:
        rdds = stream.slice(
            datetime.fromtimestamp(begin.timestamp() + lo),
            datetime.fromtimestamp(begin.timestamp() + hi),
        )
        return {x for rdd in rdds for x in rdd.collect()}

    assert sliced(0, 0) == {1}
    assert sliced(1, 2) == {2, 3}
    assert sliced(0, 4) == {1, 2, 3, 4}


def test_pprint_format(capsys: pytest.CaptureFixture[str]) -> None:
    ssc = make_ssc()
    ssc.queueStream([list(range(12)), [1]]).pprint()
    ssc.queueStream([[("a", 1)]]).pprint(num=1)
    times = run_batches(ssc, 1)
    t = datetime.fromtimestamp(times[0] / 1000)
    line = "-------------------------------------------"
    expected = [line, f"Time: {t}", line, *map(str, range(10)), "...", ""]
    expected += [line, f"Time: {t}", line, "('a', 1)", ""]
    assert capsys.readouterr().out == "\n".join(expected) + "\n"


def test_save_as_text_files(tmp_path: Any) -> None:
    ssc = make_ssc(parallelism=2)
    ssc.queueStream([[1, 2, 3]]).saveAsTextFiles(str(tmp_path / "out"), "txt")
    times = run_batches(ssc, 1)
    target = tmp_path / f"out-{times[0]}.txt"
    assert sorted(p.name for p in target.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    lines = (target / "part-00000").read_text() + (target / "part-00001").read_text()
    assert lines.split() == ["1", "2", "3"]


def test_streaming_context_constructor_forms() -> None:
    class FakeSparkContext:
        defaultParallelism = 3

    ssc = StreamingContext(FakeSparkContext(), 0.2)
    assert ssc.batchDurationMs == 200
    assert ssc.sparkContext.defaultParallelism == 3
    assert StreamingContext(1).batchDurationMs == 1000
    assert StreamingContext(batchDuration=3 * 0.2).batchDurationMs == 600
    with pytest.raises(ValueError):
        StreamingContext(0)


def test_start_without_output_fails() -> None:
    ssc = make_ssc()
    ssc.queueStream([[1]])
    with pytest.raises(ValueError, match="No output operations"):
        ssc.start()


def test_chained_dstream_api_returns_dstreams() -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1]])
    assert isinstance(s.cache().persist().checkpoint(1.0), DStream)
    assert s.context() is ssc


def test_no_new_streams_after_start() -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1]])
    s.foreachRDD(lambda rdd: None)
    run_batches(ssc, 1)
    with pytest.raises(ValueError, match="after starting"):
        s.map(str)
    with pytest.raises(ValueError, match="after starting"):
        s.foreachRDD(lambda rdd: None)
