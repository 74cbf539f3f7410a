"""A ``foreachRDD`` output that writes each batch to a Kafka topic.

It returns only once every record is acknowledged by the broker (``flush``), and raises if any
was not: the scheduler declares a batch persisted, and commits its input offsets, only after the
output operations return, so a returned call means the batch's output is durable in Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaError, Message, Producer

log = structlog.get_logger(__name__)

Payload = bytes | str | None


class _Batch(Protocol):
    def collect(self) -> list[Any]: ...


class KafkaSinkError(RuntimeError):
    """Some records of a batch were not acknowledged by Kafka."""


def pair_to_key_value(record: Any) -> tuple[Payload, Payload]:
    """``(key, value)`` pairs become the record key and value; anything else is a value."""
    if isinstance(record, tuple) and len(record) == 2:
        key, value = record
        return _payload(key), _payload(value)
    return None, _payload(record)


def _payload(x: Any) -> Payload:
    if x is None or isinstance(x, bytes | str):
        return x
    return str(x)


class KafkaSink:
    """``dstream.foreachRDD(KafkaSink(servers, topic))``: one produce per record, one flush."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        serialize: Callable[[Any], tuple[Payload, Payload]] = pair_to_key_value,
        producer_config: Mapping[str, Any] | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            # acknowledged by all in-sync replicas, and no duplicates from the producer's retries
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
        config.update(producer_config or {})
        self.topic = topic
        self._serialize = serialize
        self._flush_timeout_s = flush_timeout_s
        self._producer = Producer(config)

    def __call__(self, rdd: _Batch) -> None:
        self.write(rdd.collect())

    def write(self, records: Iterable[Any]) -> None:
        """Produce ``records`` and wait until Kafka acknowledged every one of them."""
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(err)

        count = 0
        for record in records:
            key, value = self._serialize(record)
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    # the local queue is full: let deliveries drain it, then retry this record
                    self._producer.poll(0.1)
            count += 1
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining or failures:
            first = str(failures[0]) if failures else "flush timed out"
            raise KafkaSinkError(
                f"{len(failures) + remaining} of {count} records to {self.topic} not acknowledged"
                f" ({first})"
            )
        log.debug("kafka_sink_flushed", topic=self.topic, records=count)

    def close(self) -> None:
        self._producer.flush(self._flush_timeout_s)
