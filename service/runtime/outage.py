"""Telling an outage of Kafka or Redis from a failure of the job, and waiting one out.

A batch that fails because the broker or Redis does not answer is not the job's fault and not
its records' fault: it must neither stop the service (PySpark would re-raise it from
``awaitTermination``) nor count attempts towards the dead-letter topic. The batch is abandoned
(nothing of it committed, its records handed out again) and taken again after a growing pause,
until the dependency answers; meanwhile /readyz reports the dependency down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import redis
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import AskError, ClusterDownError, OutOfMemoryError, TryAgainError

# Errors of a Redis that is down, restarting (loading its AOF), failing over or resharding, or
# full (OOM under noeviction: it answers again once memory is freed or added).
_REDIS_OUTAGES = (
    redis.ConnectionError,  # includes BusyLoadingError
    redis.TimeoutError,
    redis.ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    AskError,  # and MOVED
    OutOfMemoryError,
)
# librdkafka errors of a broker that is unreachable or busy electing; a job's own records
# never cause these.
_KAFKA_OUTAGES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        # the transaction coordinator is still completing our previous transaction (e.g. the
        # EndTxn of a commit whose reply was lost, handled once a paused broker resumes):
        # init_transactions succeeds once it is done
        KafkaError.CONCURRENT_TRANSACTIONS,
    }
)


class DependencyUnavailable(RuntimeError):
    """Kafka or Redis did not answer: the batch is taken again once they do."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says Kafka or Redis is unavailable."""
    for cause in _chain(exc):
        if isinstance(cause, (DependencyUnavailable, *_REDIS_OUTAGES)):
            return True
        if isinstance(cause, KafkaException) and cause.args:
            error = cause.args[0]
            if isinstance(error, KafkaError) and error.code() in _KAFKA_OUTAGES:
                return True
        if getattr(cause, "outage", False):  # e.g. a producer stuck in a transactional call
            return True
    return False


class Backoff:
    """Pauses that double from ``first`` to ``ceiling`` while an outage lasts; ``wait`` returns
    early (True) when ``stop`` is set, so a graceful stop is never held up by an outage."""

    def __init__(self, first: float = 0.2, ceiling: float = 5.0) -> None:
        self._first = first
        self._ceiling = ceiling
        self._next = first
        self.failures = 0

    def wait(self, stop: threading.Event) -> bool:
        delay, self._next = self._next, min(self._next * 2, self._ceiling)
        self.failures += 1
        return stop.wait(delay)

    def reset(self) -> None:
        self._next = self._first
        self.failures = 0
