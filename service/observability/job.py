"""Observability of a job run by ``python -m service run``: endpoints and listeners, wired once.

Whatever shape the job has (docs/jobs.md), its StreamingContext is built by job code the runner
does not see, so a watcher thread attaches the listeners to each context as it becomes active.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry

from service.config import Settings
from service.observability.health import (
    BatchProgress,
    CachedCheck,
    Liveness,
    Readiness,
    exactness_lost,
    kafka_check,
    redis_check,
)
from service.observability.http import ObservabilityServer
from service.observability.metrics import DependencyCollector, DStreamsMetrics, MetricsListener

if TYPE_CHECKING:
    from service.streaming.context import StreamingContext

log = structlog.get_logger(__name__)

KAFKA_CHECK_TTL_SECONDS = 5.0
REDIS_CHECK_TTL_SECONDS = 1.0
_WATCH_SECONDS = 0.05


def _active_context() -> StreamingContext | None:
    from service.streaming.context import StreamingContext

    return StreamingContext.current()


def default_checks(conf: Settings) -> dict[str, CachedCheck]:
    return {
        "kafka": CachedCheck(kafka_check(conf.kafka_bootstrap_servers), KAFKA_CHECK_TTL_SECONDS),
        "redis": CachedCheck(redis_check(conf.redis_url), REDIS_CHECK_TTL_SECONDS),
    }


class JobObservability:
    """The registry, the endpoints and the listeners of one process's streaming job."""

    def __init__(
        self,
        conf: Settings,
        *,
        registry: CollectorRegistry | None = None,
        checks: Mapping[str, CachedCheck] | None = None,
        context: Callable[[], StreamingContext | None] = _active_context,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = DStreamsMetrics(self.registry)
        self.progress = BatchProgress()
        self._context = context
        interval_ms = round(conf.batch_interval_seconds * 1000)
        dependencies = checks if checks is not None else default_checks(conf)
        self._job_name = conf.job_name
        self.registry.register(DependencyCollector(dependencies, self._job_names))
        self.liveness = Liveness(context, self.progress, interval_ms, dependencies=dependencies)
        self.readiness = Readiness(context, dependencies, self._degraded)
        self.server = ObservabilityServer(
            self.registry,
            self.liveness.check,
            self.readiness.check,
            host=conf.metrics_host,
            port=conf.metrics_port or 0,
        )
        self._attached: weakref.WeakSet[StreamingContext] = weakref.WeakSet()
        self._stop = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, name="dstreams-observability", daemon=True
        )

    def attach(self, ssc: StreamingContext) -> None:
        """Register the listeners on ``ssc`` (once); done by the watcher for the active one."""
        if ssc in self._attached:
            return
        self._attached.add(ssc)
        self.progress.mark()
        ssc.addStreamingListener(self.progress)
        ssc.addStreamingListener(
            MetricsListener(self.metrics, ssc.jobName, lambda: ssc.input_sources)
        )

    def _degraded(self) -> dict[str, str]:
        ssc = self._context()
        return {} if ssc is None else exactness_lost(ssc.input_sources)

    def _job_names(self) -> list[str]:
        """The jobs whose contexts were attached; before the first, the configured name, so an
        outage at start-up shows too."""
        names = self.metrics.jobs()
        if not names and self._job_name is not None:
            names = [self._job_name]
        return names

    def start(self) -> None:
        self.server.start()
        self._watcher.start()
        log.info("observability_serving", url=self.server.url)

    def close(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join()
        self.server.close()

    def _watch(self) -> None:
        while not self._stop.wait(_WATCH_SECONDS):
            ssc = self._context()
            if ssc is not None:
                self.attach(ssc)


@contextmanager
def serve_observability(conf: Settings) -> Iterator[JobObservability | None]:
    """Endpoints and metrics for the job while it runs; nothing when no metrics port is set."""
    if conf.metrics_port is None:
        yield None
        return
    observability = JobObservability(conf)
    observability.start()
    try:
        yield observability
    finally:
        observability.close()
