"""``pyspark.streaming.kafka`` (Spark 2's Python API) over ``KafkaSource``.

``KafkaUtils.createDirectStream`` takes the same arguments as in Spark 2. The differences come from
running without Spark: ``kafkaParams`` go to librdkafka (Spark-era names are translated, Java-only
ones dropped), offsets live in Kafka's consumer group and are committed once a batch is persisted
(no checkpoint holds them), and settings missing from ``kafkaParams`` come from the service's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from service.config import Settings
from service.sinks.dead_letter import (
    DLQ_TOPIC_PARAM,
    DeadLetterPolicy,
    DeadLetterQueue,
    default_topic,
)
from service.sinks.transaction import connection_settings
from service.sources.kafka import KafkaRecord, KafkaSource, TopicPartitionKey
from service.streaming.dstream import KAFKA_KEYED

if TYPE_CHECKING:
    from service.streaming.context import StreamingContext
    from service.streaming.dstream import DStream

__all__ = [
    "KafkaMessageAndMetadata",
    "KafkaUtils",
    "OffsetRange",
    "TopicAndPartition",
    "kafka_consumer_params",
    "utf8_decoder",
]

log = structlog.get_logger(__name__)

MAX_RATE_KEY = "spark.streaming.kafka.maxRatePerPartition"
# not a librdkafka setting: whether the stream's records are partitioned by their key
PARTITIONED_BY_KEY_PARAM = "dstreams.partitioned.by.key"

# Spark-era (Kafka 0.8 / Java client) names and their librdkafka equivalents.
_ALIASES = {"metadata.broker.list": "bootstrap.servers"}
# Java client settings with no librdkafka meaning (decoding is done by keyDecoder/valueDecoder).
_JAVA_ONLY = frozenset(
    {
        "key.deserializer",
        "value.deserializer",
        "zookeeper.connect",
        "zookeeper.connection.timeout.ms",
        "serializer.class",
        "key.serializer.class",
    }
)

Decoder = Callable[[bytes | None], Any]


def utf8_decoder(s: bytes | None) -> str | None:
    """Decode the unicode as UTF-8"""
    if s is None:
        return None
    return s.decode("utf-8")


class TopicAndPartition:
    """A topic and partition, the key type of ``fromOffsets``."""

    def __init__(self, topic: str, partition: int) -> None:
        self._topic = topic
        self._partition = partition

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partition(self) -> int:
        return self._partition

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TopicAndPartition):
            return (self._topic, self._partition) == (other._topic, other._partition)
        return False

    def __hash__(self) -> int:
        return hash((self._topic, self._partition))

    def __repr__(self) -> str:
        return f"TopicAndPartition({self._topic!r}, {self._partition})"


class OffsetRange:
    """A range of offsets ``[fromOffset, untilOffset)`` of one topic partition."""

    def __init__(self, topic: str, partition: int, fromOffset: int, untilOffset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.fromOffset = fromOffset
        self.untilOffset = untilOffset

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OffsetRange):
            return (self.topic, self.partition, self.fromOffset, self.untilOffset) == (
                other.topic,
                other.partition,
                other.fromOffset,
                other.untilOffset,
            )
        return False

    def __hash__(self) -> int:
        return hash((self.topic, self.partition, self.fromOffset, self.untilOffset))

    def __str__(self) -> str:
        return (
            f"OffsetRange(topic: {self.topic}, partition: {self.partition}, "
            f"range: [{self.fromOffset} -> {self.untilOffset}]"
        )

    __repr__ = __str__


class KafkaMessageAndMetadata:
    """What a ``messageHandler`` receives: the record and its place in Kafka, decoded on access."""

    def __init__(
        self, topic: str, partition: int, offset: int, key: bytes | None, message: bytes | None
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._rawKey = key
        self._rawMessage = message
        self._keyDecoder: Decoder = utf8_decoder
        self._valueDecoder: Decoder = utf8_decoder

    def _set_key_decoder(self, decoder: Decoder) -> None:
        self._keyDecoder = decoder

    def _set_value_decoder(self, decoder: Decoder) -> None:
        self._valueDecoder = decoder

    @property
    def key(self) -> Any:
        return self._keyDecoder(self._rawKey)

    @property
    def message(self) -> Any:
        return self._valueDecoder(self._rawMessage)

    def __repr__(self) -> str:
        return (
            f"KafkaMessageAndMetadata(topic={self.topic!r}, partition={self.partition}, "
            f"offset={self.offset})"
        )


def kafka_consumer_params(
    kafkaParams: Mapping[str, Any], settings: Settings, job_name: str
) -> tuple[dict[str, Any], float | None]:
    """librdkafka settings and the per-partition rate from Spark-style ``kafkaParams``.

    Values given in ``kafkaParams`` win; the service settings fill in the brokers, the consumer
    group and ``maxRatePerPartition``.
    """
    config: dict[str, Any] = {}
    max_rate: float | None = settings.max_rate_per_partition
    for key, value in kafkaParams.items():
        if key == MAX_RATE_KEY:
            max_rate = float(value)
            if max_rate <= 0:
                raise ValueError(f"{MAX_RATE_KEY} must be > 0, got {value!r}")
        elif key.startswith("spark."):
            log.warning("kafka_param_ignored", param=key, reason="Spark setting")
        elif key in _JAVA_ONLY:
            log.warning("kafka_param_ignored", param=key, reason="no librdkafka equivalent")
        elif key in _ALIASES:
            config.setdefault(_ALIASES[key], value)
        else:
            config[key] = value
    config.setdefault("bootstrap.servers", settings.kafka_bootstrap_servers)
    config.setdefault("group.id", settings.consumer_group(job_name))
    return config, max_rate


def _from_offsets_keys(
    fromOffsets: Mapping[Any, int] | None,
) -> dict[TopicPartitionKey, int]:
    result: dict[TopicPartitionKey, int] = {}
    for key, offset in (fromOffsets or {}).items():
        if isinstance(key, TopicAndPartition):
            result[(key.topic, key.partition)] = int(offset)
        elif isinstance(key, tuple) and len(key) == 2:
            result[(str(key[0]), int(key[1]))] = int(offset)
        else:
            raise TypeError(
                f"fromOffsets keys should be TopicAndPartition or (topic, partition), got {key!r}"
            )
    return result


def _service_settings() -> Settings:
    # The runner's settings when the job runs under `python -m service run`, else the environment.
    from service.config import settings

    return settings()


class KafkaUtils:
    @staticmethod
    def createDirectStream(
        ssc: StreamingContext,
        topics: list[str],
        kafkaParams: dict[str, Any],
        fromOffsets: Mapping[Any, int] | None = None,
        keyDecoder: Decoder = utf8_decoder,
        valueDecoder: Decoder = utf8_decoder,
        messageHandler: Callable[[KafkaMessageAndMetadata], Any] | None = None,
    ) -> DStream:
        """A stream of ``(key, value)`` pairs (or ``messageHandler``'s results) from ``topics``.

        Without ``fromOffsets`` the stream joins the consumer group ``group.id`` and starts at
        the group's committed offsets (``auto.offset.reset``, default ``earliest``, when there are
        none). With ``fromOffsets`` it reads exactly those partitions from those offsets, or
        from the group's committed offsets when a restarted job has some.
        """
        if not isinstance(topics, list):
            raise TypeError("topics should be list")
        if not isinstance(kafkaParams, dict):
            raise TypeError("kafkaParams should be dict")
        params = dict(kafkaParams)
        dlq_topic = params.pop(DLQ_TOPIC_PARAM, None)
        keyed = _partitioned_by_key(
            params.pop(PARTITIONED_BY_KEY_PARAM, None), topics, pairs=messageHandler is None
        )
        settings = _service_settings()
        config, max_rate = kafka_consumer_params(params, settings, ssc.jobName)
        dead_letters = _dead_letters(config, settings, ssc.jobName, dlq_topic)

        convert: Callable[[KafkaRecord], Any]
        if messageHandler is None:

            def convert(r: KafkaRecord) -> Any:
                return (keyDecoder(r.key), valueDecoder(r.value))

        else:
            handler = messageHandler

            def convert(r: KafkaRecord) -> Any:
                m = KafkaMessageAndMetadata(r.topic, r.partition, r.offset, r.key, r.value)
                m._set_key_decoder(keyDecoder)
                m._set_value_decoder(valueDecoder)
                return handler(m)

        source = KafkaSource(
            config,
            topics,
            batch_interval_s=ssc.batchDurationMs / 1000.0,
            max_rate_per_partition=max_rate,
            from_offsets=_from_offsets_keys(fromOffsets),
            convert=convert,
            dead_letters=dead_letters,
        )
        stream = ssc._sourceStream(source)
        if keyed:
            stream._keyed_by, stream._keying = KAFKA_KEYED + topics[0], "own"
        return stream


def _partitioned_by_key(value: Any, topics: list[str], pairs: bool) -> bool:
    """Whether a direct stream's records count as partitioned by their key (docs/semantics.md):
    by default its ``(key, value)`` pairs of one topic (a record's partition is its key's, as
    the producer's default partitioner puts it; not a ``messageHandler``'s records); the
    ``dstreams.partitioned.by.key`` kafkaParam decides either way."""
    if value is None:
        return pairs and len(topics) == 1
    if not isinstance(value, bool):
        raise TypeError(f"kafkaParams {PARTITIONED_BY_KEY_PARAM!r} should be True or False")
    if value and len(topics) != 1:
        raise ValueError(
            f"kafkaParams {PARTITIONED_BY_KEY_PARAM!r}: True needs one topic; the partitions of "
            "several topics are separate tasks, so equal keys of two topics never meet without "
            "a shuffle (create one stream per topic)"
        )
    return value


def _dead_letters(
    config: Mapping[str, Any], settings: Settings, job: str, topic: Any
) -> DeadLetterQueue:
    """The stream's dead letters (docs/dead-letters.md): ``dstreams.dlq.topic`` wins."""
    policy = DeadLetterPolicy(
        topic=str(topic or settings.dlq_topic or default_topic(job)),
        max_attempts=settings.dlq_max_attempts,
        max_record_bytes=settings.max_record_bytes,
    )
    return DeadLetterQueue(policy, job, connection_settings(config))
