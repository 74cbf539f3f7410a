"""Without shuffles through Kafka, the start-up warning names each in-partition shuffle, and a
join of two topics as one that matches nothing (no broker: sources are built, not started)."""

from __future__ import annotations

import logging

import pytest

from service.streaming import DStream, StreamingContext
from service.streaming.kafka import KafkaUtils
from service.streaming.shuffle import warn_partition_scoped

PARAMS = {"metadata.broker.list": "127.0.0.1:9"}


def pairs(ssc: StreamingContext, topic: str) -> DStream:
    return KafkaUtils.createDirectStream(ssc, [topic], PARAMS).map(lambda kv: (kv[1], 1))


def test_a_join_of_two_topics_is_named_as_matching_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ssc = StreamingContext(1.0, jobName="warned")
    joined = pairs(ssc, "orders").join(pairs(ssc, "users"))
    joined.foreachRDD(lambda rdd: None)
    with caplog.at_level(logging.WARNING, logger="service.streaming.shuffle"):
        warn_partition_scoped(ssc)
    [message] = [r.getMessage() for r in caplog.records]
    assert "groups within each Kafka input partition" in message
    assert "reads 2 topics, whose records never meet" in message


def test_a_shuffle_of_one_topic_is_named_without_the_join_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ssc = StreamingContext(1.0, jobName="warned")
    pairs(ssc, "lines").reduceByKey(lambda a, b: a + b).foreachRDD(lambda rdd: None)
    with caplog.at_level(logging.WARNING, logger="service.streaming.shuffle"):
        warn_partition_scoped(ssc)
    [message] = [r.getMessage() for r in caplog.records]
    assert "groups within each Kafka input partition" in message
    assert "never meet" not in message
