"""KafkaUtils' translation of Spark-style arguments, without a broker."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.sources.kafka import KafkaRecord
from service.streaming.kafka import (
    MAX_RATE_KEY,
    KafkaMessageAndMetadata,
    OffsetRange,
    TopicAndPartition,
    _from_offsets_keys,
    kafka_consumer_params,
    utf8_decoder,
)


def settings(**kw: object) -> Settings:
    base: dict[str, object] = {"kafka_bootstrap_servers": "env:9092", "redis_url": "redis://r:1/0"}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def test_spark_broker_list_becomes_bootstrap_servers_and_spark_keys_are_stripped() -> None:
    config, rate = kafka_consumer_params(
        {
            "metadata.broker.list": "k1:9092,k2:9092",
            MAX_RATE_KEY: "250",
            "auto.offset.reset": "smallest",
            "spark.streaming.backpressure.enabled": "true",
            "key.deserializer": "org.apache.kafka.common.serialization.StringDeserializer",
        },
        settings(),
        "job",
    )
    assert rate == 250.0
    assert config == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "auto.offset.reset": "smallest",
        "group.id": "dstreams-job",
    }


def test_explicit_params_win_over_service_settings() -> None:
    config, rate = kafka_consumer_params(
        {"bootstrap.servers": "mine:9092", "group.id": "mine"},
        settings(group_id="svc", max_rate_per_partition=10),
        "job",
    )
    assert config == {"bootstrap.servers": "mine:9092", "group.id": "mine"}
    assert rate == 10.0


def test_service_settings_fill_in_what_params_leave_out() -> None:
    config, rate = kafka_consumer_params({}, settings(group_id="svc"), "job")
    assert config == {"bootstrap.servers": "env:9092", "group.id": "svc"}
    assert rate is None


def test_a_non_positive_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="maxRatePerPartition"):
        kafka_consumer_params({MAX_RATE_KEY: "0"}, settings(), "job")


def test_from_offsets_accepts_topic_and_partition_or_tuples() -> None:
    assert _from_offsets_keys({TopicAndPartition("a", 1): 5, ("b", 0): 7}) == {
        ("a", 1): 5,
        ("b", 0): 7,
    }
    with pytest.raises(TypeError):
        _from_offsets_keys({"a": 1})


def test_value_types_compare_like_pyspark() -> None:
    assert TopicAndPartition("a", 1) == TopicAndPartition("a", 1)
    assert TopicAndPartition("a", 1) != TopicAndPartition("a", 2)
    assert len({TopicAndPartition("a", 1), TopicAndPartition("a", 1)}) == 1
    assert OffsetRange("a", 0, 1, 5) == OffsetRange("a", 0, 1, 5)
    assert OffsetRange("a", 0, 1, 5) != OffsetRange("a", 0, 1, 6)
    assert str(OffsetRange("a", 0, 1, 5)) == "OffsetRange(topic: a, partition: 0, range: [1 -> 5]"


def test_message_and_metadata_decodes_with_the_given_decoders() -> None:
    r = KafkaRecord("t", 2, 40, b"k", b"\x00\x01")
    m = KafkaMessageAndMetadata(r.topic, r.partition, r.offset, r.key, r.value)
    m._set_value_decoder(lambda b: list(b or b""))
    assert (m.topic, m.partition, m.offset, m.key, m.message) == ("t", 2, 40, "k", [0, 1])
    assert utf8_decoder(None) is None
    assert utf8_decoder("é".encode()) == "é"
