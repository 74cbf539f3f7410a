"""Repartition topics on a real broker: created as Kafka Streams creates them, checked, purged."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from service.shuffle.topics import Purger, ensure_topic, purge, repartition_topic
from tests.support.kafka import produce


def test_a_repartition_topic_is_created_kept_forever_and_checked(kafka_admin: AdminClient) -> None:
    name = repartition_topic(f"job-{uuid.uuid4().hex[:8]}", 0)
    ensure_topic(kafka_admin, name, 3)
    ensure_topic(kafka_admin, name, 3)  # a second instance starting: nothing to do
    assert len(kafka_admin.list_topics(name, timeout=30).topics[name].partitions) == 3
    resource = ConfigResource("topic", name)
    configs = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["retention.ms"].value == "-1"
    with pytest.raises(ValueError, match="has 3 partitions, the job needs 4"):
        ensure_topic(kafka_admin, name, 4)


def test_purge_deletes_what_was_committed_past(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    name = repartition_topic(f"job-{uuid.uuid4().hex[:8]}", 1)
    ensure_topic(kafka_admin, name, 1)
    produce(kafka_bootstrap, name, 0, [f"v{i}" for i in range(10)])
    purge(kafka_admin, {(name, 0): 6})
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=30)
    finally:
        consumer.close()
    assert (low, high) == (6, 10)


def low_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[0])
    finally:
        consumer.close()


def test_the_purger_deletes_what_was_persisted_once_per_interval(
    kafka_bootstrap: str, kafka_admin: AdminClient
) -> None:
    """What the downstream tasks persisted is deleted, at most once per interval, without the
    batch waiting for the answer; offsets told meanwhile are purged at the next one."""
    name = repartition_topic(f"job-{uuid.uuid4().hex[:8]}", 2)
    ensure_topic(kafka_admin, name, 1)
    produce(kafka_bootstrap, name, 0, [f"v{i}" for i in range(10)])
    now = [0.0]
    purger = Purger(kafka_admin, interval_s=30.0, clock=lambda: now[0])
    purger.persisted({(name, 0): 4})
    time.sleep(1.0)
    assert low_watermark(kafka_bootstrap, name) == 0  # within the interval: nothing sent
    now[0] = 31.0
    purger.persisted({(name, 0): 7})
    deadline = time.monotonic() + 30
    while low_watermark(kafka_bootstrap, name) != 7:
        assert time.monotonic() < deadline, "the records below 7 were not deleted"
        time.sleep(0.2)


def test_a_job_name_that_cannot_name_a_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="DSTREAMS_JOB_NAME"):
        repartition_topic("my job/1", 0)
