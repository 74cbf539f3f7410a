"""Which failures are outages of Kafka or Redis (the service pauses) and which are the job's."""

from __future__ import annotations

import threading

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)

from service.runtime.outage import Backoff, DependencyUnavailable, is_outage
from service.sinks.dead_letter import DeadLettersUnavailable
from service.sinks.kafka import KafkaSinkError, ProducerStuckError
from service.sinks.transaction import AmbiguousCommitError


def raised_from(outer: Exception, cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("refused"),
        BusyLoadingError("loading the dataset in memory"),
        redis.TimeoutError("timed out"),
        ClusterDownError("CLUSTERDOWN"),
        # issue 9, hole 6: a failover, a slot move and a full Redis wait too
        ReadOnlyError("You can't write against a read only replica."),
        TryAgainError("Multiple keys request during rehashing of slot"),
        MovedError("3999 127.0.0.1:6381"),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        DeadLettersUnavailable("2 of 2 dead letters to j-dlq not acknowledged (flush timed out)"),
        AmbiguousCommitError("batch 1000: commit of the transaction timed out"),
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
        KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)),
        KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE)),
        # init_transactions while the coordinator still completes our previous EndTxn (seen in
        # tests/e2e test_broker_paused_as_a_commit_is_sent: the process exited 1 on it)
        KafkaException(KafkaError(KafkaError.CONCURRENT_TRANSACTIONS)),
        ProducerStuckError("send_offsets_to_transaction did not return within 65 s"),
        DependencyUnavailable("batch 1 ms"),
        raised_from(
            KafkaSinkError("3 records not acknowledged"),
            KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)),
        ),
        raised_from(RuntimeError("in a job function"), redis.ConnectionError("refused")),
    ],
    ids=repr,
)
def test_outages(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("invalid literal for int() with base 10: 'x'"),
        ZeroDivisionError("division by zero"),
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION)),
        KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
        KafkaSinkError("records failed"),
        raised_from(
            KafkaSinkError("refused"),
            KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
        ),
    ],
    ids=repr,
)
def test_failures_of_the_job_or_its_records_are_not_outages(exc: BaseException) -> None:
    assert not is_outage(exc)


def test_a_cause_cycle_ends() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_outage(a)


class RecordingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return self.is_set()


def test_backoff_doubles_to_its_ceiling_resets_and_gives_way_to_a_stop() -> None:
    stop = RecordingEvent()
    backoff = Backoff(first=0.2, ceiling=1.0)
    assert [backoff.wait(stop) for _ in range(5)] == [False] * 5
    assert stop.timeouts == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.failures == 0
    backoff.wait(stop)
    assert stop.timeouts[-1] == 0.2
    stopped = threading.Event()
    stopped.set()
    assert Backoff(first=60.0).wait(stopped) is True  # a real Event: returns at once
