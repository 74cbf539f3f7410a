"""Prometheus metrics of a streaming job, fed by a StreamingListener on the batch thread.

Everything lives in a registry the caller gives, so tests and several contexts never share the
process-wide default one. Kafka figures (records and lag per partition, client errors) are read
from the sources once per batch, on the batch thread that owns their consumers, and served by a
custom collector from that snapshot: a scrape never touches a consumer, and a revoked partition
simply disappears from the next scrape instead of leaving a stale gauge behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.streaming.listener import StreamingListener

PREFIX = "dstreams"
BATCH_STATUSES = ("completed", "failed")
# error kinds always exported (at 0 until they happen) so dashboards and alerts see a series
ERROR_KINDS = ("batch", "kafka_consume", "kafka_commit")

# seconds: from a fast in-memory batch to one that overruns a long interval
_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_RECORDS_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)

TopicPartitionKey = tuple[str, int]


class DStreamsMetrics:
    """The job-level metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.batches = Counter(
            f"{PREFIX}_batches",
            "Batches finished, by outcome (failed: a job of the batch raised).",
            ["job_name", "status"],
            registry=registry,
        )
        self.processing = Histogram(
            f"{PREFIX}_batch_processing_seconds",
            "Time from a batch's start to its state and offsets being persisted.",
            ["job_name"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.scheduling_delay = Histogram(
            f"{PREFIX}_batch_scheduling_delay_seconds",
            "How late a batch started versus its batch time (grows when batches overrun).",
            ["job_name"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.state_commit = Histogram(
            f"{PREFIX}_state_commit_seconds",
            "Time to persist one batch's state writes in the state store.",
            ["job_name"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.batch_records = Histogram(
            f"{PREFIX}_batch_records",
            "Input records per batch, all input streams together.",
            ["job_name"],
            buckets=_RECORDS_BUCKETS,
            registry=registry,
        )
        self.input_records = Counter(
            f"{PREFIX}_input_records",
            "Input records processed, all input streams together.",
            ["job_name"],
            registry=registry,
        )
        self.last_completed = Gauge(
            f"{PREFIX}_last_completed_batch_timestamp_seconds",
            "Batch time of the last completed batch, as a Unix timestamp.",
            ["job_name"],
            registry=registry,
        )
        self.snapshots = SnapshotCollector()
        registry.register(self.snapshots)

    def init_job(self, job: str) -> None:
        """Create the job's series at zero so rates, failures and alerts exist before events."""
        for status in BATCH_STATUSES:
            self.batches.labels(job_name=job, status=status)
        for family in (self.processing, self.scheduling_delay, self.state_commit):
            family.labels(job_name=job)
        self.batch_records.labels(job_name=job)
        self.input_records.labels(job_name=job)
        self.snapshots.update(job, {}, {}, dict.fromkeys(ERROR_KINDS, 0))


@dataclass
class JobSnapshot:
    """One job's Kafka figures and error counts as of its last batch."""

    records: dict[TopicPartitionKey, int] = field(default_factory=dict)
    lag: dict[TopicPartitionKey, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class SnapshotCollector(Collector):
    """Serves per-partition records, consumer lag and errors by kind of every job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobSnapshot] = {}

    def update(
        self,
        job: str,
        batch_records: dict[TopicPartitionKey, int],
        lag: dict[TopicPartitionKey, int],
        errors: dict[str, int],
    ) -> None:
        """Add a batch's records per partition; replace lag and the (cumulative) error counts."""
        with self._lock:
            snap = self._jobs.setdefault(job, JobSnapshot())
            for tp, n in batch_records.items():
                snap.records[tp] = snap.records.get(tp, 0) + n
            snap.lag = dict(lag)
            snap.errors.update(errors)

    def collect(self) -> Iterator[Metric]:
        records = CounterMetricFamily(
            f"{PREFIX}_kafka_records",
            "Kafka records handed to batches, by topic and partition.",
            labels=["job_name", "topic", "partition"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_kafka_consumer_lag_records",
            "Records of an owned partition not yet in a batch (high watermark - position"
            " + buffered), as of the last batch.",
            labels=["job_name", "topic", "partition"],
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_errors",
            "Errors by kind: batch (a job of the batch raised), kafka_consume, kafka_commit.",
            labels=["job_name", "kind"],
        )
        with self._lock:
            for job, snap in sorted(self._jobs.items()):
                for (topic, partition), n in sorted(snap.records.items()):
                    records.add_metric([job, topic, str(partition)], n)
                for (topic, partition), n in sorted(snap.lag.items()):
                    lag.add_metric([job, topic, str(partition)], n)
                for kind, n in sorted(snap.errors.items()):
                    errors.add_metric([job, kind], n)
        yield records
        yield lag
        yield errors

    def describe(self) -> Iterator[Metric]:
        # Without this, registering would call collect() to learn the names.
        return self.collect()


def _kafka_figures(
    sources: Iterable[Any],
) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int], dict[str, int]]:
    """Records of the last batch, lag and error counts of the sources that read Kafka."""
    records: dict[TopicPartitionKey, int] = {}
    lag: dict[TopicPartitionKey, int] = {}
    errors: dict[str, int] = {}
    for source in sources:
        if not hasattr(source, "partition_lag"):
            continue
        for span in source.last_offset_ranges:
            tp = (span.topic, span.partition)
            records[tp] = records.get(tp, 0) + span.records
        lag.update(source.partition_lag())
        for kind, n in source.error_counts.items():
            errors[kind] = errors.get(kind, 0) + n
    return records, lag, errors


class MetricsListener(StreamingListener):
    """Records each batch of one job; ``sources`` gives the context's input sources."""

    def __init__(
        self,
        metrics: DStreamsMetrics,
        job: str,
        sources: Callable[[], Iterable[Any]] = tuple,
    ) -> None:
        self._metrics = metrics
        self._job = job
        self._sources = sources
        self._failed_batches = 0
        metrics.init_job(job)

    def onBatchStarted(self, batchStarted: Any) -> None:
        info = batchStarted.batchInfo()
        started = info.processingStartTime()
        if started is not None:
            delay_s = max(0, started - info.batchTime().milliseconds()) / 1000.0
            self._metrics.scheduling_delay.labels(job_name=self._job).observe(delay_s)

    def onBatchCompleted(self, batchCompleted: Any) -> None:
        info = batchCompleted.batchInfo()
        m, job = self._metrics, self._job
        failed = info.failure_reason() is not None
        m.batches.labels(job_name=job, status="failed" if failed else "completed").inc()
        self._failed_batches += int(failed)
        processing_ms = info.processingDelay()
        if processing_ms is not None:
            m.processing.labels(job_name=job).observe(processing_ms / 1000.0)
        commit_s = info.state_commit_seconds()
        if commit_s is not None:
            m.state_commit.labels(job_name=job).observe(commit_s)
        n = info.numRecords()
        m.batch_records.labels(job_name=job).observe(n)
        m.input_records.labels(job_name=job).inc(n)
        m.last_completed.labels(job_name=job).set(info.batchTime().milliseconds() / 1000.0)
        records, lag, errors = _kafka_figures(self._sources())
        errors["batch"] = self._failed_batches
        m.snapshots.update(job, records, lag, errors)
