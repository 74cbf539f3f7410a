"""The per-batch dataset of DStream operators: an eager, in-process stand-in for an RDD.

A batch is a list of partitions (lists). Partitioning is simulated only so that ``glom``,
``mapPartitionsWithIndex`` and the order of shuffle outputs behave like PySpark's: key-based
operators bucket by ``portable_hash(key) % numPartitions`` and keep first-appearance order inside
a bucket, as PySpark's ``ExternalMerger`` does.

Under Kafka inputs each partition also carries its *task*, the Kafka partition ``(topic,
partition)`` its records came from (see docs/semantics.md, "Kafka inputs: state per partition").
Narrow operations keep a partition's task; keyed shuffles group within each task, so no result
ever mixes records of two Kafka partitions; a batch whose partitions all have task ``None`` is
job-scoped and behaves exactly as PySpark's.
"""

from __future__ import annotations

import copy
import functools
import glob
import heapq
import math
import operator
import os
import random
import statistics
import sys
import types
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from service.streaming.shared import Accumulator, AccumulatorParam, Broadcast, param_for

DEFAULT_PARALLELISM = 2

# A Kafka input partition, ``(topic, partition)``: the unit of state ownership.
Task = tuple[str, int]


def portable_hash(x: Any) -> int:
    """PySpark's partition hash, but stable across processes for str and bytes.

    PySpark relies on ``PYTHONHASHSEED``; we hash text with CRC32 instead so that a restarted job
    puts every key in the same partition and emits batches in the same order.
    """
    if x is None:
        return 0
    if isinstance(x, str):
        return zlib.crc32(x.encode("utf-8", "surrogatepass"))
    if isinstance(x, bytes | bytearray):
        return zlib.crc32(bytes(x))
    if isinstance(x, tuple):
        h = 0x345678
        for i in x:
            h ^= portable_hash(i)
            h *= 1000003
            h &= sys.maxsize
        h ^= len(x)
        if h == -1:
            h = -2
        return int(h)
    return hash(x)


class ResultIterable(Iterable[Any]):
    """The grouped values of one key, as PySpark's ``pyspark.resultiterable.ResultIterable``."""

    def __init__(self, data: list[Any]) -> None:
        self.data = data
        self.index = 0
        self.maxindex = len(data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _text_paths(name: str) -> list[str]:
    """The files behind ``textFile``'s argument; a path that matches nothing raises as in
    Spark (``Input path does not exist``)."""
    found: list[str] = []
    for part in name.split(","):
        part = part.removeprefix("file://")
        if os.path.isdir(part):
            entries = sorted(os.listdir(part))
            found.extend(
                os.path.join(part, e)
                for e in entries
                if not e.startswith((".", "_")) and os.path.isfile(os.path.join(part, e))
            )
        elif os.path.isfile(part):
            found.append(part)
        else:
            matched = sorted(p for p in glob.glob(part) if os.path.isfile(p))
            if not matched:
                raise FileNotFoundError(f"Input path does not exist: {part}")
            found.extend(matched)
    return found


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: means here are sampling fractions, small)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def slice_evenly(data: list[Any], num_slices: int) -> list[list[Any]]:
    """Split like Spark's ``ParallelCollectionRDD.slice``: contiguous, sizes differ by at most 1."""
    n = max(1, num_slices)
    length = len(data)
    return [data[(i * length) // n : ((i + 1) * length) // n] for i in range(n)]


class LocalContext:
    """What ``rdd.context`` and ``ssc.sparkContext`` offer to ported code: building batches."""

    def __init__(self, defaultParallelism: int = DEFAULT_PARALLELISM) -> None:
        self.defaultParallelism = defaultParallelism
        self._accumulators = 0

    def textFile(
        self, name: str, minPartitions: int | None = None, use_unicode: bool = True
    ) -> BatchRDD:
        """The lines of a file, of every file of a directory, or of the files a glob matches
        (comma-separated paths too), as Spark reads them: without their line ends."""
        lines: list[Any] = []
        for path in _text_paths(name):
            with open(path, "rb") as f:
                for raw in f.read().splitlines():
                    lines.append(raw.decode("utf-8") if use_unicode else raw)
        slices = max(minPartitions or 0, min(self.defaultParallelism, 2))
        return BatchRDD(slice_evenly(lines, slices), self)

    def broadcast(self, value: Any) -> Broadcast[Any]:
        return Broadcast(value)

    def accumulator(
        self, value: Any, accum_param: AccumulatorParam[Any] | None = None
    ) -> Accumulator[Any]:
        self._accumulators += 1
        param = accum_param if accum_param is not None else param_for(value)
        return Accumulator(self._accumulators - 1, value, param)

    def parallelize(self, c: Iterable[Any], numSlices: int | None = None) -> BatchRDD:
        slices = self.defaultParallelism if numSlices is None else numSlices
        return BatchRDD(slice_evenly(list(c), slices), self)

    def emptyRDD(self) -> BatchRDD:
        return BatchRDD([], self)

    def union(self, rdds: Iterable[BatchRDD]) -> BatchRDD:
        parts: list[list[Any]] = []
        tasks: list[Task | None] = []
        for rdd in rdds:
            parts.extend(rdd.partitions)
            tasks.extend(rdd.tasks)
        return BatchRDD(parts, self, tasks)


def dispatch_cogroup(seq: Iterable[tuple[int, Any]]) -> tuple[ResultIterable, ResultIterable]:
    """A cogroup's grouped ``(side, value)`` pairs, split by side."""
    bufs: tuple[list[Any], list[Any]] = ([], [])
    for n, v in seq:
        bufs[n].append(v)
    return ResultIterable(bufs[0]), ResultIterable(bufs[1])


def dispatch_join(
    pad_left: bool, pad_right: bool
) -> Callable[[ResultIterable], Iterable[tuple[Any, Any]]]:
    def dispatch(seq: ResultIterable) -> Iterable[tuple[Any, Any]]:
        vbuf: list[Any] = []
        wbuf: list[Any] = []
        for n, v in seq:
            if n == 1:
                vbuf.append(v)
            else:
                wbuf.append(v)
        if pad_left and not vbuf:
            vbuf.append(None)
        if pad_right and not wbuf:
            wbuf.append(None)
        return [(v, w) for v in vbuf for w in wbuf]

    return dispatch


class BatchRDD:
    """One batch of one DStream: an eager list of partitions with PySpark's RDD methods.

    Subscriptable as PySpark's generic ``RDD[T]`` is, for annotations."""

    def __class_getitem__(cls, item: Any) -> types.GenericAlias:
        return types.GenericAlias(cls, item)

    def __init__(
        self,
        partitions: list[list[Any]],
        ctx: LocalContext | None = None,
        tasks: list[Task | None] | None = None,
    ) -> None:
        self.partitions = partitions
        self._ctx = ctx if ctx is not None else LocalContext()
        if tasks is not None and len(tasks) != len(partitions):
            raise ValueError(f"{len(tasks)} tasks for {len(partitions)} partitions")
        # None when every partition is job-scoped: the common case costs nothing
        self._tasks = tasks if tasks is not None and any(t is not None for t in tasks) else None

    def _new(self, partitions: list[list[Any]]) -> BatchRDD:
        """A batch whose partitions no longer match this one's: job-scoped (mixed)."""
        return BatchRDD(partitions, self._ctx)

    def _narrow(self, partitions: list[list[Any]]) -> BatchRDD:
        """Partition ``i`` of the result comes from partition ``i`` here: it keeps its task."""
        return BatchRDD(partitions, self._ctx, self._tasks)

    @property
    def tasks(self) -> list[Task | None]:
        """Each partition's Kafka task, ``None`` where job-scoped or mixed."""
        if self._tasks is None:
            return [None] * len(self.partitions)
        return list(self._tasks)

    @property
    def task_scoped(self) -> bool:
        """True when some partition belongs to a Kafka task: keyed shuffles group per task."""
        return self._tasks is not None

    def _as_mixed(self) -> BatchRDD:
        """The same records with no task: what a global (whole-batch) aggregation starts from."""
        return self if self._tasks is None else BatchRDD(self.partitions, self._ctx)

    def _task_groups(self) -> list[tuple[Task | None, list[list[Any]]]]:
        """Partitions grouped by task, tasks in first-appearance order."""
        groups: dict[Task | None, list[list[Any]]] = {}
        for task, part in zip(self.tasks, self.partitions, strict=True):
            groups.setdefault(task, []).append(part)
        return list(groups.items())

    def __repr__(self) -> str:
        return f"BatchRDD({self.partitions!r})"

    @property
    def context(self) -> LocalContext:
        return self._ctx

    # -- partition-wise ----------------------------------------------------------------------
    def mapPartitionsWithIndex(
        self, f: Callable[[int, Iterator[Any]], Iterable[Any]], preservesPartitioning: bool = False
    ) -> BatchRDD:
        out: list[list[Any]] = []
        for i, part in enumerate(self.partitions):
            result = f(i, iter(part))
            out.append(list(result) if result is not None else [])
        return self._narrow(out)

    def mapPartitions(
        self, f: Callable[[Iterator[Any]], Iterable[Any]], preservesPartitioning: bool = False
    ) -> BatchRDD:
        return self.mapPartitionsWithIndex(lambda _, it: f(it), preservesPartitioning)

    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> BatchRDD:
        return self._narrow([[f(x) for x in part] for part in self.partitions])

    def flatMap(
        self, f: Callable[[Any], Iterable[Any]], preservesPartitioning: bool = False
    ) -> BatchRDD:
        return self._narrow([[y for x in part for y in f(x)] for part in self.partitions])

    def filter(self, f: Callable[[Any], Any]) -> BatchRDD:
        return self._narrow([[x for x in part if f(x)] for part in self.partitions])

    def glom(self) -> BatchRDD:
        return self._narrow([[list(part)] for part in self.partitions])

    def groupBy(self, f: Callable[[Any], Any], numPartitions: int | None = None) -> BatchRDD:
        return self.map(lambda x: (f(x), x)).groupByKey(numPartitions)

    def keyBy(self, f: Callable[[Any], Any]) -> BatchRDD:
        return self.map(lambda x: (f(x), x))

    def mapValues(self, f: Callable[[Any], Any]) -> BatchRDD:
        return self.map(lambda kv: (kv[0], f(kv[1])), True)

    def flatMapValues(self, f: Callable[[Any], Iterable[Any]]) -> BatchRDD:
        return self.flatMap(lambda kv: ((kv[0], x) for x in f(kv[1])), True)

    def keys(self) -> BatchRDD:
        return self.map(lambda kv: kv[0])

    def values(self) -> BatchRDD:
        return self.map(lambda kv: kv[1])

    def cache(self) -> BatchRDD:
        return self

    def persist(self, storageLevel: Any = None) -> BatchRDD:
        return self

    def unpersist(self, blocking: bool = False) -> BatchRDD:
        return self

    def checkpoint(self) -> None:
        return None

    def getNumPartitions(self) -> int:
        return len(self.partitions)

    # -- actions -----------------------------------------------------------------------------
    def collect(self) -> list[Any]:
        return [x for part in self.partitions for x in part]

    def count(self) -> int:
        return sum(len(part) for part in self.partitions)

    def take(self, num: int) -> list[Any]:
        out: list[Any] = []
        for part in self.partitions:
            if len(out) >= num:
                break
            out.extend(part[: num - len(out)])
        return out

    def first(self) -> Any:
        rs = self.take(1)
        if rs:
            return rs[0]
        raise ValueError("RDD is empty")

    def isEmpty(self) -> bool:
        return self.getNumPartitions() == 0 or len(self.take(1)) == 0

    def foreach(self, f: Callable[[Any], Any]) -> None:
        for x in self.collect():
            f(x)

    def foreachPartition(self, f: Callable[[Iterator[Any]], Any]) -> None:
        for part in self.partitions:
            f(iter(part))

    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        vals = [functools.reduce(f, part) for part in self.partitions if part]
        if vals:
            return functools.reduce(f, vals)
        raise ValueError("Can not reduce() empty RDD")

    def treeReduce(self, f: Callable[[Any, Any], Any], depth: int = 2) -> Any:
        if depth < 1:
            raise ValueError(f"Depth cannot be smaller than 1 but got {depth}.")
        return self.reduce(f)

    def fold(self, zeroValue: Any, op: Callable[[Any, Any], Any]) -> Any:
        def fold_part(part: list[Any]) -> Any:
            acc = copy.deepcopy(zeroValue)
            for obj in part:
                acc = op(acc, obj)
            return acc

        return functools.reduce(op, [fold_part(p) for p in self.partitions], zeroValue)

    def aggregate(
        self, zeroValue: Any, seqOp: Callable[[Any, Any], Any], combOp: Callable[[Any, Any], Any]
    ) -> Any:
        def agg_part(part: list[Any]) -> Any:
            acc = copy.deepcopy(zeroValue)
            for obj in part:
                acc = seqOp(acc, obj)
            return acc

        return functools.reduce(combOp, [agg_part(p) for p in self.partitions], zeroValue)

    def sum(self) -> Any:
        return self.fold(0, operator.add)

    def max(self, key: Callable[[Any], Any] | None = None) -> Any:
        if key is None:
            return self.reduce(max)
        return self.reduce(lambda a, b: max(a, b, key=key))

    def min(self, key: Callable[[Any], Any] | None = None) -> Any:
        if key is None:
            return self.reduce(min)
        return self.reduce(lambda a, b: min(a, b, key=key))

    def mean(self) -> float:
        items = self.collect()
        return float(sum(items)) / len(items) if items else math.nan

    def variance(self) -> float:
        items = self.collect()
        return statistics.pvariance(items) if items else math.nan

    def stdev(self) -> float:
        items = self.collect()
        return statistics.pstdev(items) if items else math.nan

    def sampleVariance(self) -> float:
        items = self.collect()
        return statistics.variance(items) if len(items) > 1 else math.nan

    def sampleStdev(self) -> float:
        items = self.collect()
        return statistics.stdev(items) if len(items) > 1 else math.nan

    def treeAggregate(
        self,
        zeroValue: Any,
        seqOp: Callable[[Any, Any], Any],
        combOp: Callable[[Any, Any], Any],
        depth: int = 2,
    ) -> Any:
        if depth < 1:
            raise ValueError(f"Depth cannot be smaller than 1 but got {depth}.")
        return self.aggregate(zeroValue, seqOp, combOp)

    def takeSample(self, withReplacement: bool, num: int, seed: int | None = None) -> list[Any]:
        """``num`` records drawn at random (Spark's law, not its draws)."""
        if num < 0:
            raise ValueError("Sample size cannot be negative.")
        items, rng = self.collect(), random.Random(seed)
        if withReplacement:
            return [rng.choice(items) for _ in range(num)] if items else []
        return rng.sample(items, min(num, len(items)))

    def toLocalIterator(self, prefetchPartitions: bool = False) -> Iterator[Any]:
        return iter(self.collect())

    def top(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        return heapq.nlargest(num, self.collect(), key=key)

    def takeOrdered(self, num: int, key: Callable[[Any], Any] | None = None) -> list[Any]:
        return heapq.nsmallest(num, self.collect(), key=key)

    def countByValue(self) -> dict[Any, int]:
        counts: defaultdict[Any, int] = defaultdict(int)
        for x in self.collect():
            counts[x] += 1
        return counts

    def countByKey(self) -> dict[Any, int]:
        return self.map(lambda kv: kv[0]).countByValue()

    def collectAsMap(self) -> dict[Any, Any]:
        return dict(self.collect())

    def lookup(self, key: Any) -> list[Any]:
        return [v for k, v in self.collect() if k == key]

    def saveAsTextFile(self, path: str, compressionCodecClass: str | None = None) -> None:
        """Write one ``part-NNNNN`` file per partition; fails if ``path`` exists, as Hadoop does."""
        os.makedirs(path, exist_ok=False)
        for i, part in enumerate(self.partitions):
            with open(os.path.join(path, f"part-{i:05d}"), "w", encoding="utf-8") as fh:
                for x in part:
                    line = x.decode("utf-8") if isinstance(x, bytes) else str(x)
                    fh.write(line + "\n")
        with open(os.path.join(path, "_SUCCESS"), "w", encoding="utf-8"):
            pass

    # -- reshaping ---------------------------------------------------------------------------
    def union(self, other: BatchRDD) -> BatchRDD:
        return self._ctx.union([self, other])

    def partitionBy(
        self, numPartitions: int | None, partitionFunc: Callable[[Any], int] = portable_hash
    ) -> BatchRDD:
        """Task-scoped: one partition per task with its records (``numPartitions`` ignored)."""
        if self._tasks is not None:
            groups = self._task_groups()
            return BatchRDD(
                [[kv for part in parts for kv in part] for _, parts in groups],
                self._ctx,
                [task for task, _ in groups],
            )
        n = self.getNumPartitions() if numPartitions is None else numPartitions
        if n <= 0:
            return self._new([])
        buckets: list[list[Any]] = [[] for _ in range(n)]
        for part in self.partitions:
            for kv in part:
                buckets[partitionFunc(kv[0]) % n].append(kv)
        return self._new(buckets)

    def repartition(self, numPartitions: int) -> BatchRDD:
        return self._new(slice_evenly(self.collect(), numPartitions))

    def coalesce(self, numPartitions: int, shuffle: bool = False) -> BatchRDD:
        if shuffle or numPartitions >= self.getNumPartitions():
            if shuffle:
                return self.repartition(numPartitions)
            return self
        groups = slice_evenly(list(range(self.getNumPartitions())), numPartitions)
        merged = self._new([[x for i in g for x in self.partitions[i]] for g in groups])
        if self._tasks is not None:
            # a merged partition keeps its task only when all its sources had that one
            tasks = self._tasks
            merged = BatchRDD(
                merged.partitions,
                self._ctx,
                [
                    tasks[g[0]] if g and all(tasks[i] == tasks[g[0]] for i in g) else None
                    for g in groups
                ],
            )
        return merged

    def sortBy(
        self,
        keyfunc: Callable[[Any], Any],
        ascending: bool = True,
        numPartitions: int | None = None,
    ) -> BatchRDD:
        n = self.getNumPartitions() if numPartitions is None else numPartitions
        ordered = sorted(self.collect(), key=keyfunc, reverse=not ascending)
        return self._new(slice_evenly(ordered, n) if n > 0 else [])

    def sortByKey(
        self,
        ascending: bool = True,
        numPartitions: int | None = None,
        keyfunc: Callable[[Any], Any] = lambda x: x,
    ) -> BatchRDD:
        return self.sortBy(lambda kv: keyfunc(kv[0]), ascending, numPartitions)

    def zip(self, other: BatchRDD) -> BatchRDD:
        if [len(p) for p in self.partitions] != [len(p) for p in other.partitions]:
            raise ValueError("Can only zip RDDs with same number of elements in each partition")
        return self._narrow(
            [
                list(zip(a, b, strict=True))
                for a, b in zip(self.partitions, other.partitions, strict=True)
            ]
        )

    def cartesian(self, other: BatchRDD) -> BatchRDD:
        """Every pair ``(a, b)``, one partition per pair of partitions as in Spark (task-free:
        the pairs of two tasks belong to neither)."""
        parts = [
            [(a, b) for a in pa for b in pb] for pa in self.partitions for pb in other.partitions
        ]
        return BatchRDD(parts, self._ctx)

    def sample(self, withReplacement: bool, fraction: float, seed: int | None = None) -> BatchRDD:
        """Each record kept with probability ``fraction`` (without replacement), or a Poisson
        number of times (with), per partition from ``seed``: Spark's law, not its draws."""
        if fraction < 0.0:
            raise ValueError(f"Fraction must be nonnegative, got {fraction}")
        rng = random.Random(seed)
        out: list[list[Any]] = []
        for index, part in enumerate(self.partitions):
            local = random.Random(rng.random() + index)
            if withReplacement:
                out.append([x for x in part for _ in range(_poisson(local, fraction))])
            else:
                out.append([x for x in part if local.random() < fraction])
        return self._narrow(out)

    def zipWithUniqueId(self) -> BatchRDD:
        """Spark's ids: the i-th record of partition k gets ``i * n + k`` (n partitions)."""
        n = self.getNumPartitions()
        return self._narrow(
            [[(x, i * n + k) for i, x in enumerate(part)] for k, part in enumerate(self.partitions)]
        )

    def zipWithIndex(self) -> BatchRDD:
        out: list[list[Any]] = []
        i = 0
        for part in self.partitions:
            out.append([(x, i + j) for j, x in enumerate(part)])
            i += len(part)
        return self._narrow(out)

    def distinct(self, numPartitions: int | None = None) -> BatchRDD:
        return (
            self.map(lambda x: (x, None))
            .reduceByKey(lambda x, _: x, numPartitions)
            .map(lambda kv: kv[0])
        )

    # -- keyed shuffles ----------------------------------------------------------------------
    def combineByKey(
        self,
        createCombiner: Callable[[Any], Any],
        mergeValue: Callable[[Any, Any], Any],
        mergeCombiners: Callable[[Any, Any], Any],
        numPartitions: int | None = None,
        partitionFunc: Callable[[Any], int] = portable_hash,
    ) -> BatchRDD:
        """Map-side combine per partition, bucket by hash, merge combiners in bucket order.

        Task-scoped: one output partition per task, combining only that task's records
        (``numPartitions`` and ``partitionFunc`` are ignored).
        """
        if self._tasks is not None:
            groups = self._task_groups()
            out_parts: list[list[Any]] = []
            for _, parts in groups:
                merged_task: dict[Any, Any] = {}
                for part in parts:
                    local_task: dict[Any, Any] = {}
                    for k, v in part:
                        local_task[k] = (
                            mergeValue(local_task[k], v) if k in local_task else createCombiner(v)
                        )
                    for k, c in local_task.items():
                        merged_task[k] = (
                            mergeCombiners(merged_task[k], c) if k in merged_task else c
                        )
                out_parts.append(list(merged_task.items()))
            return BatchRDD(out_parts, self._ctx, [task for task, _ in groups])
        n = self.getNumPartitions() if numPartitions is None else numPartitions
        if n <= 0:
            return self._new([])
        buckets: list[list[tuple[Any, Any]]] = [[] for _ in range(n)]
        for part in self.partitions:
            local: dict[Any, Any] = {}
            for k, v in part:
                local[k] = mergeValue(local[k], v) if k in local else createCombiner(v)
            for k, c in local.items():
                buckets[partitionFunc(k) % n].append((k, c))
        out: list[list[Any]] = []
        for bucket in buckets:
            merged: dict[Any, Any] = {}
            for k, c in bucket:
                merged[k] = mergeCombiners(merged[k], c) if k in merged else c
            out.append(list(merged.items()))
        return self._new(out)

    def reduceByKey(
        self,
        func: Callable[[Any, Any], Any],
        numPartitions: int | None = None,
        partitionFunc: Callable[[Any], int] = portable_hash,
    ) -> BatchRDD:
        return self.combineByKey(lambda x: x, func, func, numPartitions, partitionFunc)

    def foldByKey(
        self,
        zeroValue: Any,
        func: Callable[[Any, Any], Any],
        numPartitions: int | None = None,
        partitionFunc: Callable[[Any], int] = portable_hash,
    ) -> BatchRDD:
        return self.combineByKey(
            lambda v: func(copy.deepcopy(zeroValue), v), func, func, numPartitions, partitionFunc
        )

    def aggregateByKey(
        self,
        zeroValue: Any,
        seqFunc: Callable[[Any, Any], Any],
        combFunc: Callable[[Any, Any], Any],
        numPartitions: int | None = None,
        partitionFunc: Callable[[Any], int] = portable_hash,
    ) -> BatchRDD:
        return self.combineByKey(
            lambda v: seqFunc(copy.deepcopy(zeroValue), v),
            seqFunc,
            combFunc,
            numPartitions,
            partitionFunc,
        )

    def groupByKey(
        self,
        numPartitions: int | None = None,
        partitionFunc: Callable[[Any], int] = portable_hash,
    ) -> BatchRDD:
        def merge_value(xs: list[Any], x: Any) -> list[Any]:
            xs.append(x)
            return xs

        def merge_combiners(a: list[Any], b: list[Any]) -> list[Any]:
            a.extend(b)
            return a

        return self.combineByKey(
            lambda x: [x], merge_value, merge_combiners, numPartitions, partitionFunc
        ).mapValues(ResultIterable)

    def cogroup(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        tagged = self.mapValues(lambda v: (0, v)).union(other.mapValues(lambda v: (1, v)))
        return tagged.groupByKey(numPartitions).mapValues(dispatch_cogroup)

    def _join(
        self, other: BatchRDD, numPartitions: int | None, pad_left: bool, pad_right: bool
    ) -> BatchRDD:
        vs = self.mapValues(lambda v: (1, v))
        ws = other.mapValues(lambda v: (2, v))
        return (
            vs.union(ws).groupByKey(numPartitions).flatMapValues(dispatch_join(pad_left, pad_right))
        )

    def join(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        return self._join(other, numPartitions, False, False)

    def leftOuterJoin(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        return self._join(other, numPartitions, False, True)

    def rightOuterJoin(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        return self._join(other, numPartitions, True, False)

    def fullOuterJoin(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        return self._join(other, numPartitions, True, True)

    def subtractByKey(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        return (
            self.cogroup(other, numPartitions)
            .filter(lambda kv: len(kv[1][0]) > 0 and len(kv[1][1]) == 0)
            .flatMapValues(lambda vw: vw[0])
        )

    def intersection(self, other: BatchRDD) -> BatchRDD:
        """The distinct records of both, as Spark's (a cogroup of the two)."""
        return (
            self.map(lambda v: (v, None))
            .cogroup(other.map(lambda v: (v, None)))
            .filter(lambda kv: bool(len(kv[1][0]) and len(kv[1][1])))
            .keys()
        )

    def subtract(self, other: BatchRDD, numPartitions: int | None = None) -> BatchRDD:
        rdd = other.map(lambda x: (x, True))
        return self.map(lambda x: (x, True)).subtractByKey(rdd, numPartitions).keys()
