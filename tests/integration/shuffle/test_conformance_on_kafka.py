"""The PySpark conformance cases on Kafka input, shuffled through Kafka (issue 10, "Proof").

Each case's queued batches go round-robin over a 3-partition topic per input (no keys, as
``kafka-console-producer`` writes), read by two instances of one job with
``DSTREAMS_SHUFFLE=kafka``; the outputs of both, merged by batch time, must equal the PySpark
recordings batch for batch. All cases run as one job (each on topics of its own), so the
consumer groups settle once. The two instances are two StreamingContexts in this process, each
on a manual clock and driven one batch at a time: batch k's records are produced, each instance
reads its partitions to their end and runs batch k. A downstream task releases batch k once
every upstream task (the other instance's too) is through it, so a stage past a shuffle may run
batch k at the instance's next batch, at batch time k: outputs are merged by batch time.

Cases whose answer depends on how records are laid out in partitions (``glom``,
``mapPartitions``, ...) cannot hold on another partitioning, in Spark too; they are listed with
the reason, and every other case must match.
"""

from __future__ import annotations

import ast
import operator
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from tests.conformance import Case, Output, normalize_batch
from tests.conformance.cases import BATCH_DURATION, CASES_BY_NAME, LEFT, RIGHT
from tests.integration.test_pyspark_conformance import batch_diff, expected_batches
from tests.support.kafka import new_topic

PARTITIONS = 3
INSTANCES = 2
# batches run past the case's last, for the stages past a shuffle to release it
EXTRA_BATCHES = 3
SETTLE_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 30.0

# Answers that depend on the layout of records in partitions, which a Kafka input changes (in
# Spark as well: a direct stream's partitions are the topic's).
LAYOUT = "its output shows partitions (indices, counts or per-partition sums)"
LAYOUT_DEPENDENT = {
    name: LAYOUT
    for name in (
        "glom",
        "glom_after_map",
        "mapPartitionsWithIndex_sum",
        "mapPartitions_sum",
        "partitionBy_2_int_keys",
        "partitionBy_3_custom_func",
        "repartition_1_glom",
        "repartition_3_partition_count",
    )
}


def eligible(case: Case) -> str | None:
    """Why a case cannot run on Kafka input; None when it can."""
    if case.name in LAYOUT_DEPENDENT:
        return LAYOUT_DEPENDENT[case.name]
    if not case.one_at_a_time or case.default is not None:
        return "a queueStream option (oneAtATime=False, default) with no Kafka counterpart"
    if case.error is not None:
        return "a batch failing on purpose: covered by the dead-letter tests under Kafka"
    return None


ON_KAFKA = sorted(n for n, c in CASES_BY_NAME.items() if eligible(c) is None)


class Instance:
    """One job instance: a StreamingContext on a manual clock, each case's outputs by time."""

    def __init__(self, ssc: Any) -> None:
        self.ssc = ssc
        self.outputs: dict[str, dict[int, list[Any]]] = {}

    def observe(self, name: str, stream: Any) -> None:
        outputs = self.outputs.setdefault(name, {})

        def on_output(time_: datetime, rdd: Any) -> None:
            t = round(time_.timestamp() * 1000)
            outputs.setdefault(t, []).extend(rdd.collect())

        stream.foreachRDD(on_output)


def kafka_sources(ssc: Any) -> list[Any]:
    from service.sources.kafka import KafkaSource

    return [s for s in ssc._sources if isinstance(s, KafkaSource)]


def all_partitions(admin: Any, topics: list[str]) -> set[tuple[str, int]]:
    metadata = admin.list_topics(timeout=10)
    return {(t, p) for t in topics for p in metadata.topics[t].partitions}


def settle(instances: list[Instance], admin: Any) -> None:
    """Poll every consumer until each group has split its partitions among the instances."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    per_source = list(zip(*(kafka_sources(i.ssc) for i in instances), strict=True))
    wanted = [all_partitions(admin, sources[0].topics) for sources in per_source]
    while True:
        for instance in instances:
            instance.ssc._fill_sources(time.monotonic() + 0.2)
        split = [[set(s.assigned_partitions) for s in sources] for sources in per_source]
        done = all(
            set().union(*sets) == want
            and sum(map(len, sets)) == len(want)
            and (all(sets) or len(want) < len(instances))
            for sets, want in zip(split, wanted, strict=True)
        )
        if done:
            return
        assert time.monotonic() < deadline, f"groups did not settle: {split}"


def drain(instance: Instance, admin: Any) -> None:
    """Read every owned partition to its end (what is committed: no transaction is open)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    for source in kafka_sources(instance.ssc):
        consumer = source._consumer
        assert consumer is not None
        owned = [TopicPartition(t, p) for t, p in source.assigned_partitions]
        if not owned:
            continue
        asked = admin.list_offsets({tp: OffsetSpec.latest() for tp in owned})
        ends = {(tp.topic, tp.partition): f.result().offset for tp, f in asked.items()}
        while True:
            positions = consumer.position(owned)
            unknown = [tp for tp in positions if tp.offset < 0]
            # nothing consumed yet: from the group's offset, else the start (offset 0 here)
            starts = {(tp.topic, tp.partition): tp.offset for tp in positions}
            if unknown:
                for tp in consumer.committed(unknown, timeout=10):
                    starts[(tp.topic, tp.partition)] = max(tp.offset, 0)
            behind = {tp: (at, ends[tp]) for tp, at in starts.items() if at < ends[tp]}
            if not behind:
                break
            assert time.monotonic() < deadline, f"not read to the end: {behind}"
            source.fill(time.monotonic() + 0.05)


def merged(instances: list[Instance], name: str, times: list[int]) -> list[Output]:
    out: list[Output] = []
    for t in times:
        parts = [i.outputs[name][t] for i in instances if t in i.outputs[name]]
        out.append(normalize_batch([r for p in parts for r in p]) if parts else None)
    return out


# cases per job: one job per case spends most of its time settling two groups, one job of all
# of them slows every batch with hundreds of tasks
GROUP_SIZE = 8
_runs: dict[int, dict[str, list[Output]] | BaseException] = {}


@pytest.fixture
def kafka_run(
    name: str, kafka_bootstrap: str, kafka_admin: Any, redis_url: str
) -> dict[str, list[Output]]:
    """The merged outputs of the job that runs ``name`` with the other cases of its group."""
    group = ON_KAFKA.index(name) // GROUP_SIZE
    if group not in _runs:
        names = ON_KAFKA[group * GROUP_SIZE : (group + 1) * GROUP_SIZE]
        try:
            _runs[group] = run_on_kafka(names, kafka_bootstrap, kafka_admin, redis_url)
        except Exception as exc:  # every case of the group fails with it, run once
            _runs[group] = exc
    run = _runs[group]
    if isinstance(run, BaseException):
        raise run
    return run


def run_on_kafka(
    names: list[str], kafka_bootstrap: str, kafka_admin: Any, redis_url: str
) -> dict[str, list[Output]]:
    return run_cases_on_kafka(
        [CASES_BY_NAME[name] for name in names], kafka_bootstrap, kafka_admin, redis_url
    )


def run_cases_on_kafka(
    cases: list[Case], kafka_bootstrap: str, kafka_admin: Any, redis_url: str
) -> dict[str, list[Output]]:
    """Cases as one job of two instances: each case reads topics of its own and its shuffles
    share the job's repartition topics (one per partition count, as any job's). Each case's
    merged outputs."""
    from service.runtime.clock import ManualClock
    from service.streaming import StreamingContext
    from service.streaming.kafka import KafkaUtils
    from service.streaming.testing import run_batches

    topics = {
        c.name: [new_topic(kafka_admin, partitions=PARTITIONS) for _ in c.inputs] for c in cases
    }
    job = f"kconf-{uuid.uuid4().hex[:8]}"
    params = {
        "metadata.broker.list": kafka_bootstrap,
        "auto.offset.reset": "earliest",
        # fetches answered at once: each batch waits until both instances read to the end
        "fetch.wait.max.ms": 10,
        # the second instance joining moves partitions within a heartbeat, not 3 s
        "heartbeat.interval.ms": 100,
    }
    instances: list[Instance] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DSTREAMS_SHUFFLE", "kafka")
        for index in range(INSTANCES):
            env.setenv("DSTREAMS_INSTANCE_ID", f"{job}-{index}")
            ssc = StreamingContext(BATCH_DURATION, jobName=job, clock=ManualClock())
            ssc.checkpoint(redis_url)
            instance = Instance(ssc)
            for case in cases:
                streams = [
                    KafkaUtils.createDirectStream(ssc, [topic], params).map(
                        lambda kv: ast.literal_eval(kv[1])
                    )
                    for topic in topics[case.name]
                ]
                instance.observe(case.name, case.build(ssc, *streams))
            ssc._prepare()
            instances.append(instance)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    sent: dict[str, int] = {}
    times: list[int] = []
    try:
        settle(instances, kafka_admin)
        for k in range(max(c.num_batches for c in cases) + EXTRA_BATCHES):
            for case in cases:
                for topic, batches in zip(topics[case.name], case.inputs, strict=True):
                    for record in batches[k] if k < len(batches) else []:
                        n = sent.get(topic, 0)
                        producer.produce(topic, repr(record).encode(), partition=n % PARTITIONS)
                        sent[topic] = n + 1
            assert producer.flush(30) == 0
            ran = set()
            for instance in instances:
                drain(instance, kafka_admin)
                ran.update(run_batches(instance.ssc, 1))
            assert len(ran) == 1, f"the instances ran different batch times: {ran}"
            times.extend(ran)
        for instance in instances:
            instance.ssc.awaitTerminationOrTimeout(0)  # a job error fails every case here
    finally:
        for instance in instances:
            instance.ssc.stop(stopSparkContext=False, stopGraceFully=False)
    return {c.name: merged(instances, c.name, times[: c.num_batches]) for c in cases}


@pytest.mark.parametrize("name", ON_KAFKA)
def test_matches_pyspark_on_kafka_input_with_two_instances(
    name: str, kafka_run: dict[str, list[Output]]
) -> None:
    diff = batch_diff(expected_batches(name), kafka_run[name])
    assert not diff, f"{name} on Kafka input differs from PySpark:\n{diff}"


def test_every_case_runs_on_kafka_input_or_says_why_not() -> None:
    """The cases left out are those with no Kafka counterpart or an answer bound to a layout."""
    left_out = {n: eligible(c) for n, c in CASES_BY_NAME.items() if eligible(c) is not None}
    assert set(left_out) | set(ON_KAFKA) == set(CASES_BY_NAME)
    assert all(left_out.values())


def test_a_shuffled_result_joined_with_a_topic_meets_it_batch_for_batch(
    kafka_bootstrap: str, kafka_admin: Any, redis_url: str
) -> None:
    """A join of a reduceByKey's result with another topic's pairs (not a recorded case): the
    other side is shuffled too, into the first side's repartition topic, as Spark shuffles both
    sides of a join; per batch, Spark's answer is the batch's totals joined with its pairs."""
    case = Case(
        "reduceByKey_then_join",
        (LEFT, RIGHT),
        5,
        lambda ssc, a, b: a.reduceByKey(operator.add).join(b),
    )
    [got] = run_cases_on_kafka([case], kafka_bootstrap, kafka_admin, redis_url).values()
    expected: list[Output] = []
    for k in range(case.num_batches):
        totals: dict[str, int] = {}
        for key, value in LEFT[k] if k < len(LEFT) else []:
            totals[key] = totals.get(key, 0) + value
        right = RIGHT[k] if k < len(RIGHT) else []
        joined = [(key, (totals[key], v)) for key, v in right if key in totals]
        expected.append(normalize_batch(joined))
    assert got == expected
