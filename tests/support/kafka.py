"""Small Kafka helpers of the source-level integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from service.sources.kafka import KafkaSource


def new_topic(
    admin: AdminClient,
    name: str | None = None,
    partitions: int = 1,
    config: dict[str, str] | None = None,
) -> str:
    """Create a topic with N partitions and wait until it exists; names are unique per call."""
    topic = name or f"test-{uuid.uuid4().hex[:12]}"
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
    )
    futures[topic].result(timeout=60)
    for _ in range(100):
        described = admin.list_topics(topic, timeout=10).topics.get(topic)
        ready = described is not None and described.error is None
        if ready and len(described.partitions) == partitions:
            break
    return topic


def produce(bootstrap: str, topic: str, partition: int, values: Sequence[str | bytes]) -> None:
    """Values to one partition, acknowledged before returning."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(30) == 0


@contextmanager
def running(source: KafkaSource) -> Iterator[KafkaSource]:
    source.start()
    try:
        yield source
    finally:
        source.stop()
