"""Planning shuffles through Kafka on a real broker: stages and topics, and what is not built
refused at start."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable

import pytest
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


def test_a_shuffle_of_a_shuffled_result_with_a_topic_is_refused_before_anything_changes(
    kafka_bootstrap: str, kafka_admin: AdminClient, create_topic: Callable[..., str]
) -> None:
    """Its two sides would be written at different stages: not built, said at start with the
    way out, instead of a job whose output silently never runs."""
    orders, users = create_topic(partitions=3), create_topic(partitions=3)
    ssc = StreamingContext(0.2, jobName="mixed-shuffle")
    params = {"metadata.broker.list": kafka_bootstrap}
    totals = (
        KafkaUtils.createDirectStream(ssc, [orders], params)
        .map(lambda kv: (kv[1], 1))
        .reduceByKey(operator.add)
    )
    names = KafkaUtils.createDirectStream(ssc, [users], params)
    totals.join(names).foreachRDD(lambda r: None)
    streams = list(ssc._graph.streams)
    with pytest.raises(NotImplementedError, match="shuffle the input's side first too"):
        plan(ssc, kafka_admin)
    assert ssc._graph.streams == streams
    assert all(s._stage == 0 for s in streams)
