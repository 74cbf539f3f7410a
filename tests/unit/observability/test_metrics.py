"""The metrics listener on a real StreamingContext (manual clock, in-memory state)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.observability.metrics import DStreamsMetrics, MetricsListener
from service.runtime.clock import ManualClock
from service.sinks.dead_letter import DeadLetterPolicy, DeadLetterQueue, RecordTooLarge
from service.sources.kafka import KafkaRecord, OffsetSpan
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
    for status in ("completed", "failed", "retried"):
        assert value(registry, "dstreams_batches_total", job_name="idle", status=status) == 0
    for reason in ("outage", "fenced", "outputs"):
        assert (
            value(registry, "dstreams_batches_retried_total", job_name="idle", reason=reason) == 0
        )
    for kind in ("batch", "kafka_consume", "kafka_commit"):
        assert value(registry, "dstreams_errors_total", job_name="idle", kind=kind) == 0
    for event in ("replay", "resync"):
        assert (
            value(registry, "dstreams_kafka_partition_events_total", job_name="idle", event=event)
            == 0
        )


class FakeKafkaSource:
    """The read-only members the listener uses of a KafkaSource."""

    def __init__(self, dead_letters: DeadLetterQueue | None = None) -> None:
        self.last_offset_ranges: list[OffsetSpan] = []
        self.lag: dict[tuple[str, int], int] = {}
        self.error_counts = {"kafka_consume": 0, "kafka_commit": 0}
        self.partition_events = {"replay": 0, "resync": 0}
        self.offsets_lost: dict[tuple[str, int], int] = {}
        self.dead_letters = dead_letters

    def partition_lag(self) -> dict[tuple[str, int], int]:
        return dict(self.lag)


def complete(
    listener: MetricsListener,
    batch_ms: int,
    records: int,
    *,
    failure: str | None = None,
    retry: str | None = None,
) -> None:
    info = BatchInfo(batch_ms, batch_ms, batch_ms, batch_ms + 5, records)
    info._input_records = records
    info._failure = failure
    info._retry_reason = retry
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


def test_retried_batches_count_by_reason_apart_from_failures() -> None:
    """A batch taken again is neither a job error nor progress: its records count once, later."""
    registry = CollectorRegistry()
    source = FakeKafkaSource()
    listener = MetricsListener(DStreamsMetrics(registry), "r", lambda: [source])
    source.last_offset_ranges = [OffsetSpan("t", 0, 0, 4, 4)]
    complete(listener, 1000, 4, failure="KafkaException: transport", retry="outage")
    complete(listener, 1000, 4, retry="outage")  # the ledger step met the outage
    complete(listener, 1000, 4, retry="fenced")
    complete(listener, 1000, 4, failure="RetryBatch: output raised", retry="outputs")
    complete(listener, 1000, 4)  # the same records, committed at last
    source.last_offset_ranges = []
    complete(listener, 2000, 0, failure="ValueError: broken state")

    def batches(status: str) -> float | None:
        return value(registry, "dstreams_batches_total", job_name="r", status=status)

    def retried(reason: str) -> float | None:
        return value(registry, "dstreams_batches_retried_total", job_name="r", reason=reason)

    assert (batches("retried"), batches("completed"), batches("failed")) == (4, 1, 1)
    assert (retried("outage"), retried("fenced"), retried("outputs")) == (2, 1, 1)
    assert value(registry, "dstreams_errors_total", job_name="r", kind="batch") == 1
    assert value(registry, "dstreams_input_records_total", job_name="r") == 4
    assert value(registry, "dstreams_batch_processing_seconds_count", job_name="r") == 2
    records = value(
        registry, "dstreams_kafka_records_total", job_name="r", topic="t", partition="0"
    )
    assert records == 4
    assert value(registry, "dstreams_batch_scheduling_delay_seconds_count", job_name="r") == 6


def test_a_retried_batch_leaves_the_last_completed_batch_time_alone() -> None:
    registry = CollectorRegistry()
    listener = MetricsListener(DStreamsMetrics(registry), "l")
    complete(listener, 1000, 1)
    complete(listener, 2000, 1, retry="outage")
    assert value(registry, "dstreams_last_completed_batch_timestamp_seconds", job_name="l") == 1.0


def test_counts_that_move_during_retries_are_exported_after_a_retried_batch() -> None:
    """During an outage every batch is retried: lag and errors must still follow."""
    registry = CollectorRegistry()
    source = FakeKafkaSource()
    listener = MetricsListener(DStreamsMetrics(registry), "o", lambda: [source])
    source.lag = {("t", 0): 40}
    source.error_counts = {"kafka_consume": 3, "kafka_commit": 0}
    source.partition_events = {"replay": 0, "resync": 1}
    complete(listener, 1000, 2, retry="outage")
    lag = value(
        registry, "dstreams_kafka_consumer_lag_records", job_name="o", topic="t", partition="0"
    )
    assert lag == 40
    assert value(registry, "dstreams_errors_total", job_name="o", kind="kafka_consume") == 3
    assert value(registry, "dstreams_errors_total", job_name="o", kind="batch") == 0
    assert (
        value(registry, "dstreams_kafka_partition_events_total", job_name="o", event="resync") == 1
    )


def test_partition_replays_and_resyncs_are_summed_over_sources() -> None:
    registry = CollectorRegistry()
    a, b = FakeKafkaSource(), FakeKafkaSource()
    listener = MetricsListener(DStreamsMetrics(registry), "p", lambda: [a, b])
    a.partition_events = {"replay": 2, "resync": 0}
    b.partition_events = {"replay": 1, "resync": 5}
    complete(listener, 1000, 0)

    def events(event: str) -> float | None:
        return value(registry, "dstreams_kafka_partition_events_total", job_name="p", event=event)

    assert (events("replay"), events("resync")) == (3, 5)


def test_input_lost_to_retention_is_a_counter_per_partition() -> None:
    registry = CollectorRegistry()
    source = FakeKafkaSource()
    listener = MetricsListener(DStreamsMetrics(registry), "r", lambda: [source])
    complete(listener, 1000, 0)
    name = "dstreams_kafka_offsets_lost_total"
    assert value(registry, name, job_name="r", topic="t", partition="2") is None
    source.offsets_lost = {("t", 2): 40}
    complete(listener, 2000, 0)
    assert value(registry, name, job_name="r", topic="t", partition="2") == 40


def record(offset: int) -> KafkaRecord:
    return KafkaRecord("orders", 0, offset, b"k", b"v")


@pytest.fixture
def dlq() -> Iterator[DeadLetterQueue]:
    """A real queue whose producer points at no broker: sending only queues (never flushed)."""
    queue = DeadLetterQueue(
        DeadLetterPolicy("orders-dlq"),
        "d",
        {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1000},
        flush_timeout_s=0.1,
    )
    yield queue
    queue.close()


def test_dead_letter_queue_counts_what_it_sends_by_reason(dlq: DeadLetterQueue) -> None:
    assert dlq.sent_by_reason == {"too_large": 0, "undecodable": 0, "job_error": 0}
    dlq.send(record(1), ValueError("boom"), 3)
    dlq.reject(record(2), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))
    dlq.send(record(3), ValueError("boom again"), 3)
    dlq.reject(record(4), RecordTooLarge("record of 99 bytes exceeds the limit of 16"))
    dlq.reject(record(5), ValueError("messageHandler raised"))
    assert dlq.sent_by_reason == {"too_large": 1, "undecodable": 2, "job_error": 2}
    assert dlq.sent == 5


def test_a_rejected_record_goes_straight_to_the_maximum_attempts(dlq: DeadLetterQueue) -> None:
    dlq.reject(record(1), ValueError("undecodable"))
    assert dlq.count_attempt(record(1)) == dlq.max_attempts + 1


def test_dead_letters_are_exported_by_topic_and_reason_from_zero(dlq: DeadLetterQueue) -> None:
    registry = CollectorRegistry()
    # two streams sharing one queue must not count its dead letters twice
    sources = [FakeKafkaSource(dlq), FakeKafkaSource(dlq)]
    listener = MetricsListener(DStreamsMetrics(registry), "d", lambda: sources)

    def sent(reason: str) -> float | None:
        return value(
            registry,
            "dstreams_dead_letters_total",
            job_name="d",
            dlq_topic="orders-dlq",
            reason=reason,
        )

    complete(listener, 1000, 0)
    assert (sent("too_large"), sent("undecodable"), sent("job_error")) == (0, 0, 0)
    dlq.reject(record(1), RecordTooLarge("too big"))
    dlq.send(record(2), ValueError("boom"), 3)
    complete(listener, 2000, 2, failure="RetryBatch: output raised", retry="outputs")
    assert (sent("too_large"), sent("undecodable"), sent("job_error")) == (1, 0, 1)
