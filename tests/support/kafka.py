"""Small Kafka helpers of the source-level integration tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka import Producer

from service.sources.kafka import KafkaSource


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
