"""Planning shuffles through Kafka on a real broker: what is not built is refused at start."""

from __future__ import annotations

import operator
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils
from service.streaming.shuffle import plan


def test_a_shuffle_after_a_shuffle_is_refused_before_anything_changes(
    kafka_bootstrap: str, kafka_admin: AdminClient, create_topic: Callable[..., str]
) -> None:
    """A global count of a shuffled window needs a second shuffle: refused with the way out,
    instead of a job whose output never runs (a conformance case on Kafka input found it)."""
    topic = create_topic(partitions=3)
    ssc = StreamingContext(0.2, jobName="second-shuffle")
    pairs = KafkaUtils.createDirectStream(
        ssc, [topic], {"metadata.broker.list": kafka_bootstrap}
    ).map(lambda kv: (kv[1], 1))
    pairs.reduceByKeyAndWindow(operator.add, None, 1.0, 0.2).count().foreachRDD(lambda r: None)
    streams = list(ssc._graph.streams)
    with pytest.raises(NotImplementedError, match="second shuffle through Kafka"):
        plan(ssc, kafka_admin)
    assert ssc._graph.streams == streams
    assert all(s._stage == 0 for s in streams)
