"""DStream: pyspark.streaming's API and per-batch semantics, computed eagerly in-process.

Every stream has a slide (ms); it produces a batch only at times ``t > zero`` with
``(t - zero) % slide == 0``, as Spark's ``DStream.isTimeValid``. A stream's batch for the current
time is computed once and shared by all its children. Window slices and keyed state go through
``JobState`` (the store is authoritative; memory holds the same bytes as a cache) and are always
unpickled afresh, so functions that mutate their inputs (PySpark's own ``groupByKeyAndWindow``
does) cannot corrupt what a later batch reads, just as in PySpark where every read deserializes.

Under Kafka inputs (a source offering ``take_tasks``) every stateful stream keeps its state and
slices per task (Kafka partition), loads a task's state the first time the task appears and
forgets it on ``DStreamGraph.forget_task``; see docs/semantics.md.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import operator
import os
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from service.commit.batch import participant_of
from service.sources.base import PartitionedSource, TaskSource
from service.streaming.listener import StreamInputInfo
from service.streaming.persistence import JobState, dumps, loads
from service.streaming.rdd import (
    BatchRDD,
    LocalContext,
    ResultIterable,
    Task,
    dispatch_cogroup,
    dispatch_join,
    portable_hash,
)

if TYPE_CHECKING:
    from service.streaming.context import StreamingContext

log = logging.getLogger(__name__)

# how a stream's records of one key share a partition (``DStream._keyed_by``)
SHUFFLED = "shuffled"
KAFKA_KEYED = "kafka:"


@dataclass(frozen=True)
class BatchTime:
    """One batch's time: integer ms for arithmetic, and the one datetime every function sees."""

    ms: int
    dt: datetime

    @classmethod
    def at(cls, ms: int) -> BatchTime:
        # PySpark hands functions datetime.fromtimestamp(ms / 1000.0): local, naive.
        return cls(ms, datetime.fromtimestamp(ms / 1000.0))


def duration_ms(seconds: float) -> int:
    """Seconds (float, ms precision) to integer ms; rounding makes ``3 * 0.2`` exactly 600."""
    return round(float(seconds) * 1000)


def func_arity(func: Callable[..., Any]) -> int:
    """Positional parameter count, the way PySpark's ``func.__code__.co_argcount`` sees it."""
    code = getattr(func, "__code__", None)
    if code is not None:
        n = int(code.co_argcount)
        return n - 1 if inspect.ismethod(func) else n
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return -1
    return sum(
        1
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def with_time(func: Callable[..., Any], plain: int, name: str) -> Callable[..., Any]:
    """Adapt ``func(*rdds)`` to ``func(time, *rdds)`` when it takes ``plain`` arguments."""
    n = func_arity(func)
    if n == plain:
        return lambda t, *rdds: func(*rdds)
    if n in (plain + 1, -1):
        return func
    raise TypeError(f"{name} should take {plain} or {plain + 1} arguments")


def _as_batch(result: Any) -> BatchRDD | None:
    if result is None or isinstance(result, BatchRDD):
        return result
    raise TypeError(f"transform function must return an RDD or None, not {type(result).__name__}")


def _task_groups(rdd: BatchRDD, op: str) -> list[tuple[Task, list[list[Any]]]]:
    """The batch's partitions by Kafka partition (task), for state kept per task.

    Kafka inputs keep state per partition: a batch of mixed records cannot have state. Empty
    partitions of no task are left out: a shuffle of a batch without any Kafka partition (an
    instance that owns none yet) makes ``numPartitions`` of them, and they hold nothing to keep.
    """
    if any(task is None and part for task, part in zip(rdd.tasks, rdd.partitions, strict=True)):
        raise ValueError(
            f"{op}: the job reads Kafka, so its state is kept per Kafka partition, but this "
            "stream's batch holds records of no single partition (a global aggregation such as "
            "count/reduce/countByWindow/reduceByWindow, a repartition or sort, or a non-Kafka "
            "input). Global state cannot be kept per Kafka partition: key the stream instead, "
            "e.g. map records to (key, value) pairs and use reduceByKeyAndWindow or "
            "updateStateByKey, so each partition keeps its own state"
        )
    return [(task, parts) for task, parts in rdd._task_groups() if task is not None]


def _pairs_without_task(rdd: BatchRDD, pair: Callable[[Any], Any]) -> BatchRDD:
    """Pairs for a whole-batch aggregation: global, as in Spark, even under Kafka inputs."""
    return rdd.map(pair)._as_mixed()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class DStream:
    """A continuous sequence of batches; the operators are pyspark.streaming.DStream's.

    Subscriptable as PySpark's generic ``DStream[T]`` is, for annotations."""

    def __class_getitem__(cls, item: Any) -> types.GenericAlias:
        return types.GenericAlias(cls, item)

    def __init__(self, ssc: StreamingContext, parents: list[DStream], slide_ms: int) -> None:
        self._ssc = ssc
        self._parents = parents
        self._slide_ms = slide_ms
        self._generated: dict[int, BatchRDD | _Failure | None] = {}
        self._slice_log: _SliceLog | None = None
        self._forced = False
        self.is_cached = False
        self.is_checkpointed = False
        # which stage of the job computes it: 0 from the inputs, one more past each shuffle
        # through Kafka (service/streaming/shuffle.py); its batch times are that stage's
        self._stage: int = max((p._stage for p in parents), default=0)
        # its records of one key are all in one partition (task), by which partitioning: a
        # keyed shuffle of it needs no repartitioning. None: unknown; KAFKA_KEYED + topic: the
        # pairs of one Kafka topic, by the producer's key (as Kafka Streams takes a source
        # topic); SHUFFLED: a shuffle's output; anything key-preserving after them keeps it
        self._keyed_by: str | None = None
        # how ``_keyed_by`` follows the parents (``_derive_keying``): "none", "copy" (the first
        # parent's: a key-preserving step), "common" (the parents', when all agree: a union),
        # "own" (set by the stream itself: inputs, shuffles)
        self._keying = "none"
        # a job's function runs on its batches' RDDs (transform, transformWith): the plan
        # gathers its parents' records when they are not partitioned by key, else a shuffle
        # inside groups within each task (service/streaming/shuffle.py)
        self._user_rdd_function = False
        self._gathered = False  # its parents' records go through a one-partition topic first
        self._id = ssc._graph.register(self)

    # -- engine ------------------------------------------------------------------------------
    def _derive_keying(self) -> None:
        """``_keyed_by`` from the parents by the stream's rule (again after a plan rewired
        them)."""
        if self._keying == "copy":
            self._keyed_by = self._parents[0]._keyed_by
        elif self._keying == "common":
            first = self._parents[0]._keyed_by
            self._keyed_by = first if all(p._keyed_by == first for p in self._parents) else None

    @property
    def _slideDuration(self) -> float:
        return self._slide_ms / 1000.0

    @property
    def _ctx(self) -> LocalContext:
        return self._ssc._local_context

    @property
    def _job(self) -> JobState:
        return self._ssc._graph.job_state()

    @property
    def _zero_ms(self) -> int:
        return self._ssc._graph.zero()

    @property
    def _task_scoped(self) -> bool:
        return self._ssc._graph.task_scoped

    def _forget_task(self, task: Task) -> None:
        """Drop what is cached for ``task``; its state is re-read from the store when it returns."""
        if self._slice_log is not None:
            self._slice_log.forget(task)

    def _is_valid(self, t: int) -> bool:
        zero = self._zero_ms
        return t > zero and (t - zero) % self._slide_ms == 0

    def _valid_times(self, after: int, upto: int) -> list[int]:
        """This stream's batch times in ``(after, upto]``, oldest first."""
        zero = self._zero_ms
        first = after + 1
        offset = (first - zero) % self._slide_ms
        if offset:
            first += self._slide_ms - offset
        return [t for t in range(first, upto + 1, self._slide_ms) if t > zero]

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        raise NotImplementedError

    def _get_or_compute(self, bt: BatchTime) -> BatchRDD | None:
        entry = self._generated.get(bt.ms, _MISSING)
        if entry is _MISSING:
            if not self._is_valid(bt.ms):
                return None
            try:
                entry = self._compute(bt)
                if self._slice_log is not None:
                    self._slice_log.record(bt.ms, entry)
            except BaseException as exc:
                self._generated[bt.ms] = _Failure(exc)
                raise
            self._generated[bt.ms] = entry
        if isinstance(entry, _Failure):
            raise entry.exc
        assert entry is None or isinstance(entry, BatchRDD)
        return entry

    def _keep_slices(self, keep_ms: int, keyed_partitions: int | None, op: str) -> _SliceLog:
        """Record this stream's batches in the store so windows over it survive a restart."""
        if self._slice_log is None:
            self._slice_log = _SliceLog(self, keep_ms, keyed_partitions, op)
        else:
            self._slice_log.keep_ms = max(self._slice_log.keep_ms, keep_ms)
        self._forced = True
        return self._slice_log

    def _restore(self, last_ms: int | None, meta: dict[str, int]) -> None:
        if self._slice_log is not None and last_ms is not None:
            self._slice_log.restore(last_ms)

    def _end_batch(self, t: int) -> None:
        keep = max(self._slide_ms, self._ssc._graph.remember_ms)
        for old in [x for x in self._generated if x <= t - keep]:
            del self._generated[old]
        if self._slice_log is not None:
            self._slice_log.expire(t)

    def _validate_window_param(self, window: float, slide: float | None) -> None:
        d = self._slide_ms
        w = duration_ms(window)
        if w <= 0 or w % d != 0:
            raise ValueError(
                f"windowDuration ({w} ms) must be a positive multiple of the parent dstream's "
                f"slide (batch) duration ({d} ms)"
            )
        if slide is not None:
            s = duration_ms(slide)
            if s <= 0 or s % d != 0:
                raise ValueError(
                    f"slideDuration ({s} ms) must be a positive multiple of the parent "
                    f"dstream's slide (batch) duration ({d} ms)"
                )

    # -- plumbing ----------------------------------------------------------------------------
    def context(self) -> StreamingContext:
        return self._ssc

    def cache(self) -> DStream:
        return self.persist()

    def persist(self, storageLevel: Any = None) -> DStream:
        self.is_cached = True
        return self

    def checkpoint(self, interval: float) -> DStream:
        self.is_checkpointed = True
        return self

    def transform(self, func: Callable[..., Any]) -> DStream:
        """``func(rdd)`` or ``func(time, rdd)``; returning None yields no batch at that time."""
        stream = _TransformedDStream(self, with_time(func, 1, "func"))
        stream._user_rdd_function = True
        return stream

    def _narrow(self, func: Callable[[BatchRDD], BatchRDD], keeps_keys: bool) -> DStream:
        """A partition-wise step; ``keeps_keys``: each record keeps its key (and partition)."""
        stream = _TransformedDStream(self, lambda t, rdd: func(rdd))
        stream._keying = "copy" if keeps_keys else "none"
        stream._derive_keying()
        return stream

    def transformWith(
        self, func: Callable[..., Any], other: DStream, keepSerializer: bool = False
    ) -> DStream:
        stream = _Transformed2DStream(self, other, with_time(func, 2, "func"))
        stream._user_rdd_function = True
        return stream

    def foreachRDD(self, func: Callable[..., Any]) -> None:
        self._ssc._graph.add_output(_OutputOp(self, with_time(func, 1, "func")))
        # an output whose writes commit with the batch (a transactional KafkaSink)
        participant = participant_of(func)
        if participant is not None:
            self._ssc._addBatchParticipant(participant)

    def pprint(self, num: int = 10) -> None:
        def take_and_print(time: datetime, rdd: BatchRDD) -> None:
            taken = rdd.take(num + 1)
            print("-------------------------------------------")
            print(f"Time: {time}")
            print("-------------------------------------------")
            for record in taken[:num]:
                print(record)
            if len(taken) > num:
                print("...")
            print("")

        self.foreachRDD(take_and_print)

    def saveAsTextFiles(self, prefix: str, suffix: str | None = None) -> None:
        def save(t: datetime, rdd: BatchRDD) -> None:
            path = rdd_to_file_name(prefix, suffix, t)
            # After a restart the batch may be saved twice; like PySpark, keep the first.
            if not os.path.exists(path):
                rdd.saveAsTextFile(path)

        self.foreachRDD(save)

    def slice(self, begin: datetime | float, end: datetime | float) -> list[BatchRDD]:
        """The remembered batches with times in ``[begin, end]``."""
        lo, hi = _time_ms(begin), _time_ms(end)
        out: list[BatchRDD] = []
        for t in self._valid_times(lo - 1, hi):
            entry = self._generated.get(t)
            rdd = entry if isinstance(entry, BatchRDD) else None
            if rdd is None and self._slice_log is not None:
                rdd = self._slice_log.get_any(t)
            if rdd is not None:
                out.append(rdd)
        return out

    # -- element-wise ------------------------------------------------------------------------
    def mapPartitionsWithIndex(
        self, f: Callable[[int, Iterator[Any]], Iterable[Any]], preservesPartitioning: bool = False
    ) -> DStream:
        return self._narrow(
            lambda rdd: rdd.mapPartitionsWithIndex(f, preservesPartitioning),
            preservesPartitioning,
        )

    def mapPartitions(
        self, f: Callable[[Iterator[Any]], Iterable[Any]], preservesPartitioning: bool = False
    ) -> DStream:
        return self.mapPartitionsWithIndex(lambda _, it: f(it), preservesPartitioning)

    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> DStream:
        return self.mapPartitions(lambda it: map(f, it), preservesPartitioning)

    def flatMap(
        self, f: Callable[[Any], Iterable[Any]], preservesPartitioning: bool = False
    ) -> DStream:
        return self.mapPartitions(
            lambda it: itertools.chain.from_iterable(map(f, it)), preservesPartitioning
        )

    def filter(self, f: Callable[[Any], Any]) -> DStream:
        return self.mapPartitions(lambda it: filter(f, it), True)

    def glom(self) -> DStream:
        return self.mapPartitions(lambda it: [list(it)])

    def mapValues(self, f: Callable[[Any], Any]) -> DStream:
        return self.map(lambda kv: (kv[0], f(kv[1])), True)

    def flatMapValues(self, f: Callable[[Any], Iterable[Any]]) -> DStream:
        return self.flatMap(lambda kv: ((kv[0], x) for x in f(kv[1])), True)

    def count(self) -> DStream:
        return self.mapPartitions(lambda i: [sum(1 for _ in i)]).reduce(operator.add)

    def reduce(self, func: Callable[[Any, Any], Any]) -> DStream:
        """One result per batch, as in Spark, also under Kafka inputs (its partition is mixed)."""
        pairs = _TransformedDStream(
            self, lambda t, rdd: _pairs_without_task(rdd, lambda x: (None, x))
        )
        return pairs.reduceByKey(func, 1).map(lambda x: x[1])

    def countByValue(self) -> DStream:
        return self.map(lambda x: (x, 1)).reduceByKey(lambda x, y: x + y)

    # -- keyed -------------------------------------------------------------------------------
    def _partitions(self, numPartitions: int | None) -> int:
        return self._ctx.defaultParallelism if numPartitions is None else numPartitions

    def combineByKey(
        self,
        createCombiner: Callable[[Any], Any],
        mergeValue: Callable[[Any, Any], Any],
        mergeCombiners: Callable[[Any, Any], Any],
        numPartitions: int | None = None,
    ) -> DStream:
        n = self._partitions(numPartitions)
        return _ShuffledDStream(
            self,
            lambda rdd: rdd.combineByKey(createCombiner, mergeValue, mergeCombiners, n),
            numPartitions,
        )

    def reduceByKey(
        self, func: Callable[[Any, Any], Any], numPartitions: int | None = None
    ) -> DStream:
        return self.combineByKey(lambda x: x, func, func, numPartitions)

    def partitionBy(
        self, numPartitions: int, partitionFunc: Callable[[Any], int] = portable_hash
    ) -> DStream:
        return _ShuffledDStream(
            self, lambda rdd: rdd.partitionBy(numPartitions, partitionFunc), numPartitions
        )

    def groupByKey(self, numPartitions: int | None = None) -> DStream:
        n = self._partitions(numPartitions)
        return _ShuffledDStream(self, lambda rdd: rdd.groupByKey(n), numPartitions)

    def repartition(self, numPartitions: int) -> DStream:
        return _TransformedDStream(self, lambda t, rdd: rdd.repartition(numPartitions))

    def union(self, other: DStream) -> DStream:
        if self._slide_ms != other._slide_ms:
            raise ValueError("the two DStream should have same slide duration")
        stream = _Transformed2DStream(self, other, lambda t, a, b: a.union(b))
        # both sides partitioned by key in the same way: the same tasks hold the same keys
        stream._keying = "common"
        stream._derive_keying()
        return stream

    def cogroup(self, other: DStream, numPartitions: int | None = None) -> DStream:
        """A keyed shuffle of both sides' tagged pairs, as ``RDD.cogroup`` builds it: under
        ``DSTREAMS_SHUFFLE=kafka`` both sides meet in one repartition topic, whatever topics
        they came from."""
        tagged = self.mapValues(lambda v: (0, v)).union(other.mapValues(lambda v: (1, v)))
        return tagged.groupByKey(numPartitions).mapValues(dispatch_cogroup)

    def _join(
        self, other: DStream, numPartitions: int | None, pad_left: bool, pad_right: bool
    ) -> DStream:
        tagged = self.mapValues(lambda v: (1, v)).union(other.mapValues(lambda v: (2, v)))
        grouped = tagged.groupByKey(numPartitions)
        return grouped.flatMapValues(dispatch_join(pad_left, pad_right))

    def join(self, other: DStream, numPartitions: int | None = None) -> DStream:
        return self._join(other, numPartitions, False, False)

    def leftOuterJoin(self, other: DStream, numPartitions: int | None = None) -> DStream:
        return self._join(other, numPartitions, False, True)

    def rightOuterJoin(self, other: DStream, numPartitions: int | None = None) -> DStream:
        return self._join(other, numPartitions, True, False)

    def fullOuterJoin(self, other: DStream, numPartitions: int | None = None) -> DStream:
        return self._join(other, numPartitions, True, True)

    # -- windows -----------------------------------------------------------------------------
    def window(self, windowDuration: float, slideDuration: float | None = None) -> DStream:
        self._validate_window_param(windowDuration, slideDuration)
        slide = self._slide_ms if slideDuration is None else duration_ms(slideDuration)
        return _WindowedDStream(self, duration_ms(windowDuration), slide, op="window")

    def reduceByWindow(
        self,
        reduceFunc: Callable[[Any, Any], Any],
        invReduceFunc: Callable[[Any, Any], Any] | None,
        windowDuration: float,
        slideDuration: float | None,
    ) -> DStream:
        """Global, as in Spark: under Kafka inputs it raises at the first batch (no key)."""
        return self._reduce_by_window(
            reduceFunc, invReduceFunc, windowDuration, slideDuration, "reduceByWindow"
        )

    def _reduce_by_window(
        self,
        reduceFunc: Callable[[Any, Any], Any],
        invReduceFunc: Callable[[Any, Any], Any] | None,
        windowDuration: float,
        slideDuration: float | None,
        op: str,
    ) -> DStream:
        keyed = _TransformedDStream(self, lambda t, rdd: _pairs_without_task(rdd, lambda x: (1, x)))
        reduced = keyed._reduce_by_key_and_window(
            reduceFunc, invReduceFunc, windowDuration, slideDuration, 1, None, op
        )
        return reduced.map(lambda kv: kv[1])

    def countByWindow(self, windowDuration: float, slideDuration: float | None) -> DStream:
        """Global, as in Spark: under Kafka inputs it raises at the first batch (no key)."""
        return self.map(lambda x: 1)._reduce_by_window(
            operator.add, operator.sub, windowDuration, slideDuration, "countByWindow"
        )

    def countByValueAndWindow(
        self, windowDuration: float, slideDuration: float | None, numPartitions: int | None = None
    ) -> DStream:
        keyed = self.map(lambda x: (x, 1))
        counted = keyed._reduce_by_key_and_window(
            operator.add,
            operator.sub,
            windowDuration,
            slideDuration,
            numPartitions,
            None,
            "countByValueAndWindow",
        )
        return counted.filter(lambda kv: kv[1] > 0)

    def groupByKeyAndWindow(
        self, windowDuration: float, slideDuration: float | None, numPartitions: int | None = None
    ) -> DStream:
        ls = self.mapValues(lambda x: [x])
        grouped = ls._reduce_by_key_and_window(
            lambda a, b: a.extend(b) or a,
            lambda a, b: a[len(b) :],
            windowDuration,
            slideDuration,
            numPartitions,
            None,
            "groupByKeyAndWindow",
        )
        return grouped.mapValues(ResultIterable)

    def reduceByKeyAndWindow(
        self,
        func: Callable[[Any, Any], Any],
        invFunc: Callable[[Any, Any], Any] | None,
        windowDuration: float,
        slideDuration: float | None = None,
        numPartitions: int | None = None,
        filterFunc: Callable[[Any], Any] | None = None,
    ) -> DStream:
        return self._reduce_by_key_and_window(
            func,
            invFunc,
            windowDuration,
            slideDuration,
            numPartitions,
            filterFunc,
            "reduceByKeyAndWindow",
        )

    def _reduce_by_key_and_window(
        self,
        func: Callable[[Any, Any], Any],
        invFunc: Callable[[Any, Any], Any] | None,
        windowDuration: float,
        slideDuration: float | None,
        numPartitions: int | None,
        filterFunc: Callable[[Any], Any] | None,
        op: str,
    ) -> DStream:
        """``op`` names the operator the user called, for errors under Kafka inputs."""
        self._validate_window_param(windowDuration, slideDuration)
        n = self._partitions(numPartitions)
        reduced = self.reduceByKey(func, numPartitions)
        slide = self._slide_ms if slideDuration is None else duration_ms(slideDuration)
        if invFunc:
            return _ReducedWindowedDStream(
                reduced, func, invFunc, filterFunc, duration_ms(windowDuration), slide, n, op
            )
        # The window's slices are the per-batch reduced values: stored one field per key.
        windowed = _WindowedDStream(reduced, duration_ms(windowDuration), slide, keyed=n, op=op)
        return windowed.reduceByKey(func, n)

    def updateStateByKey(
        self,
        updateFunc: Callable[[list[Any], Any], Any],
        numPartitions: int | None = None,
        initialRDD: Any = None,
    ) -> DStream:
        n = self._partitions(numPartitions)
        initial: BatchRDD | None = None
        if isinstance(initialRDD, BatchRDD):
            initial = initialRDD
        elif initialRDD:
            initial = self._ctx.parallelize(list(initialRDD))
        return _StateDStream(self, updateFunc, n, initial)


_MISSING: Any = object()


def _time_ms(value: datetime | float) -> int:
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return duration_ms(value)


def rdd_to_file_name(prefix: str, suffix: str | None, t: datetime) -> str:
    """PySpark's ``rddToFileName``: ``prefix-<ms>[.suffix]``."""
    stamp = round(t.timestamp() * 1000)
    return f"{prefix}-{stamp}" if suffix is None else f"{prefix}-{stamp}.{suffix}"


class InputDStream(DStream):
    """A source's batches; the scheduler takes one batch from the source at every batch time."""

    def __init__(self, ssc: StreamingContext, source: Any) -> None:
        super().__init__(ssc, [], ssc._batch_ms)
        self.source = source
        self._taken: dict[int, tuple[list[list[Any]], list[Task | None] | None]] = {}
        # the tasks of the batch taken last, in the source's order
        self.last_tasks: list[Task] = []
        # the keyed shuffles that group its pairs by their Kafka key within each partition
        # (service/streaming/shuffle.py, rely_on_kafka_keys): a record without a key warns
        self.relied_on_keys: list[str] = []
        self._warned_keyless = False

    @property
    def offers_tasks(self) -> bool:
        """The source hands out one partition per Kafka partition with its task id."""
        return isinstance(self.source, TaskSource)

    def _take(self, t: int) -> int:
        """Take batch ``t`` from the source; sources with partitions (and tasks) keep them."""
        self.last_tasks = []
        tasks: list[Task | None] | None = None
        if isinstance(self.source, TaskSource):
            entries = self.source.take_tasks(t)
            parts = [list(records) for _, records in entries]
            self.last_tasks = [(str(tp[0]), int(tp[1])) for tp, _ in entries]
            tasks = list(self.last_tasks)
            if self.relied_on_keys:
                self._check_keys(parts)
        elif isinstance(self.source, PartitionedSource):
            parts = self.source.take_partitions(t)
        else:
            parts = self._ctx.parallelize(list(self.source.take_batch(t))).partitions
        self._taken[t] = (parts, tasks)
        return sum(len(p) for p in parts)

    def _check_keys(self, parts: list[list[Any]]) -> None:
        """Warn once when a partition's first record has no key (one look per partition and
        batch: keyless topics are keyless throughout)."""
        if self._warned_keyless:
            return
        for part in parts:
            first = part[0] if part else None
            if isinstance(first, tuple) and len(first) == 2 and first[0] is None:
                log.warning(
                    "stream %d: records without a key in %s, and %s groups by the Kafka key "
                    "within each partition: keyless records are spread over the partitions, so "
                    "their group is split (not Spark's answer). Pass "
                    "{'dstreams.partitioned.by.key': False} in kafkaParams to shuffle them "
                    "(docs/semantics.md)",
                    self._id,
                    ", ".join(getattr(self.source, "topics", ())),
                    " and ".join(sorted(set(self.relied_on_keys))),
                )
                self._warned_keyless = True
                return

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        taken = self._taken.pop(bt.ms, None)
        return None if taken is None else BatchRDD(taken[0], self._ctx, taken[1])

    def released_times(self) -> list[int]:
        """The batch times a later stage's input released in the batch taken last (none for
        the job's own inputs, which run at the batch's time)."""
        return []

    def input_info(self, taken: int) -> StreamInputInfo | None:
        """What the listener reports of this input for the batch: sources that count their
        records (Kafka, sockets) report, queues and files do not, as in Spark."""
        if not getattr(self.source, "reports_records", True):
            return None
        topics = getattr(self.source, "topics", None)
        where = f"topics {', '.join(topics)}" if topics else type(self.source).__name__
        return StreamInputInfo(self._id, taken, {"Description": f"{taken} records from {where}"})

    def _end_batch(self, t: int) -> None:
        for old in [x for x in self._taken if x <= t]:
            del self._taken[old]
        super()._end_batch(t)


class _TransformedDStream(DStream):
    """PySpark's PythonTransformedDStream: no parent batch, no batch."""

    def __init__(self, prev: DStream, func: Callable[..., Any]) -> None:
        super().__init__(prev._ssc, [prev], prev._slide_ms)
        self._func = func

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        rdd = self._parents[0]._get_or_compute(bt)
        if rdd is None:
            return None
        return _as_batch(self._func(bt.dt, rdd))


class _ShuffledDStream(_TransformedDStream):
    """A keyed shuffle (combineByKey, groupByKey, partitionBy and what builds on them): where its
    parent is not partitioned by key, a job with ``DSTREAMS_SHUFFLE=kafka`` routes the parent's
    pairs through a repartition topic first (service/streaming/shuffle.py). ``partitions``: the
    ``numPartitions`` the job gave (None: the input's partition count)."""

    def __init__(
        self, prev: DStream, func: Callable[[BatchRDD], BatchRDD], partitions: int | None
    ) -> None:
        super().__init__(prev, lambda t, rdd: func(rdd))
        self.partitions = partitions
        # put in by the plan to bring a side into another shuffle's topic: always through Kafka
        self.co_partitions = False
        self._keyed_by, self._keying = SHUFFLED, "own"


class _Transformed2DStream(DStream):
    """PySpark's PythonTransformed2DStream: a missing side is an empty batch."""

    def __init__(self, a: DStream, b: DStream, func: Callable[..., Any]) -> None:
        super().__init__(a._ssc, [a, b], a._slide_ms)
        self._func = func

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        a = self._parents[0]._get_or_compute(bt) or self._ctx.emptyRDD()
        b = self._parents[1]._get_or_compute(bt) or self._ctx.emptyRDD()
        return _as_batch(self._func(bt.dt, a, b))


def _require_same_slide(dstreams: list[DStream]) -> int:
    slides = {d._slide_ms for d in dstreams}
    if len(slides) > 1:
        raise ValueError("All DStreams should have same slide duration")
    return slides.pop()


class MultiTransformedDStream(DStream):
    """``ssc.transform``: every parent must have a batch; the function gets the list."""

    def __init__(self, dstreams: list[DStream], func: Callable[..., Any]) -> None:
        super().__init__(dstreams[0]._ssc, dstreams, _require_same_slide(dstreams))
        self._func = with_time(func, 1, "transformFunc")

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        rdds = []
        for parent in self._parents:
            rdd = parent._get_or_compute(bt)
            if rdd is None:
                raise RuntimeError(f"Couldn't generate RDD from parent at time {bt.ms} ms")
            rdds.append(rdd)
        result = _as_batch(self._func(bt.dt, rdds))
        if result is None:
            raise RuntimeError("transform function returned None")
        return result


class UnionDStream(DStream):
    """``ssc.union``: partitions of all parents, in order."""

    def __init__(self, dstreams: list[DStream]) -> None:
        super().__init__(dstreams[0]._ssc, dstreams, _require_same_slide(dstreams))

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        rdds = []
        for parent in self._parents:
            rdd = parent._get_or_compute(bt)
            if rdd is None:
                raise RuntimeError(
                    f"Could not generate RDD from a parent for unifying at time {bt.ms} ms"
                )
            rdds.append(rdd)
        return self._ctx.union(rdds)


class _SliceLog:
    """A parent's batches that windows over it still need, mirrored in the store.

    Keyed logs (the per-batch reduced values of reduceByKeyAndWindow) hold one field per key:
    ``pickle(key) -> pickle((partition, position, value))``; record logs hold one field per
    partition plus the partition count, since raw records cannot be pre-aggregated. Under Kafka
    inputs there is one log per task, loaded from the store when the task first appears.

    A slice lives until batch time leaves it out of every window, never by wall-clock: an
    index map lists the stored slices' batch times, so whoever loads the log finds all of them
    (also those a pause or a downtime left behind) and drops each once no window needs it. A
    TTL would let a slice expire during a long outage or pause while an incremental window
    still has to subtract it, and the window would drift for ever (issue 9, hole 5).
    """

    _COUNT = b"n"

    def __init__(
        self, stream: DStream, keep_ms: int, keyed_partitions: int | None, op: str
    ) -> None:
        self.stream = stream
        self.keep_ms = keep_ms
        self.keyed_partitions = keyed_partitions
        self.op = op
        self.entries: dict[int, dict[bytes, bytes] | None] = {}
        self.task_entries: dict[Task, dict[int, dict[bytes, bytes] | None]] = {}

    def _encode(self, partitions: list[list[Any]]) -> dict[bytes, bytes]:
        if self.keyed_partitions is not None:
            fields: dict[bytes, bytes] = {}
            pos = 0
            for part_idx, part in enumerate(partitions):
                for k, v in part:
                    fields[dumps(k)] = dumps((part_idx, pos, v))
                    pos += 1
            return fields
        fields = {self._COUNT: str(len(partitions)).encode()}
        for i, part in enumerate(partitions):
            fields[b"p%d" % i] = dumps(part)
        return fields

    def _decode(self, fields: dict[bytes, bytes], task: Task | None) -> BatchRDD:
        ctx = self.stream._ctx
        parts: list[list[Any]]
        if self.keyed_partitions is not None:
            items = [(loads(kb), *loads(vb)) for kb, vb in fields.items()]
            items.sort(key=lambda item: item[2])
            # a task's keyed batch is one partition (shuffles group per task)
            base = self.keyed_partitions if task is None else 1
            n = max([base] + [p + 1 for _, p, _, _ in items])
            parts = [[] for _ in range(n)]
            for k, p, _, v in items:
                parts[p].append((k, v))
        else:
            count = int(fields.get(self._COUNT, b"0"))
            parts = [loads(fields[b"p%d" % i]) for i in range(count)]
        return BatchRDD(parts, ctx, None if task is None else [task] * len(parts))

    def _write(self, t: int, task: Task | None, fields: dict[bytes, bytes]) -> None:
        if fields:
            job = self.stream._job
            name = job.slice_name(self.stream._id, t, task)
            for k, v in fields.items():
                job.writes.set(name, k, v)
            job.writes.set(job.slice_index_name(self.stream._id, task), str(t).encode(), b"1")

    def _load(self, t: int, task: Task | None) -> dict[int, dict[bytes, bytes] | None]:
        """Every stored slice, also those older than a window at ``t`` needs: an incremental
        window resumed after a gap subtracts the slices its previous value holds (``expire``
        drops the old ones once the batch is done)."""
        job = self.stream._job
        index = job.slice_index_name(self.stream._id, task)
        stored = {int(x) for x in job.store.load_map(index)}
        # slices written before the index existed are found by time, as they used to be
        needed = set(self.stream._valid_times(t - self.keep_ms, t)) | stored
        entries: dict[int, dict[bytes, bytes] | None] = {}
        for old in sorted(needed):
            fields = job.store.load_map(job.slice_name(self.stream._id, old, task))
            entries[old] = fields if fields or self.keyed_partitions is not None else None
        return entries

    def record(self, t: int, rdd: BatchRDD | None) -> None:
        if self.stream._task_scoped:
            self._record_tasks(t, rdd)
            return
        if rdd is None:
            self.entries[t] = None
            return
        fields = self._encode(rdd.partitions)
        self.entries[t] = fields
        self._write(t, None, fields)

    def _record_tasks(self, t: int, rdd: BatchRDD | None) -> None:
        if rdd is None:
            for entries in self.task_entries.values():
                entries[t] = None
            return
        groups = _task_groups(rdd, self.op)
        encoded = [(task, self._encode(parts)) for task, parts in groups]
        for task, fields in encoded:
            self._open(task, t)[t] = fields
            self._write(t, task, fields)

    def _open(self, task: Task, t: int) -> dict[int, dict[bytes, bytes] | None]:
        """The task's slices before ``t`` that a window may still need, read on first sight."""
        entries = self.task_entries.get(task)
        if entries is None:
            entries = {x: f for x, f in self._load(t, task).items() if x < t}
            self.task_entries[task] = entries
        return entries

    def tasks_of(self, rdd: BatchRDD | None) -> list[Task]:
        """The tasks a window at this batch covers: those of the parent's batch (the owned)."""
        if rdd is None:
            return list(self.task_entries)
        return [task for task in dict.fromkeys(rdd.tasks) if task is not None]

    def get(self, t: int, task: Task | None = None) -> BatchRDD | None:
        entries = self.entries if task is None else self.task_entries.get(task, {})
        fields = entries.get(t)
        if fields is None:
            return None
        return self._decode(fields, task)

    def get_any(self, t: int) -> BatchRDD | None:
        """The batch at ``t`` whatever its scope (all known tasks' under Kafka inputs)."""
        if not self.stream._task_scoped:
            return self.get(t)
        rdds = [r for task in self.task_entries if (r := self.get(t, task)) is not None]
        return self.stream._ctx.union(rdds) if rdds else None

    def restore(self, last_ms: int) -> None:
        self.entries.update(self._load(last_ms, None))

    def expire(self, t: int) -> None:
        """Drop the slices no window at ``t`` or later needs. A task's slices go by its own
        newest batch: past a shuffle through Kafka, one instance's downstream tasks release
        batches at their own pace, and a task behind still subtracts the slices the others
        are done with."""
        job = self.stream._job
        scopes: list[tuple[Task | None, dict[int, dict[bytes, bytes] | None]]] = [
            (None, self.entries),
            *self.task_entries.items(),
        ]
        for task, entries in scopes:
            now = t if task is None else min(t, max(entries, default=t))
            for old in [x for x in entries if x <= now - self.keep_ms]:
                if entries.pop(old):
                    job.writes.map_drops.add(job.slice_name(self.stream._id, old, task))
                    job.writes.delete(
                        job.slice_index_name(self.stream._id, task), str(old).encode()
                    )

    def forget(self, task: Task) -> None:
        self.task_entries.pop(task, None)


class _WindowedDStream(DStream):
    """Spark's WindowedDStream: the union of the parent's batches in ``(t - window, t]``."""

    def __init__(
        self,
        parent: DStream,
        window_ms: int,
        slide_ms: int,
        keyed: int | None = None,
        op: str = "window",
    ) -> None:
        super().__init__(parent._ssc, [parent], slide_ms)
        self._window_ms = window_ms
        self._log = parent._keep_slices(window_ms + slide_ms, keyed, op)
        self._keying = "copy"
        self._derive_keying()

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        parent = self._parents[0]
        current = parent._get_or_compute(bt)
        times = parent._valid_times(bt.ms - self._window_ms, bt.ms)
        if self._task_scoped:
            tasks = self._log.tasks_of(current)
            return self._ctx.union(
                [
                    rdd
                    for t in times
                    for task in tasks
                    if (rdd := self._log.get(t, task)) is not None
                ]
            )
        rdds = [rdd for t in times if (rdd := self._log.get(t)) is not None]
        return self._ctx.union(rdds)


class _KeyedState:
    """A keyed batch kept in the store across batches, one field per key.

    Fields are ``pickle(key) -> pickle((partition, seq, value))``. ``seq`` is given to a key when
    it first appears and kept after, which reproduces PySpark's order after a restart: keys keep
    their relative order from batch to batch and new keys come after them in their partition.
    Only keys whose bytes changed are written. With a ``task`` the state is that Kafka
    partition's: its map and meta fields are the task's shard keys.
    """

    def __init__(self, stream: DStream, partitions: int, task: Task | None = None) -> None:
        self.stream = stream
        self.partitions = partitions
        self.task = task
        self.fields: dict[bytes, bytes] = {}
        self.seqs: dict[bytes, int] = {}
        self.next_seq = 0
        self.present = False

    @property
    def _name(self) -> str:
        return self.stream._job.state_name(self.stream._id, self.task)

    def _meta_field(self, what: str) -> str:
        return f"s{self.stream._id}:{what}"

    def restore(self, meta: dict[str, int]) -> bool:
        """Load the state; False when this stream has never saved any."""
        if self._meta_field("next_seq") not in meta:
            return False
        self.next_seq = meta[self._meta_field("next_seq")]
        self.fields = self.stream._job.store.load_map(self._name)
        # Stored keys mean a saved batch (``save(None)`` leaves none); state written before
        # ``present`` reliably reached the store must not be taken for absent.
        self.present = bool(meta.get(self._meta_field("present"), 0)) or bool(self.fields)
        self.seqs = {k: loads(v)[1] for k, v in self.fields.items()}
        return True

    def to_rdd(self) -> BatchRDD:
        items = [(loads(kb), *loads(vb)) for kb, vb in self.fields.items()]
        items.sort(key=lambda item: item[2])
        n = max([self.partitions] + [p + 1 for _, p, _, _ in items])
        parts: list[list[Any]] = [[] for _ in range(n)]
        for k, p, _, v in items:
            parts[p].append((k, v))
        tasks: list[Task | None] | None = None if self.task is None else [self.task] * n
        return BatchRDD(parts, self.stream._ctx, tasks)

    def save(self, rdd: BatchRDD | None) -> None:
        job = self.stream._job
        name = self._name
        new_fields: dict[bytes, bytes] = {}
        new_seqs: dict[bytes, int] = {}
        for part_idx, part in enumerate(rdd.partitions if rdd is not None else []):
            for k, v in part:
                kb = dumps(k)
                seq = self.seqs.get(kb)
                if seq is None:
                    seq = self.next_seq
                    self.next_seq += 1
                vb = dumps((part_idx, seq, v))
                new_fields[kb] = vb
                new_seqs[kb] = seq
                if self.fields.get(kb) != vb:
                    job.writes.set(name, kb, vb)
        for kb in self.fields:
            if kb not in new_fields:
                job.writes.delete(name, kb)
        self.fields, self.seqs = new_fields, new_seqs
        self.present = rdd is not None
        job.set_meta(self._meta_field("next_seq"), self.next_seq, self.task)
        job.set_meta(self._meta_field("present"), int(self.present), self.task)


def _task_states(stream: DStream, cache: dict[Task, _KeyedState], task: Task) -> _KeyedState:
    """A task's keyed state, read from the store the first time the task appears."""
    state = cache.get(task)
    if state is None:
        state = _KeyedState(stream, 1, task)
        state.restore(stream._job.meta(task))
        cache[task] = state
    return state


class _ReducedWindowedDStream(DStream):
    """Spark's PythonReducedWindowedDStream, including its rule to recompute small windows.

    With ``window >= 5 * slide`` the previous window's value is updated incrementally (inverse
    over slices that left, reduce over slices that came), so keys reduced to the neutral value
    stay unless ``filterFunc`` drops them; smaller windows are reduced from their slices.
    """

    def __init__(
        self,
        reduced: DStream,
        func: Callable[[Any, Any], Any],
        invFunc: Callable[[Any, Any], Any],
        filterFunc: Callable[[Any], Any] | None,
        window_ms: int,
        slide_ms: int,
        partitions: int,
        op: str = "reduceByKeyAndWindow",
    ) -> None:
        super().__init__(reduced._ssc, [reduced], slide_ms)
        self._keying = "copy"
        self._derive_keying()
        self._func = func
        self._inv = invFunc
        self._filter = filterFunc
        self._window_ms = window_ms
        self._n = partitions
        self._log = reduced._keep_slices(window_ms + slide_ms, partitions, op)
        self._incremental = window_ms >= slide_ms * 5
        self._prev = _KeyedState(self, partitions)
        self._prev_ms: int | None = None
        self._task_prev: dict[Task, _KeyedState] = {}
        self._task_prev_ms: dict[Task, int | None] = {}
        self._forced = self._incremental

    def _restore(self, last_ms: int | None, meta: dict[str, int]) -> None:
        super()._restore(last_ms, meta)
        if self._incremental and self._prev.restore(meta):
            self._prev_ms = meta.get(f"s{self._id}:prev_ms")

    def _forget_task(self, task: Task) -> None:
        super()._forget_task(task)
        self._task_prev.pop(task, None)
        self._task_prev_ms.pop(task, None)

    def _reduce(self, a: BatchRDD | None, b: BatchRDD) -> BatchRDD:
        b = b.reduceByKey(self._func, self._n)
        r = a.union(b).reduceByKey(self._func, self._n) if a is not None else b
        if self._filter is not None:
            r = r.filter(self._filter)
        return r

    def _inv_reduce(self, a: BatchRDD, b: BatchRDD) -> BatchRDD:
        inv = self._inv
        b = b.reduceByKey(self._func, self._n)
        joined = a.leftOuterJoin(b, self._n)
        return joined.mapValues(lambda kv: inv(kv[0], kv[1]) if kv[1] is not None else kv[0])

    def _slices(self, after: int, upto: int, task: Task | None = None) -> list[BatchRDD]:
        parent = self._parents[0]
        return [
            r for t in parent._valid_times(after, upto) if (r := self._log.get(t, task)) is not None
        ]

    def _window(
        self, t: int, previous: BatchRDD | None, prev_ms: int | None, task: Task | None
    ) -> BatchRDD | None:
        w, s = self._window_ms, self._slide_ms
        resumable = prev_ms is not None and prev_ms < t and (t - prev_ms) % s == 0
        if self._incremental and previous is not None and resumable:
            assert prev_ms is not None
            # Spark's step from the window at t - s, generalised to a previous window further
            # back (batch times not run here: a restart after downtime, a partition that moved):
            # as if the batches between had run empty, which keeps keys that reached the
            # neutral value, as Spark's incremental window does. Slices both added and
            # subtracted (in (prev_ms, t - w]) cancel out and are skipped.
            old = self._slices(prev_ms - w, min(prev_ms, t - w), task)
            subtracted = self._inv_reduce(previous, self._ctx.union(old)) if old else previous
            new = self._slices(max(prev_ms, t - w), t, task)
            if new:
                return self._reduce(subtracted, self._ctx.union(new))
            # Spark always has new batches here (empty ones too) and filters after them
            return subtracted.filter(self._filter) if self._filter is not None else subtracted
        current = self._slices(t - w, t, task)
        return self._reduce(None, self._ctx.union(current)) if current else None

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        parent_rdd = self._parents[0]._get_or_compute(bt)
        if self._task_scoped:
            return self._compute_tasks(bt, parent_rdd)
        t = bt.ms
        previous = self._prev.to_rdd() if self._prev.present else None
        result = self._window(t, previous, self._prev_ms, None)
        if self._incremental:
            self._prev.save(result)
            self._prev_ms = t
            self._job.set_meta(f"s{self._id}:prev_ms", t)
        return result

    def _compute_tasks(self, bt: BatchTime, parent_rdd: BatchRDD | None) -> BatchRDD | None:
        t = bt.ms
        results: list[tuple[Task, BatchRDD | None]] = []
        for task in self._log.tasks_of(parent_rdd):
            previous: BatchRDD | None = None
            prev_ms: int | None = None
            if self._incremental:
                state = _task_states(self, self._task_prev, task)
                if task not in self._task_prev_ms:
                    self._task_prev_ms[task] = self._job.meta(task).get(f"s{self._id}:prev_ms")
                previous = state.to_rdd() if state.present else None
                prev_ms = self._task_prev_ms[task]
            results.append((task, self._window(t, previous, prev_ms, task)))
        # saved only once every task's window is computed: a failure leaves all state as it was
        if self._incremental:
            for task, result in results:
                self._task_prev[task].save(result)
                self._task_prev_ms[task] = t
                self._job.set_meta(f"s{self._id}:prev_ms", t, task)
        rdds = [r for _, r in results if r is not None]
        return self._ctx.union(rdds) if rdds else None


class _StateDStream(DStream):
    """Spark's PythonStateDStream with PySpark's updateStateByKey reduce function."""

    def __init__(
        self,
        parent: DStream,
        updateFunc: Callable[[list[Any], Any], Any],
        partitions: int,
        initial: BatchRDD | None,
    ) -> None:
        super().__init__(parent._ssc, [parent], parent._slide_ms)
        self._update = updateFunc
        self._n = partitions
        self._initial = initial
        # past a shuffle through Kafka: the repartition partition of a key, which says which
        # task's first batch starts from which keys of ``initial`` (service/streaming/shuffle.py)
        self.initial_partition: Callable[[Any], int] | None = None
        self._state = _KeyedState(self, partitions)
        self._task_state: dict[Task, _KeyedState] = {}
        self._forced = True
        self._keyed_by, self._keying = SHUFFLED, "own"

    def _restore(self, last_ms: int | None, meta: dict[str, int]) -> None:
        super()._restore(last_ms, meta)
        self._state.restore(meta)

    def _forget_task(self, task: Task) -> None:
        super()._forget_task(task)
        self._task_state.pop(task, None)

    def _reduce(self, a: BatchRDD | None, b: BatchRDD) -> BatchRDD:
        update, n = self._update, self._n
        if a is None:
            g = b.groupByKey(n).mapValues(lambda vs: (list(vs), None))
        else:
            g = a.cogroup(b.partitionBy(n), n)
            g = g.mapValues(lambda ab: (list(ab[1]), next(iter(ab[0])) if len(ab[0]) else None))
        state = g.mapValues(lambda vs_s: update(vs_s[0], vs_s[1]))
        return state.filter(lambda kv: kv[1] is not None)

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        if self._task_scoped:
            return self._compute_tasks(bt)
        last = self._state.to_rdd() if self._state.present else None
        rdd = self._parents[0]._get_or_compute(bt)
        if rdd is None:
            return last
        result = self._reduce(last if last is not None else self._initial, rdd)
        self._state.save(result)
        return result

    def _compute_tasks(self, bt: BatchTime) -> BatchRDD | None:
        rdd = self._parents[0]._get_or_compute(bt)
        if rdd is None:
            known = [s.to_rdd() for s in self._task_state.values() if s.present]
            return self._ctx.union(known)
        groups = _task_groups(rdd, "updateStateByKey")
        if self._initial is not None and self.initial_partition is None:
            raise ValueError(
                "updateStateByKey: initialRDD cannot be used when the job reads Kafka without "
                "DSTREAMS_SHUFFLE=kafka: state is kept per Kafka partition and an initial RDD's "
                "keys belong to none (with it, each key's state starts in the task its key "
                "shuffles to)"
            )
        results: list[tuple[_KeyedState, BatchRDD]] = []
        for task, parts in groups:
            state = _task_states(self, self._task_state, task)
            last = state.to_rdd() if state.present else self._initial_of(task)
            batch = BatchRDD(parts, self._ctx, [task] * len(parts))
            results.append((state, self._reduce(last, batch)))
        # saved only once every task's update ran: a failure leaves all state as it was
        for state, result in results:
            state.save(result)
        return self._ctx.union([result for _, result in results])

    def _initial_of(self, task: Task) -> BatchRDD | None:
        """The initial RDD's pairs whose key shuffles to ``task``: its state before its first
        batch, as Spark starts the first batch from the whole initial RDD."""
        where = self.initial_partition
        if self._initial is None or where is None:
            return None
        pairs = [kv for kv in self._initial.collect() if where(kv[0]) == task[1]]
        return BatchRDD([pairs], self._ctx, [task])


class _OutputOp:
    """foreachRDD: runs the function on the parent's batch when the parent has one."""

    # the engine's own output ops (a shuffle's writer) are not the job's: no listener info
    internal = False

    def __init__(self, parent: DStream, func: Callable[..., Any], name: str = "foreachRDD") -> None:
        self.parent = parent
        self.func = func
        self.name = name

    def run(self, bt: BatchTime) -> None:
        try:
            rdd = self.parent._get_or_compute(bt)
            if rdd is not None:
                self._deliver(bt, rdd)
        except Exception:
            # a failed run's transactional writes must not reach a later, successful run's commit
            self.parent._ssc._outputFailed(bt.ms)
            raise

    def _deliver(self, bt: BatchTime, rdd: BatchRDD) -> None:
        self.func(bt.dt, rdd)
