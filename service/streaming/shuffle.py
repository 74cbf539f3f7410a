"""Keyed shuffles across instances: the engine's side of ``service.shuffle``.

With ``DSTREAMS_SHUFFLE=kafka``, ``plan`` rewrites the graph at start: a keyed shuffle (a
``_ShuffledDStream`` or ``updateStateByKey``) whose parent is not partitioned by key gets

- a ``RepartitionSink`` on the parent: each ``(key, value)`` pair goes to the partition of
  ``<job>-repartition-<n>`` its key hashes to (murmur2), in the batch's one transaction with
  the input offsets, and every upstream task of the batch then marks every partition "through
  this batch";
- a ``ShuffleInputDStream`` in its place: a ``KafkaSource`` on that topic (its own consumer
  group, read_committed), whose partitions are the downstream tasks, with their state and
  positions in the ledger as any Kafka input's. Per task, ``BatchAligner`` releases each
  upstream batch once every upstream task is through it; the alignment state is written with
  the task's ledger commit.

The downstream stage then runs the released batches at their own batch times
(``DStreamGraph._run_later_stages``), so its per-batch results equal Spark's. Without the
setting a Kafka job groups within each input partition, and says so at start.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka.admin import AdminClient

from service.commit.batch import GroupOffsets
from service.shuffle.alignment import BatchAligner, ShuffleRecord
from service.shuffle.codec import (
    data_record,
    decode,
    decode_state,
    encode_state,
    marker_record,
    partition_for,
)
from service.shuffle.topics import Purger, ensure_topic, repartition_topic
from service.sinks.kafka import KafkaSink
from service.sinks.transaction import connection_settings
from service.sources.kafka import KafkaRecord, KafkaSource
from service.streaming.dstream import (
    KAFKA_KEYED,
    SHUFFLED,
    BatchTime,
    DStream,
    InputDStream,
    _OutputOp,
    _ShuffledDStream,
    _StateDStream,
)
from service.streaming.listener import StreamInputInfo
from service.streaming.rdd import BatchRDD, Task

if TYPE_CHECKING:
    from service.streaming.context import StreamingContext

log = logging.getLogger(__name__)

_ALIGN_FIELD = b"state"
_ADMIN_TIMEOUT_S = 30.0


class ShuffleInputDStream(InputDStream):
    """The downstream side of one shuffle: released upstream batches, one partition per task."""

    def __init__(
        self, ssc: StreamingContext, source: KafkaSource, aligner: BatchAligner, stage: int
    ) -> None:
        super().__init__(ssc, source)
        self.aligner = aligner
        self._stage = stage
        self._keyed_by, self._keying = SHUFFLED, "own"
        # batch time -> (payloads, task) per task that released it, in the batch taken last
        self._released: dict[int, list[tuple[list[Any], Task]]] = {}

    def _take(self, t: int) -> int:
        source = self.source
        assert isinstance(source, KafkaSource)
        job = self._job
        self._released = {}
        entries = source.take_tasks(t)
        self.last_tasks = [task for task, _ in entries]
        records = 0
        for task, shuffled in entries:
            name = job.shard(task).key("shuffle", "align")
            state = decode_state(job.store.load_map(name).get(_ALIGN_FIELD))
            release = self.aligner.align(state, shuffled)
            if release.state != state:
                job.writes.set(name, _ALIGN_FIELD, encode_state(release.state))
            if release.late:
                log.warning(
                    "shuffle task %s: %d records of batches already released, processed with "
                    "batch %d ms",
                    task,
                    release.late,
                    release.batches[0][0],
                )
            for batch_ms, payloads in release.batches:
                self._released.setdefault(batch_ms, []).append((payloads, task))
                records += len(payloads)
        return records

    def released_times(self) -> list[int]:
        return sorted(self._released)

    def input_info(self, taken: int) -> StreamInputInfo | None:
        return None  # the engine's own input: its records are the job's, counted once already

    def released_tasks(self, t: int) -> list[Task]:
        """The tasks that released batch time ``t`` in the batch taken last."""
        return [task for _, task in self._released.get(t, ())]

    def _compute(self, bt: BatchTime) -> BatchRDD | None:
        parts = self._released.get(bt.ms)
        if parts is None:
            return None
        return BatchRDD([p for p, _ in parts], self._ctx, [task for _, task in parts])


class RepartitionSink(KafkaSink):
    """The upstream side of one shuffle: pairs to their key's partition, then the markers.

    A ``KafkaSink`` so that it writes in the batch's shared transaction and skips what a replay
    already published. Markers are written at ``precommit``, after every pair of the batch: in
    the first stage for every upstream task of the batch (written to or not), in a later stage
    (a shuffle after a shuffle) for each batch time it wrote, by the tasks that released it.
    """

    def __init__(
        self,
        template: KafkaSource,
        topic: str,
        partitions: int,
        tag: int,
        upstream_at: Callable[[int], list[Task]],
        first_stage: bool = True,
    ) -> None:
        shared = connection_settings(template.consumer_config)
        super().__init__(str(shared.pop("bootstrap.servers")), topic, producer_config=shared)
        self.partitions = partitions
        self.tag = tag
        self._upstream_at = upstream_at
        self._first_stage = first_stage
        self._written: dict[int, list[Task]] = {}
        # the batches and tasks this sink marks: one sink per topic marks for all of the
        # topic's writers (``plan``), so no marker is written twice
        self.marked: Callable[[int], dict[int, list[Task]]] | None = self.marks

    def begin(self, batch_ms: int) -> None:
        super().begin(batch_ms)
        self._written = {}

    def write_batch(self, batch_ms: int, rdd: BatchRDD) -> None:
        """The pairs of ``rdd``, computed for batch time ``batch_ms`` (in a later stage, an
        upstream batch released in this one)."""
        transaction = self._transaction
        if transaction is None:
            raise RuntimeError("a shuffle through Kafka needs the job's batch transaction")
        owned = self._upstream_at(batch_ms)
        for task, part in zip(rdd.tasks, rdd.partitions, strict=True):
            # a mixed partition (e.g. a global aggregation's pairs) is written on behalf of a
            # task of this batch: its marker follows in the same transaction all the same
            origin = task if task is not None else (owned[0] if owned else None)
            if origin is None or origin in self._skipped:
                continue
            for pair in part:
                if not (isinstance(pair, tuple) and len(pair) == 2):
                    raise TypeError(
                        f"a keyed shuffle needs (key, value) pairs, got {type(pair).__name__}"
                    )
                key, value, headers = data_record(pair[0], (self.tag, pair), batch_ms, origin)
                partition = partition_for(pair[0], self.partitions)
                transaction.produce(self.topic, key, value, headers, partition)
        if not self._first_stage:
            self._written[batch_ms] = owned

    def marks(self, batch_ms: int) -> dict[int, list[Task]]:
        """Per batch time, the upstream tasks through it once this batch commits."""
        if self._first_stage:
            return {batch_ms: self._upstream_at(batch_ms)}
        return dict(self._written)

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        transaction = self._transaction
        if transaction is None:
            return
        marks = self.marked(batch_ms) if self.marked is not None else {}
        for through in sorted(marks):
            for origin in dict.fromkeys(marks[through]):
                if origin in self._skipped:
                    continue  # the crashed owner marked this batch's records as it published them
                headers = marker_record(through, origin)
                for partition in range(self.partitions):
                    transaction.produce(self.topic, None, None, headers, partition)
        super().precommit(batch_ms, groups)


class _RepartitionOp(_OutputOp):
    """The output op of a ``RepartitionSink``: it needs the batch time in ms."""

    internal = True

    def _deliver(self, bt: BatchTime, rdd: BatchRDD) -> None:
        self.func(bt.ms, rdd)


def _decode(record: KafkaRecord) -> ShuffleRecord:
    return decode(record.value, record.headers or ())


def _lineage(stream: DStream) -> list[DStream]:
    """The stream and every stream its batches are computed from."""
    seen: dict[int, DStream] = {}
    todo = [stream]
    while todo:
        s = todo.pop()
        if s._id in seen:
            continue
        seen[s._id] = s
        todo.extend(s._parents)
    return list(seen.values())


def _kafka_inputs(stream: DStream) -> list[InputDStream]:
    """The inputs a stream's batches come from."""
    return [s for s in _lineage(stream) if isinstance(s, InputDStream)]


def _partitions_of(admin: AdminClient, topics: Sequence[str]) -> list[Task]:
    metadata = admin.list_topics(timeout=_ADMIN_TIMEOUT_S)
    tasks: list[Task] = []
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ValueError(f"input topic {topic!r} not found: a shuffle needs its partitions")
        tasks.extend((topic, p) for p in sorted(found.partitions))
    return tasks


def is_keyed_shuffle(stream: DStream) -> bool:
    return isinstance(stream, _ShuffledDStream | _StateDStream)


def needs_shuffle(stream: DStream) -> bool:
    """A keyed shuffle whose parent's records of one key may be in several partitions (or one
    the plan put in to co-partition a side with another: ``_shuffle_unshuffled_sides``)."""
    if isinstance(stream, _ShuffledDStream) and stream.co_partitions:
        return True
    return is_keyed_shuffle(stream) and stream._parents[0]._keyed_by is None


def wanted_shuffles(ssc: StreamingContext) -> list[DStream]:
    """The shuffles to route through Kafka: those that need one, of streams read from Kafka
    (a task source of another kind, as tests use, keeps the in-partition path)."""
    return [s for s in list(ssc._graph.streams) if needs_shuffle(s) and _reads_kafka(s._parents[0])]


def _reads_kafka(stream: DStream) -> bool:
    """Some of ``stream``'s batches come from a Kafka input."""
    return any(isinstance(i.source, KafkaSource) for i in _kafka_inputs(stream))


def rely_on_kafka_keys(ssc: StreamingContext) -> None:
    """The Kafka inputs whose keys a keyed shuffle groups within each partition check, now and
    then, that their records have keys: records without one are spread over the partitions by
    the producer, and grouping them within each partition is not Spark's answer."""
    for stream in ssc._graph.streams:
        keyed_by = stream._parents[0]._keyed_by if is_keyed_shuffle(stream) else None
        if keyed_by is None or not keyed_by.startswith(KAFKA_KEYED):
            continue
        for inp in _kafka_inputs(stream):
            if inp._keyed_by == keyed_by:
                inp.relied_on_keys.append(_operator(stream))


@dataclass
class _Step:
    """One shuffle to route through Kafka: its stage, topic and upstream tasks."""

    stream: DStream
    stage: int  # 1 past the inputs, one more past each shuffle before it
    template: KafkaSource  # the connection settings its clients copy
    upstream: list[Task]
    partitions: int
    topic: str = ""


def _nearest(parent: DStream, wanted: set[int]) -> tuple[list[DStream], list[InputDStream]]:
    """The shuffles and the inputs ``parent``'s batches come from, not looking past a shuffle."""
    shuffles: list[DStream] = []
    inputs: list[InputDStream] = []
    seen: set[int] = set()
    todo = [parent]
    while todo:
        s = todo.pop()
        if s._id in seen:
            continue
        seen.add(s._id)
        if id(s) in wanted:
            shuffles.append(s)
        elif isinstance(s, InputDStream):
            inputs.append(s)
        else:
            todo.extend(s._parents)
    return shuffles, inputs


def _steps(ssc: StreamingContext, admin: AdminClient, wanted: list[DStream]) -> list[_Step]:
    """Each shuffle's stage, upstream tasks and topic; raises for what is not built."""
    wanted_ids = {id(s) for s in wanted}
    steps: dict[int, _Step] = {}
    topics: dict[tuple[int, int], str] = {}  # (stage, partitions) -> topic
    for stream in wanted:  # construction order: a shuffle's upstream shuffles come first
        before, inputs = _nearest(stream._parents[0], wanted_ids)
        if before and inputs:
            raise NotImplementedError(
                f"{type(stream).__name__} (stream {stream._id}) combines a shuffle's result with "
                "an input's records not shuffled (e.g. a join of a reduceByKey's result with a "
                "topic): not built yet (issue 10); shuffle the input's side first too "
                "(e.g. its own reduceByKey or groupByKey), or run with DSTREAMS_SHUFFLE=partition"
            )
        if before:
            feeding = {(steps[id(b)].stage, steps[id(b)].topic) for b in before}
            if len(feeding) > 1:
                raise ValueError(
                    f"stream {stream._id} ({type(stream).__name__}) shuffles the results of "
                    "shuffles with different numPartitions or stages: give them one numPartitions"
                )
            first = steps[id(before[0])]
            stage, template = first.stage + 1, first.template
            upstream = [(first.topic, p) for p in range(first.partitions)]
        else:
            sources = [i.source for i in inputs if isinstance(i.source, KafkaSource)]
            if not sources or len(sources) != len(inputs):
                raise ValueError("a shuffle through Kafka needs Kafka inputs only")
            stage, template = 1, sources[0]
            upstream = _partitions_of(admin, sorted({t for s in sources for t in s.topics}))
        declared = stream.partitions if isinstance(stream, _ShuffledDStream) else None
        partitions = declared if declared is not None else len(upstream)
        # shuffles of one stage into one partition count share a topic, each parent's pairs
        # tagged: co-partitioned and released together, so a join of their results meets
        # within each task at each batch time
        group = (stage, partitions)
        if group not in topics:
            topics[group] = repartition_topic(ssc.jobName, len(topics))
        steps[id(stream)] = _Step(stream, stage, template, upstream, partitions, topics[group])
    return list(steps.values())


def _effective_partitions(admin: AdminClient, shuffle: DStream) -> int:
    """A first-stage shuffle's partition count: ``numPartitions``, else its inputs'."""
    declared = shuffle.partitions if isinstance(shuffle, _ShuffledDStream) else None
    if declared is not None:
        return declared
    sources = [i.source for i in _kafka_inputs(shuffle._parents[0])]
    topics = sorted({t for s in sources if isinstance(s, KafkaSource) for t in s.topics})
    return len(_partitions_of(admin, topics))


def _shuffle_unshuffled_sides(ssc: StreamingContext, admin: AdminClient) -> None:
    """A stream merging a shuffle's result with records not shuffled (a join of a
    ``reduceByKey``'s result with a topic's pairs) gets the other side shuffled too, into the
    first side's partition count, so that both come from one repartition topic: Spark shuffles
    both sides of such a join. Idempotent: a plan taken again finds nothing left to do."""
    graph = ssc._graph
    for merge in list(graph.streams):
        if len(merge._parents) < 2:
            continue
        wanted = {id(s) for s in wanted_shuffles(ssc)}
        sides = [_nearest(parent, wanted) for parent in merge._parents]
        shuffled = [before[0] for before, inputs in sides if before and not inputs]
        if not shuffled or all(before for before, _ in sides):
            continue
        first = shuffled[0]
        if _nearest(first._parents[0], wanted)[0]:
            continue  # past a second shuffle: not built, refused by the plan
        partitions = _effective_partitions(admin, first)
        for index, (before, inputs) in enumerate(sides):
            if inputs and not before:
                side = _ShuffledDStream(merge._parents[index], lambda rdd: rdd, partitions)
                side.co_partitions = True
                merge._parents[index] = side
        for stream in graph.streams:
            stream._derive_keying()


def _gather_for_functions(ssc: StreamingContext) -> None:
    """A job's RDD function (``transform``, ``transformWith``, ``StreamingContext.transform``)
    on records not partitioned by key sees the whole batch, as in Spark: its parents' records
    go through a one-partition repartition topic first, so one task computes the function for
    the batch (a shuffle inside it, ``distinct``, ``join``, ``sortBy``, ``zipWithIndex``, then
    covers every record). Idempotent."""
    for stream in _to_gather(ssc):
        for index, parent in enumerate(stream._parents):
            boxed = parent._narrow(lambda rdd: rdd.map(_boxed), keeps_keys=False)
            gathered = _ShuffledDStream(boxed, lambda rdd: rdd, 1)
            gathered.co_partitions = True
            stream._parents[index] = gathered._narrow(
                lambda rdd: rdd.map(_unboxed), keeps_keys=False
            )
        stream._gathered = True
        log.info(
            "job %s: %s (stream %d) sees whole batches: its records go through a one-partition "
            "repartition topic first",
            ssc.jobName,
            _FUNCTION_OPERATORS.get(type(stream).__name__, type(stream).__name__),
            stream._id,
        )
    for stream in ssc._graph.streams:
        stream._derive_keying()


def _to_gather(ssc: StreamingContext) -> list[DStream]:
    """The job's RDD functions on Kafka records not partitioned by key, not gathered yet."""
    return [
        s
        for s in list(ssc._graph.streams)
        if s._user_rdd_function
        and not s._gathered
        # on records of one key per task, keyed RDD shuffles inside are right as they are
        and any(p._keyed_by is None for p in s._parents)
        and _reads_kafka(s)
    ]


def plan_needed(ssc: StreamingContext) -> bool:
    """Something to route through Kafka: a shuffle, or a function to gather for."""
    return bool(wanted_shuffles(ssc) or _to_gather(ssc))


def _boxed(record: Any) -> tuple[int, Any]:
    return (0, record)


def _unboxed(pair: tuple[int, Any]) -> Any:
    return pair[1]


def plan(ssc: StreamingContext, admin: AdminClient) -> list[str]:
    """Route every shuffle that needs it through a repartition topic; the topics' names.

    Runs at start, before the graph is fixed. A shuffle after a shuffle reads the first one's
    tasks as its upstream, one stage later. Raises (before anything is changed) for what is
    not built yet: a shuffle of a shuffle's result with an input's records, a shuffle of a
    non-Kafka input.
    """
    _gather_for_functions(ssc)
    _shuffle_unshuffled_sides(ssc, admin)
    steps = _steps(ssc, admin, wanted_shuffles(ssc))
    groups: dict[str, list[_Step]] = {}
    for step in steps:
        groups.setdefault(step.topic, []).append(step)
    # every topic exists before the graph changes: a retry after an outage plans afresh
    for topic, members in groups.items():
        ensure_topic(admin, topic, members[0].partitions)

    # stage by stage: a later stage's writers read the streams an earlier one rewired
    for index, (topic, members) in enumerate(groups.items()):
        stage, partitions = members[0].stage, members[0].partitions
        upstream = sorted({t for m in members for t in m.upstream})
        template = members[0].template
        shuffle_input = _reader(ssc, template, upstream, topic, index, stage, admin)
        parents: dict[int, DStream] = {}
        sinks: list[RepartitionSink] = []
        for step in members:
            stream = step.stream
            parent = stream._parents[0]
            if parent._id not in parents:
                tag = len(parents)
                sink, read_back = _writer(
                    ssc, parent, template, shuffle_input, partitions, stage, tag
                )
                parents[parent._id] = read_back
                sinks.append(sink)
            stream._parents = [parents[parent._id]]
            if isinstance(stream, _StateDStream):
                stream.initial_partition = functools.partial(partition_for, partitions=partitions)
        _mark_once(sinks)
        log.info(
            "job %s: %s shuffle through %s (stage %d, %d partitions, %d upstream tasks)",
            ssc.jobName,
            ", ".join(_operator(m.stream) for m in members),
            topic,
            stage,
            partitions,
            len(upstream),
        )
        _restage(ssc)
    _check_one_shuffle_input_each(ssc)
    return list(groups)


def _reader(
    ssc: StreamingContext,
    template: KafkaSource,
    upstream: list[Task],
    topic: str,
    index: int,
    stage: int,
    admin: AdminClient,
) -> ShuffleInputDStream:
    """The input that reads ``topic`` back, in a consumer group of its own; what its tasks
    persisted is purged from the topic now and then."""
    config = template.consumer_config
    config["group.id"] = f"{config['group.id']}-shuffle-{index}"
    config["isolation.level"] = "read_committed"
    config.pop("logger", None)
    source = KafkaSource(
        config,
        [topic],
        batch_interval_s=ssc.batchDurationMs / 1000.0,
        convert=_decode,
        keep_headers=True,
        after_persist=Purger(admin).persisted,
    )
    aligner = BatchAligner(upstream, ssc.batchDurationMs)
    shuffle_input = ShuffleInputDStream(ssc, source, aligner, stage)
    ssc._graph.add_input(shuffle_input)
    ssc._sources.append(source)
    return shuffle_input


def _writer(
    ssc: StreamingContext,
    parent: DStream,
    template: KafkaSource,
    shuffle_input: ShuffleInputDStream,
    partitions: int,
    stage: int,
    tag: int,
) -> tuple[RepartitionSink, DStream]:
    """The sink that writes ``parent``'s pairs tagged ``tag``, and the stream of them read back
    (what the shuffles of ``parent`` now read). Its upstream tasks at a batch time are, in the
    first stage, the inputs' tasks of the batch; in a later one, the earlier shuffle's tasks
    that released that time."""
    inputs = _kafka_inputs(parent)

    def upstream_at(batch_ms: int) -> list[Task]:
        if stage == 1:
            return [t for i in inputs for t in i.last_tasks]
        shuffled = [i for i in inputs if isinstance(i, ShuffleInputDStream)]
        return [t for i in shuffled for t in i.released_tasks(batch_ms)]

    source = shuffle_input.source
    assert isinstance(source, KafkaSource)
    sink = RepartitionSink(template, source.topics[0], partitions, tag, upstream_at, stage == 1)
    ssc._graph.add_output(_RepartitionOp(parent, sink.write_batch))
    ssc._addBatchParticipant(sink)

    def select(rdd: BatchRDD) -> BatchRDD:
        return rdd._narrow([[pair for g, pair in part if g == tag] for part in rdd.partitions])

    return sink, shuffle_input._narrow(select, keeps_keys=True)


def _mark_once(sinks: list[RepartitionSink]) -> None:
    """The first writer of a topic marks every upstream task of the batch, once each."""
    writers = [s.marked for s in sinks if s.marked is not None]

    def every_upstream_task(batch_ms: int) -> dict[int, list[Task]]:
        merged: dict[int, list[Task]] = {}
        for marks_of in writers:
            for through, tasks in marks_of(batch_ms).items():
                merged.setdefault(through, []).extend(tasks)
        return {t: list(dict.fromkeys(tasks)) for t, tasks in merged.items()}

    for sink in sinks[1:]:
        sink.marked = None
    sinks[0].marked = every_upstream_task


def _check_one_shuffle_input_each(ssc: StreamingContext) -> None:
    for stream in ssc._graph.streams:
        inputs = [i for i in _kafka_inputs(stream) if isinstance(i, ShuffleInputDStream)]
        if len(inputs) > 1:
            raise ValueError(
                f"stream {stream._id} ({type(stream).__name__}) combines shuffles with different "
                "numPartitions: their keys are partitioned differently and their batches are "
                "released apart; give the shuffles one numPartitions"
            )


def _restage(ssc: StreamingContext) -> None:
    """Stages follow the rewired parents (until nothing changes: a stream the plan inserted
    comes after the streams it feeds in construction order)."""
    changed = True
    while changed:
        changed = False
        for stream in ssc._graph.streams:
            if stream._parents:
                stage = max(p._stage for p in stream._parents)
                changed |= stage != stream._stage
                stream._stage = stage


def admin_for(ssc: StreamingContext) -> AdminClient:
    """An admin client of the cluster the job's first Kafka input reads."""
    for source in ssc._sources:
        if isinstance(source, KafkaSource):
            config = source.consumer_config
            return AdminClient(connection_settings(config))
    raise ValueError("a shuffle through Kafka needs a Kafka input")


def _operator(stream: DStream) -> str:
    if isinstance(stream, _StateDStream):
        return "updateStateByKey"
    return "a keyed shuffle (reduceByKey, groupByKey, combineByKey, partitionBy, ...)"


def warn_partition_scoped(ssc: StreamingContext) -> None:
    """Without shuffles through Kafka, say which shuffles group within each input partition."""
    for stream in ssc._graph.streams:
        if not needs_shuffle(stream):
            continue
        sources = [i.source for i in _kafka_inputs(stream) if isinstance(i.source, KafkaSource)]
        if not sources:
            continue
        topics = {t for source in sources for t in source.topics}
        across = (
            f"; it reads {len(topics)} topics, whose records never meet (a join or cogroup "
            "of them matches nothing)"
            if len(topics) > 1
            else ""
        )
        log.warning(
            "job %s: %s (stream %d) groups within each Kafka input partition, not across "
            "them: Spark's answer only when a key's records share a partition%s. "
            "DSTREAMS_SHUFFLE=kafka shuffles through a repartition topic (docs/semantics.md)",
            ssc.jobName,
            _operator(stream),
            stream._id,
            across,
        )


_FUNCTION_OPERATORS = {
    "_TransformedDStream": "transform",
    "_Transformed2DStream": "transformWith",
    "MultiTransformedDStream": "StreamingContext.transform",
}


def warn_functions_on_tasks(ssc: StreamingContext) -> None:
    """Say which of the job's RDD functions see each Kafka partition's records apart: a
    shuffle inside ``transform`` (``rdd.distinct()``, ``rdd.join(...)``, ``sortBy``,
    ``zipWithIndex``) groups within each task, where Spark's covers the whole batch."""
    for stream in _to_gather(ssc):  # what a plan would gather, and this one did not
        operator = _FUNCTION_OPERATORS.get(type(stream).__name__, type(stream).__name__)
        log.warning(
            "job %s: the function of %s (stream %d) runs on one RDD partition per Kafka "
            "partition, on each instance's share of the batch: a shuffle inside it (distinct, "
            "join, subtract, sortBy, zipWithIndex, ...) groups within each partition, not "
            "across the batch as in Spark. The DStream operators (transform(...).reduceByKey, "
            "DStream.join, ...) shuffle across partitions and instances (docs/semantics.md)",
            ssc.jobName,
            operator,
            stream._id,
        )
