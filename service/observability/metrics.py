"""Prometheus metrics of a streaming job, fed by a StreamingListener on the batch thread.

Everything lives in a registry the caller gives, so tests and several contexts never share the
process-wide default one. Kafka figures (records and lag per partition, client errors) are read
from the sources once per batch, on the batch thread that owns their consumers, and served by a
custom collector from that snapshot: a scrape never touches a consumer, and a revoked partition
simply disappears from the next scrape instead of leaving a stale gauge behind. The same
snapshot carries what the exactly-once machinery did (dead letters sent, partitions replayed or
resynced); whether Kafka and Redis answer is asked at scrape time, through the cached checks
``/readyz`` uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.streaming.listener import StreamingListener

PREFIX = "dstreams"
# retried: not committed, its records are taken again (BatchInfo.retry_reason); failed: a job
# of the batch raised (the job's own error)
BATCH_STATUSES = ("completed", "failed", "retried")
RETRY_REASONS = ("outage", "fenced", "outputs")
# error kinds always exported (at 0 until they happen) so dashboards and alerts see a series
ERROR_KINDS = ("batch", "kafka_consume", "kafka_commit")
PARTITION_EVENTS = ("replay", "resync", "regressed")

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
# (dead-letter topic, reason)
DeadLetterKey = tuple[str, str]


class DStreamsMetrics:
    """The job-level metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.batches = Counter(
            f"{PREFIX}_batches",
            "Batches finished, by outcome (failed: a job of the batch raised; retried: not"
            " committed, its records are taken again).",
            ["job_name", "status"],
            registry=registry,
        )
        self.retried = Counter(
            f"{PREFIX}_batches_retried",
            "Batches not committed and taken again, by reason: outage (Kafka or Redis"
            " unavailable), fenced (its partitions moved), outputs (an output failed).",
            ["job_name", "reason"],
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
        self.stage_delay = Histogram(
            f"{PREFIX}_shuffle_stage_delay_seconds",
            "Past a shuffle through Kafka: how long after an upstream batch's time the stage"
            " that reads the repartition topic computes that batch (the shuffle's added"
            " latency, in whole batch intervals).",
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
        for reason in RETRY_REASONS:
            self.retried.labels(job_name=job, reason=reason)
        for family in (self.processing, self.scheduling_delay, self.state_commit, self.stage_delay):
            family.labels(job_name=job)
        self.batch_records.labels(job_name=job)
        self.input_records.labels(job_name=job)
        self.snapshots.update(
            job,
            SourceFigures(
                errors=dict.fromkeys(ERROR_KINDS, 0), events=dict.fromkeys(PARTITION_EVENTS, 0)
            ),
        )

    def jobs(self) -> list[str]:
        """The jobs whose series exist (a listener was made for them)."""
        return self.snapshots.jobs()


@dataclass
class SourceFigures:
    """What one batch read from the sources: the batch's records per partition, and the lag and
    the cumulative counts as they stand after it."""

    records: dict[TopicPartitionKey, int] = field(default_factory=dict)
    lag: dict[TopicPartitionKey, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[DeadLetterKey, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    # input offsets deleted by retention before they were processed (cumulative)
    offsets_lost: dict[TopicPartitionKey, int] = field(default_factory=dict)


@dataclass
class JobSnapshot:
    """One job's Kafka figures, error, dead-letter and partition-event counts as of its last
    batch."""

    records: dict[TopicPartitionKey, int] = field(default_factory=dict)
    lag: dict[TopicPartitionKey, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[DeadLetterKey, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    offsets_lost: dict[TopicPartitionKey, int] = field(default_factory=dict)


class SnapshotCollector(Collector):
    """Serves per-partition records, consumer lag, errors by kind, dead letters and partition
    events of every job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobSnapshot] = {}

    def update(self, job: str, figures: SourceFigures) -> None:
        """Add a batch's records per partition; replace lag and the cumulative counts."""
        with self._lock:
            snap = self._jobs.setdefault(job, JobSnapshot())
            for tp, n in figures.records.items():
                snap.records[tp] = snap.records.get(tp, 0) + n
            snap.lag = dict(figures.lag)
            snap.errors.update(figures.errors)
            snap.dead_letters.update(figures.dead_letters)
            snap.events.update(figures.events)
            snap.offsets_lost.update(figures.offsets_lost)

    def jobs(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

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
        dead_letters = CounterMetricFamily(
            f"{PREFIX}_dead_letters",
            "Records sent to a dead-letter topic, by that topic and reason: too_large,"
            " undecodable, job_error.",
            labels=["job_name", "dlq_topic", "reason"],
        )
        events = CounterMetricFamily(
            f"{PREFIX}_kafka_partition_events",
            "Partitions replayed at a claim (a crashed owner published the batch) and resynced"
            " to the ledger's position after a gap.",
            labels=["job_name", "event"],
        )
        lost = CounterMetricFamily(
            f"{PREFIX}_kafka_offsets_lost",
            "Input offsets deleted by retention before the job processed them (a claim or"
            " resync found the recorded position below the log start): their records are"
            " missing from state and outputs, for good.",
            labels=["job_name", "topic", "partition"],
        )
        with self._lock:
            for job, snap in sorted(self._jobs.items()):
                for (topic, partition), n in sorted(snap.offsets_lost.items()):
                    lost.add_metric([job, topic, str(partition)], n)
                for (topic, partition), n in sorted(snap.records.items()):
                    records.add_metric([job, topic, str(partition)], n)
                for (topic, partition), n in sorted(snap.lag.items()):
                    lag.add_metric([job, topic, str(partition)], n)
                for kind, n in sorted(snap.errors.items()):
                    errors.add_metric([job, kind], n)
                for (dlq_topic, reason), n in sorted(snap.dead_letters.items()):
                    dead_letters.add_metric([job, dlq_topic, reason], n)
                for event, n in sorted(snap.events.items()):
                    events.add_metric([job, event], n)
        yield records
        yield lag
        yield errors
        yield dead_letters
        yield events
        yield lost

    def describe(self) -> Iterator[Metric]:
        # Without this, registering would call collect() to learn the names.
        return self.collect()


def _add(into: dict[Any, int], counts: Mapping[Any, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


def _kafka_figures(sources: Iterable[Any]) -> SourceFigures:
    """Records of the last batch, lag, and the cumulative counts of the sources that read Kafka."""
    figures = SourceFigures()
    queues: dict[int, Any] = {}
    for source in sources:
        if not hasattr(source, "partition_lag"):
            continue
        for span in source.last_offset_ranges:
            _add(figures.records, {(span.topic, span.partition): span.records})
        figures.lag.update(source.partition_lag())
        _add(figures.errors, source.error_counts)
        _add(figures.events, getattr(source, "partition_events", {}))
        _add(figures.offsets_lost, getattr(source, "offsets_lost", {}))
        dlq = getattr(source, "dead_letters", None)
        if dlq is not None:
            queues[id(dlq)] = dlq  # a queue shared by several streams is counted once
    for dlq in queues.values():
        topic = dlq.policy.topic
        _add(figures.dead_letters, {(topic, r): n for r, n in dlq.sent_by_reason.items()})
    return figures


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
        retry = info.retry_reason()
        figures = _kafka_figures(self._sources())
        if retry is not None:
            # Nothing of the batch is committed and its records come again in a later batch,
            # where they are counted: here only the retry and the counts that moved meanwhile.
            m.batches.labels(job_name=job, status="retried").inc()
            m.retried.labels(job_name=job, reason=retry).inc()
            figures.records = {}
            m.snapshots.update(job, figures)
            return
        failed = info.failure_reason() is not None
        m.batches.labels(job_name=job, status="failed" if failed else "completed").inc()
        self._failed_batches += int(failed)
        processing_ms = info.processingDelay()
        if processing_ms >= 0:
            m.processing.labels(job_name=job).observe(processing_ms / 1000.0)
        commit_s = info.state_commit_seconds()
        if commit_s is not None:
            m.state_commit.labels(job_name=job).observe(commit_s)
        for delay_ms in info.stage_delays_ms():
            m.stage_delay.labels(job_name=job).observe(delay_ms / 1000.0)
        n = info.input_records()
        m.batch_records.labels(job_name=job).observe(n)
        m.input_records.labels(job_name=job).inc(n)
        m.last_completed.labels(job_name=job).set(info.batchTime().milliseconds() / 1000.0)
        figures.errors["batch"] = self._failed_batches
        m.snapshots.update(job, figures)


DependencyCheck = Callable[[], str | None]
"""A cached dependency check (``health.CachedCheck``): None when the dependency answers."""


class DependencyCollector(Collector):
    """Serves whether each dependency answers, asked at scrape time of the checks ``/readyz``
    uses: cached and time-limited, so a scrape costs no more than a probe and never waits longer
    than the checks' timeouts. Asked at scrape time, not per batch, because during an outage
    batches pause, and a ledger call waiting for Redis finishes none at all."""

    def __init__(
        self, checks: Mapping[str, DependencyCheck], jobs: Callable[[], Iterable[str]]
    ) -> None:
        self._checks = dict(checks)
        self._jobs = jobs

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{PREFIX}_dependency_up",
            "1 when the dependency (kafka, redis) answers the readiness check, 0 when not;"
            " the job pauses and retries while one is down.",
            labels=["job_name", "dependency"],
        )

    def collect(self) -> Iterator[Metric]:
        up = self._family()
        jobs = sorted(set(self._jobs()))
        if jobs:
            answers = {name: check() is None for name, check in sorted(self._checks.items())}
            for job in jobs:
                for name, ok in answers.items():
                    up.add_metric([job, name], 1.0 if ok else 0.0)
        yield up

    def describe(self) -> Iterator[Metric]:
        # registering must not run the checks
        yield self._family()
