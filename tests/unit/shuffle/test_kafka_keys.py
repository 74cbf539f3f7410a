"""Which shuffles of Kafka input go through a repartition topic (docs/semantics.md, "No needless
shuffle"): a direct stream's pairs of one topic count as partitioned by their Kafka key, as
Kafka Streams takes a source topic; ``dstreams.partitioned.by.key`` decides either way; keyless
records under an in-partition grouping warn. No broker: sources are built, not started."""

from __future__ import annotations

import logging
import operator

import pytest

from service.streaming import DStream, StreamingContext
from service.streaming.dstream import InputDStream
from service.streaming.kafka import KafkaUtils
from service.streaming.shuffle import (
    needs_shuffle,
    rely_on_kafka_keys,
    warn_functions_on_tasks,
    warn_partition_scoped,
)

PARAMS = {"metadata.broker.list": "127.0.0.1:9"}


def direct(ssc: StreamingContext, *topics: str, **params: object) -> DStream:
    return KafkaUtils.createDirectStream(ssc, list(topics), {**PARAMS, **params})


def test_the_kafka_key_as_the_grouping_key_keeps_the_in_partition_path() -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    pairs = direct(ssc, "clicks")
    counted = pairs.mapValues(lambda _: 1).reduceByKey(operator.add)
    state = pairs.filter(bool).updateStateByKey(lambda new, old: len(new) + (old or 0))
    windowed = pairs.window(2.0, 1.0).groupByKey()
    assert not any(needs_shuffle(s) for s in (counted, state, windowed))


def test_a_key_changing_step_or_a_stream_of_several_topics_shuffles() -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    pairs = direct(ssc, "clicks")
    rekeyed = pairs.map(lambda kv: (kv[1], 1)).reduceByKey(operator.add)
    declared = pairs.map(lambda kv: kv, preservesPartitioning=True).reduceByKey(operator.add)
    two_topics = direct(ssc, "clicks", "views").reduceByKey(operator.add)
    assert needs_shuffle(rekeyed)
    assert not needs_shuffle(declared)  # Spark's own flag: the function keeps the keys
    assert needs_shuffle(two_topics)


def test_a_join_of_two_topics_shuffles_both_sides() -> None:
    """Each topic's partitions are tasks of their own: equal keys of two topics meet only
    through a shuffle (co-partitioned tasks are not built)."""
    ssc = StreamingContext(1.0, jobName="keys")
    direct(ssc, "orders").join(direct(ssc, "users"))
    assert len([s for s in ssc._graph.streams if needs_shuffle(s)]) == 1


def test_the_setting_forces_either_way() -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    forced = direct(ssc, "clicks", **{"dstreams.partitioned.by.key": False})
    assert needs_shuffle(forced.reduceByKey(operator.add))
    handled = KafkaUtils.createDirectStream(
        ssc, ["clicks"], PARAMS, messageHandler=lambda m: (m.key, m.offset)
    )
    assert needs_shuffle(handled.reduceByKey(operator.add))  # a handler's records: not assumed
    trusted = KafkaUtils.createDirectStream(
        ssc,
        ["clicks"],
        {**PARAMS, "dstreams.partitioned.by.key": True},
        messageHandler=lambda m: (m.key, m.offset),
    )
    assert not needs_shuffle(trusted.reduceByKey(operator.add))


def test_the_setting_is_refused_where_it_cannot_hold() -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    with pytest.raises(ValueError, match="needs one topic"):
        direct(ssc, "a", "b", **{"dstreams.partitioned.by.key": True})
    with pytest.raises(TypeError, match="True or False"):
        direct(ssc, "a", **{"dstreams.partitioned.by.key": "yes"})


def test_grouping_by_the_kafka_key_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    direct(ssc, "clicks").reduceByKey(operator.add).foreachRDD(lambda rdd: None)
    with caplog.at_level(logging.WARNING, logger="service.streaming.shuffle"):
        warn_partition_scoped(ssc)
    assert caplog.records == []


def test_keyless_records_grouped_by_their_kafka_key_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    lines = direct(ssc, "lines")
    lines.groupByKey().foreachRDD(lambda rdd: None)
    rely_on_kafka_keys(ssc)
    [inp] = [s for s in ssc._graph.streams if isinstance(s, InputDStream)]
    assert inp.relied_on_keys
    with caplog.at_level(logging.WARNING, logger="service.streaming.dstream"):
        inp._check_keys([[("k", "v")], []])
        assert caplog.records == []
        inp._check_keys([[(None, "a line")]])
        inp._check_keys([[(None, "another")]])
    [message] = [r.getMessage() for r in caplog.records]
    assert "records without a key in lines" in message
    assert "'dstreams.partitioned.by.key': False" in message


def test_an_input_whose_keys_nothing_groups_by_is_not_checked() -> None:
    ssc = StreamingContext(1.0, jobName="keys")
    direct(ssc, "lines").map(lambda kv: (kv[1], 1)).reduceByKey(operator.add).foreachRDD(
        lambda rdd: None
    )
    rely_on_kafka_keys(ssc)
    [inp] = [s for s in ssc._graph.streams if isinstance(s, InputDStream)]
    assert inp.relied_on_keys == []


def test_a_transform_of_records_not_partitioned_by_key_is_named_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An RDD shuffle inside it groups within each partition: said, since Spark's does not."""
    ssc = StreamingContext(1.0, jobName="functions")
    lines = direct(ssc, "lines").map(lambda kv: kv[1])
    lines.transform(lambda rdd: rdd.distinct()).foreachRDD(lambda rdd: None)
    pairs = direct(ssc, "clicks")
    pairs.transform(lambda rdd: rdd.reduceByKey(operator.add)).foreachRDD(lambda rdd: None)
    # the engine's own uses of transform are not the job's functions
    lines.union(lines).count().foreachRDD(lambda rdd: None)
    lines.countByWindow(2.0, 1.0).foreachRDD(lambda rdd: None)
    with caplog.at_level(logging.WARNING, logger="service.streaming.shuffle"):
        warn_functions_on_tasks(ssc)
    [message] = [r.getMessage() for r in caplog.records]
    assert "the function of transform" in message
    assert "groups within each partition" in message
