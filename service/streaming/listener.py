"""StreamingListener and the small event objects it receives, shaped like PySpark's Java ones.

PySpark's events are py4j proxies (``batchCompleted.batchInfo().batchTime().milliseconds()``);
these are plain objects with the same accessor methods, so listener code ports unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Time:
    """Spark's ``org.apache.spark.streaming.Time``."""

    ms: int

    def milliseconds(self) -> int:
        return self.ms

    def __str__(self) -> str:
        return f"{self.ms} ms"


@dataclass
class OutputOperationInfo:
    _batch_ms: int
    _id: int
    _name: str
    _start_ms: int | None = None
    _end_ms: int | None = None
    _failure: str | None = None

    def batchTime(self) -> Time:
        return Time(self._batch_ms)

    def id(self) -> int:
        return self._id

    def name(self) -> str:
        return self._name

    def description(self) -> str:
        return self._name

    def startTime(self) -> int:
        return -1 if self._start_ms is None else self._start_ms

    def endTime(self) -> int:
        return -1 if self._end_ms is None else self._end_ms

    def failureReason(self) -> str | None:
        return self._failure

    def duration(self) -> int:
        if self._start_ms is None or self._end_ms is None:
            return -1
        return self._end_ms - self._start_ms


@dataclass(frozen=True)
class StreamInputInfo:
    """Spark's ``StreamInputInfo``: what one input stream took for a batch."""

    _input_stream_id: int
    _num_records: int
    _metadata: dict[str, Any] = field(default_factory=dict)

    def inputStreamId(self) -> int:
        return self._input_stream_id

    def numRecords(self) -> int:
        return self._num_records

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def metadataDescription(self) -> str | None:
        description = self._metadata.get("Description")
        return None if description is None else str(description)


@dataclass
class BatchInfo:
    _batch_ms: int
    _submission_ms: int
    _start_ms: int | None = None
    _end_ms: int | None = None
    _num_records: int = 0
    _outputs: dict[int, OutputOperationInfo] = field(default_factory=dict)
    _inputs: dict[int, StreamInputInfo] = field(default_factory=dict)
    # not in Spark's BatchInfo: what the metrics listener needs (service/observability)
    _failure: str | None = None
    _state_commit_s: float | None = None
    _retry_reason: str | None = None
    _stage_delays_ms: list[int] = field(default_factory=list)
    _input_records: int = 0

    def batchTime(self) -> Time:
        return Time(self._batch_ms)

    def submissionTime(self) -> int:
        return self._submission_ms

    def processingStartTime(self) -> int | None:
        return self._start_ms

    def processingEndTime(self) -> int | None:
        return self._end_ms

    # Spark's delays are -1 until known (the Python API turns Scala's None into -1)
    def schedulingDelay(self) -> int:
        return -1 if self._start_ms is None else self._start_ms - self._submission_ms

    def processingDelay(self) -> int:
        if self._start_ms is None or self._end_ms is None:
            return -1
        return self._end_ms - self._start_ms

    def totalDelay(self) -> int:
        return -1 if self._end_ms is None else self._end_ms - self._submission_ms

    def streamIdToInputInfo(self) -> dict[int, StreamInputInfo]:
        """Per input stream that reports what it took (Kafka, sockets; not queues or files)."""
        return dict(self._inputs)

    def snapshot(self) -> BatchInfo:
        """The batch as it stands, for one event: later events do not change it."""
        return replace(
            self,
            _outputs={k: replace(v) for k, v in self._outputs.items()},
            _inputs=dict(self._inputs),
            _stage_delays_ms=list(self._stage_delays_ms),
        )

    def numRecords(self) -> int:
        return self._num_records

    def outputOperationInfos(self) -> dict[int, OutputOperationInfo]:
        return self._outputs

    def failure_reason(self) -> str | None:
        """The batch's first error, None when every job of it succeeded (not a Spark method)."""
        return self._failure

    def state_commit_seconds(self) -> float | None:
        """How long persisting the batch's state took (not a Spark method)."""
        return self._state_commit_s

    def input_records(self) -> int:
        """The records the batch took from the job's inputs, whatever their kind (not a Spark
        method: ``numRecords`` counts only the inputs Spark reports, as Spark does)."""
        return self._input_records

    def stage_delays_ms(self) -> list[int]:
        """Past a shuffle through Kafka, per upstream batch a later stage computed in this one,
        how much later than that batch's time (not a Spark method): the shuffle's latency."""
        return self._stage_delays_ms

    def retry_reason(self) -> str | None:
        """Why the batch was not committed and its records are taken again, when that is not a
        job error (not a Spark method): "outage" (Kafka or Redis unavailable), "fenced" (its
        partitions moved), "outputs" (an output failed; the records' attempts are counted)."""
        return self._retry_reason


@dataclass(frozen=True)
class BatchEvent:
    """onBatchSubmitted / onBatchStarted / onBatchCompleted."""

    info: BatchInfo

    def batchInfo(self) -> BatchInfo:
        return self.info


@dataclass(frozen=True)
class StreamingStartedEvent:
    _time_ms: int

    def time(self) -> int:
        return self._time_ms


class StreamingListener:
    """Override the callbacks you need; exceptions in a listener are logged, never raised."""

    def onStreamingStarted(self, streamingStarted: Any) -> None:
        pass

    def onReceiverStarted(self, receiverStarted: Any) -> None:
        pass

    def onReceiverError(self, receiverError: Any) -> None:
        pass

    def onReceiverStopped(self, receiverStopped: Any) -> None:
        pass

    def onBatchSubmitted(self, batchSubmitted: Any) -> None:
        pass

    def onBatchStarted(self, batchStarted: Any) -> None:
        pass

    def onBatchCompleted(self, batchCompleted: Any) -> None:
        pass

    def onOutputOperationStarted(self, outputOperationStarted: Any) -> None:
        pass

    def onOutputOperationCompleted(self, outputOperationCompleted: Any) -> None:
        pass
