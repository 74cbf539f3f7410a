"""Planning shuffles through Kafka on a real broker: stages, topics and upstream tasks."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils
from service.streaming.shuffle import ShuffleInputDStream, plan


def test_a_shuffle_after_a_shuffle_reads_the_first_ones_tasks_one_stage_later(
    kafka_bootstrap: str, kafka_admin: AdminClient, create_topic: Callable[..., str]
) -> None:
    """A global count of a shuffled window: the window's pairs through a topic of the input's
    partition count (stage 1), the count's through a one-partition topic (stage 2) whose
    upstream tasks are the first topic's partitions."""
    topic = create_topic(partitions=3)
    ssc = StreamingContext(0.2, jobName=f"second-shuffle-{uuid.uuid4().hex[:6]}")
    pairs = KafkaUtils.createDirectStream(
        ssc, [topic], {"metadata.broker.list": kafka_bootstrap}
    ).map(lambda kv: (kv[1], 1))
    counted = pairs.reduceByKeyAndWindow(operator.add, None, 1.0, 0.2).count()
    counted.foreachRDD(lambda r: None)
    first, second = plan(ssc, kafka_admin)
    readers = [s for s in ssc._graph.inputs if isinstance(s, ShuffleInputDStream)]
    assert [(r.source.topics, r._stage) for r in readers] == [([first], 1), ([second], 2)]
    assert readers[1].aligner.upstream == {(first, p) for p in range(3)}
    assert counted._stage == 2
    described = kafka_admin.list_topics(timeout=30).topics
    assert len(described[first].partitions) == 3 and len(described[second].partitions) == 1


def test_a_shuffled_result_joined_with_a_topic_gets_the_topic_shuffled_into_its_partitions(
    kafka_bootstrap: str, kafka_admin: AdminClient, create_topic: Callable[..., str]
) -> None:
    """The topic's side is shuffled too, into the totals' partition count: one repartition
    topic, both sides tagged in it, and the join within each task (no second stage)."""
    orders, users = create_topic(partitions=3), create_topic(partitions=2)
    ssc = StreamingContext(0.2, jobName=f"mixed-{uuid.uuid4().hex[:6]}")
    params = {"metadata.broker.list": kafka_bootstrap}
    totals = (
        KafkaUtils.createDirectStream(ssc, [orders], params)
        .map(lambda kv: (kv[1], 1))
        .reduceByKey(operator.add)
    )
    names = KafkaUtils.createDirectStream(ssc, [users], params)
    joined = totals.join(names)
    joined.foreachRDD(lambda r: None)
    [topic] = plan(ssc, kafka_admin)
    [reader] = [s for s in ssc._graph.inputs if isinstance(s, ShuffleInputDStream)]
    assert reader.aligner.upstream == {(orders, p) for p in range(3)} | {(users, 0), (users, 1)}
    assert len(kafka_admin.list_topics(timeout=30).topics[topic].partitions) == 3
    assert joined._stage == 1


def test_a_function_on_records_not_partitioned_by_key_sees_whole_batches(
    kafka_bootstrap: str, kafka_admin: AdminClient, create_topic: Callable[..., str]
) -> None:
    """Its parents' records go through a one-partition topic first; one on a stream keyed by
    the Kafka key is left as it is (keyed RDD shuffles inside it are right per task)."""
    lines, clicks = create_topic(partitions=3), create_topic(partitions=3)
    ssc = StreamingContext(0.2, jobName=f"gather-{uuid.uuid4().hex[:6]}")
    params = {"metadata.broker.list": kafka_bootstrap}
    words = KafkaUtils.createDirectStream(ssc, [lines], params).map(lambda kv: kv[1])
    distinct = words.transform(lambda rdd: rdd.distinct())
    distinct.foreachRDD(lambda r: None)
    pairs = KafkaUtils.createDirectStream(ssc, [clicks], params)
    summed = pairs.transform(lambda rdd: rdd.reduceByKey(operator.add))
    summed.foreachRDD(lambda r: None)
    [topic] = plan(ssc, kafka_admin)
    assert len(kafka_admin.list_topics(timeout=30).topics[topic].partitions) == 1
    [reader] = [s for s in ssc._graph.inputs if isinstance(s, ShuffleInputDStream)]
    assert reader.aligner.upstream == {(lines, p) for p in range(3)}
    assert distinct._stage == 1 and distinct._gathered
    assert summed._stage == 0 and not summed._gathered
