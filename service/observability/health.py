"""Liveness and readiness of a job, answered without touching the batch thread.

Liveness asks "should the pod be restarted?": the batch loop must be running and must have
started or finished a batch recently. Readiness asks "can the job do its work right now?": Kafka
and Redis answer and the context is active. The dependency checks are cached for a few seconds
so a probe storm cannot become a load on the broker, and each check has a short timeout so a
probe never hangs on a dead dependency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.streaming.listener import StreamingListener

ACTIVE = "ACTIVE"
INITIALIZED = "INITIALIZED"
# Liveness allows this many batch intervals without progress, and never less than the floor.
STALL_INTERVALS = 10
STALL_FLOOR_SECONDS = 60.0


class ContextLike(Protocol):
    def getState(self) -> str: ...

    @property
    def batchDurationMs(self) -> int: ...


def stall_bound_seconds(batch_interval_ms: int) -> float:
    """How long the batch loop may go without progress before it counts as stuck."""
    return max(STALL_INTERVALS * batch_interval_ms / 1000.0, STALL_FLOOR_SECONDS)


class BatchProgress(StreamingListener):
    """Marks the monotonic time of the last sign of life of the batch loop."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._last = monotonic()

    @property
    def last_progress(self) -> float:
        return self._last

    def mark(self) -> None:
        self._last = self._monotonic()

    def onStreamingStarted(self, streamingStarted: Any) -> None:
        self.mark()

    def onBatchStarted(self, batchStarted: Any) -> None:
        self.mark()

    def onBatchCompleted(self, batchCompleted: Any) -> None:
        self.mark()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # check name -> what failed (empty when ok)
    failed: Mapping[str, str]
    # what is wrong for good but is no reason to stop routing to the pod (e.g. input deleted by
    # retention before it was processed): shown, never hidden, in the /readyz body
    degraded: Mapping[str, str] = field(default_factory=dict)


class Liveness:
    """Live while no context has started yet (within the bound) or the active one progresses.

    A context whose loop died is STOPPED (the scheduler stops it on any loop error), so "ACTIVE
    and progressing" covers both a dead and a stuck loop. A loop that waits for Kafka or Redis
    to come back (``dependencies`` failing) is not stuck: the service pauses through an outage,
    and a restart would not bring the dependency back.
    """

    def __init__(
        self,
        context: Callable[[], ContextLike | None],
        progress: BatchProgress,
        default_interval_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
        dependencies: Mapping[str, CachedCheck] | None = None,
    ) -> None:
        self._context = context
        self._dependencies = dict(dependencies or {})
        self._progress = progress
        self._default_interval_ms = default_interval_ms
        self._monotonic = monotonic
        self._seen_context = False

    def check(self) -> Verdict:
        ssc = self._context()
        interval_ms = self._default_interval_ms if ssc is None else ssc.batchDurationMs
        bound = stall_bound_seconds(interval_ms)
        idle = self._monotonic() - self._progress.last_progress
        if ssc is None:
            if self._seen_context:
                return Verdict(False, {"context": "the streaming context has stopped"})
            if idle > bound:
                return Verdict(False, {"context": f"no streaming context after {idle:.0f}s"})
            return Verdict(True, {})
        self._seen_context = True
        state = ssc.getState()
        if state == INITIALIZED and (idle <= bound or self._waiting_for_dependency()):
            return Verdict(True, {})  # starting, or waiting at start for Kafka or Redis
        if state != ACTIVE:
            return Verdict(False, {"context": f"streaming context is {state}"})
        if idle > bound and not self._waiting_for_dependency():
            return Verdict(False, {"batches": f"no batch progress for {idle:.0f}s"})
        return Verdict(True, {})

    def _waiting_for_dependency(self) -> bool:
        return any(check() is not None for check in self._dependencies.values())


Check = Callable[[], None]
"""A dependency check: returns when the dependency answers, raises with the reason otherwise."""


class CachedCheck:
    """Runs a check at most once per ``ttl`` seconds; concurrent callers share one run."""

    def __init__(
        self, check: Check, ttl: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._at: float | None = None
        self._error: str | None = None

    def __call__(self) -> str | None:
        """None when the dependency answered, else a short reason."""
        with self._lock:
            now = self._monotonic()
            if self._at is None or now - self._at >= self._ttl:
                try:
                    self._check()
                    self._error = None
                except Exception as exc:
                    self._error = f"{type(exc).__name__}: {exc}"[:200]
                self._at = self._monotonic()
            return self._error


class Readiness:
    """Ready when every dependency check passes and the context is active."""

    def __init__(
        self,
        context: Callable[[], ContextLike | None],
        checks: Mapping[str, CachedCheck],
        degraded: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._context = context
        self._checks = dict(checks)
        self._degraded = degraded

    def check(self) -> Verdict:
        failed: dict[str, str] = {}
        ssc = self._context()
        if ssc is None:
            failed["context"] = "no active streaming context"
        elif ssc.getState() != ACTIVE:
            failed["context"] = f"streaming context is {ssc.getState()}"
        for name, check in self._checks.items():
            error = check()
            if error is not None:
                failed[name] = error
        return Verdict(not failed, failed, dict(self._degraded()))


def exactness_lost(sources: Iterable[Any]) -> dict[str, str]:
    """Input partitions where retention deleted records before the job processed them (the
    sources' ``offsets_lost``): those records are missing from state and outputs for good."""
    notes: dict[str, str] = {}
    for source in sources:
        for (topic, partition), n in sorted(getattr(source, "offsets_lost", {}).items()):
            notes[f"input {topic}[{partition}]"] = (
                f"{n} offsets deleted by retention before they were processed: their records "
                "are missing from state and outputs"
            )
    return notes


def kafka_check(bootstrap_servers: str, timeout: float = 2.0) -> Check:
    """A metadata request for no topic in particular: the cheapest call every broker answers."""
    import logging

    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        # librdkafka's own connection errors go to logging, not to raw stderr
        "logger": logging.getLogger("service.observability.kafka_check"),
    }
    admin = AdminClient(config)

    def check() -> None:
        metadata = admin.list_topics(timeout=timeout)
        if not metadata.brokers:
            raise ConnectionError("no broker in the cluster metadata")

    return check


def redis_check(url: str, timeout: float = 1.0) -> Check:
    """PING with short timeouts and no retries, on a connection kept between probes.

    On Redis Cluster every master must answer. The client is made at the first probe, since a
    cluster client asks for the slot map when made and Redis may be down when the job starts.
    """
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    from service.state.redis_client import AnyRedis, connect

    clients: list[AnyRedis] = []

    def check() -> None:
        if not clients:
            clients.append(
                connect(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            )
        client = clients[0]
        if isinstance(client, RedisCluster):
            cluster: Any = client
            answered = cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            answered = client.ping()
        if not answered:
            raise ConnectionError("PING was not answered with PONG")

    return check
