"""The metrics listener on a real StreamingContext (manual clock, in-memory state)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.observability.metrics import DStreamsMetrics, MetricsListener
from service.runtime.clock import ManualClock
from service.sources.kafka import OffsetSpan
from service.streaming import StreamingContext
from service.streaming.listener import BatchEvent, BatchInfo
from service.streaming.testing import run_batches


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_batches_records_delays_and_failures_of_a_real_context() -> None:
    registry = CollectorRegistry()
    metrics = DStreamsMetrics(registry)
    clock = ManualClock(0)
    ssc = StreamingContext(0.5, clock=clock, defaultParallelism=1, jobName="wc")
    ssc.addStreamingListener(MetricsListener(metrics, "wc", lambda: ssc.input_sources))

    def explode(x: int) -> int:
        if x == 4:
            raise ValueError("bad record")
        return x

    ssc.queueStream([[1, 2, 3], [4]]).map(explode).foreachRDD(lambda rdd: rdd.collect())
    ssc._prepare()
    clock.set_time(700)  # the first batch (500 ms) starts 200 ms late
    run_batches(ssc, 2)
    ssc.stop()

    assert value(registry, "dstreams_batches_total", job_name="wc", status="completed") == 1
    assert value(registry, "dstreams_batches_total", job_name="wc", status="failed") == 1
    assert value(registry, "dstreams_errors_total", job_name="wc", kind="batch") == 1
    assert value(registry, "dstreams_input_records_total", job_name="wc") == 4
    assert value(registry, "dstreams_batch_records_count", job_name="wc") == 2
    assert value(registry, "dstreams_batch_records_sum", job_name="wc") == 4
    assert value(registry, "dstreams_last_completed_batch_timestamp_seconds", job_name="wc") == 1.0
    assert value(registry, "dstreams_batch_processing_seconds_count", job_name="wc") == 2
    assert value(registry, "dstreams_state_commit_seconds_count", job_name="wc") == 2
    assert value(registry, "dstreams_batch_scheduling_delay_seconds_count", job_name="wc") == 2
    # 200 ms late for the first batch; the second runs at its time
    assert value(registry, "dstreams_batch_scheduling_delay_seconds_sum", job_name="wc") == 0.2


def test_series_exist_at_zero_before_any_batch() -> None:
    """Dashboards and alerts on failures need the series before the first failure."""
    registry = CollectorRegistry()
    MetricsListener(DStreamsMetrics(registry), "idle")
    assert value(registry, "dstreams_batches_total", job_name="idle", status="failed") == 0
    assert value(registry, "dstreams_batches_total", job_name="idle", status="completed") == 0
    for kind in ("batch", "kafka_consume", "kafka_commit"):
        assert value(registry, "dstreams_errors_total", job_name="idle", kind=kind) == 0


class FakeKafkaSource:
    """The three read-only members the listener uses of a KafkaSource."""

    def __init__(self) -> None:
        self.last_offset_ranges: list[OffsetSpan] = []
        self.lag: dict[tuple[str, int], int] = {}
        self.error_counts = {"kafka_consume": 0, "kafka_commit": 0}

    def partition_lag(self) -> dict[tuple[str, int], int]:
        return dict(self.lag)


def complete(listener: MetricsListener, batch_ms: int, records: int) -> None:
    info = BatchInfo(batch_ms, batch_ms, batch_ms, batch_ms + 5, records)
    listener.onBatchStarted(BatchEvent(info))
    listener.onBatchCompleted(BatchEvent(info))


def test_kafka_records_accumulate_and_lag_follows_the_owned_partitions() -> None:
    registry = CollectorRegistry()
    source = FakeKafkaSource()
    listener = MetricsListener(DStreamsMetrics(registry), "k", lambda: [source])

    source.last_offset_ranges = [OffsetSpan("t", 0, 0, 10, 10), OffsetSpan("t", 1, 5, 8, 2)]
    source.lag = {("t", 0): 7, ("t", 1): 0}
    complete(listener, 1000, 12)
    source.last_offset_ranges = [OffsetSpan("t", 0, 10, 13, 3)]
    source.lag = {("t", 0): 4}  # partition 1 was revoked
    source.error_counts = {"kafka_consume": 2, "kafka_commit": 1}
    complete(listener, 2000, 3)

    def kafka(name: str, partition: str) -> float | None:
        return value(registry, name, job_name="k", topic="t", partition=partition)

    assert kafka("dstreams_kafka_records_total", "0") == 13
    assert kafka("dstreams_kafka_records_total", "1") == 2
    assert kafka("dstreams_kafka_consumer_lag_records", "0") == 4
    assert kafka("dstreams_kafka_consumer_lag_records", "1") is None
    assert value(registry, "dstreams_errors_total", job_name="k", kind="kafka_consume") == 2
    assert value(registry, "dstreams_errors_total", job_name="k", kind="kafka_commit") == 1


def test_exposition_follows_prometheus_naming() -> None:
    registry = CollectorRegistry()
    complete(MetricsListener(DStreamsMetrics(registry), "n", lambda: [FakeKafkaSource()]), 1, 1)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert families
    for family in families:
        assert family.name.startswith("dstreams_")
        for sample in family.samples:
            assert "key" not in sample.labels
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created"))
            if family.type == "histogram":
                assert family.name.endswith(("_seconds", "_records"))


def test_registries_are_independent() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    complete(MetricsListener(DStreamsMetrics(a), "j"), 1000, 5)
    MetricsListener(DStreamsMetrics(b), "j")
    assert value(a, "dstreams_input_records_total", job_name="j") == 5
    assert value(b, "dstreams_input_records_total", job_name="j") == 0


def test_a_second_metric_set_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    DStreamsMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        DStreamsMetrics(registry)
