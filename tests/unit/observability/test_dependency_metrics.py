"""dstreams_dependency_up: the readiness checks, served at scrape time from their cache."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from service.config import load_settings
from service.observability.health import CachedCheck
from service.observability.job import JobObservability
from service.observability.metrics import DependencyCollector


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Dependency:
    """A check that answers while ``up`` and counts how often it was asked."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("refused")


def up(registry: CollectorRegistry, job: str, dependency: str) -> float | None:
    return registry.get_sample_value(
        "dstreams_dependency_up", {"job_name": job, "dependency": dependency}
    )


def test_gauge_follows_each_dependency_and_every_job() -> None:
    clock = Monotonic()
    kafka, redis = Dependency(), Dependency()
    checks = {"kafka": CachedCheck(kafka, 5.0, clock), "redis": CachedCheck(redis, 1.0, clock)}
    registry = CollectorRegistry()
    registry.register(DependencyCollector(checks, lambda: ["b", "a"]))
    for job in ("a", "b"):
        assert (up(registry, job, "kafka"), up(registry, job, "redis")) == (1.0, 1.0)
    redis.up = False
    clock.now += 1
    for job in ("a", "b"):
        assert (up(registry, job, "kafka"), up(registry, job, "redis")) == (1.0, 0.0)
    redis.up = True
    kafka.up = False
    clock.now += 5
    assert (up(registry, "a", "kafka"), up(registry, "a", "redis")) == (0.0, 1.0)


def test_scrapes_share_the_cached_answers() -> None:
    """A scrape costs no more than a probe: within the TTL, no check runs again."""
    clock = Monotonic()
    redis = Dependency()
    cached = CachedCheck(redis, 1.0, clock)
    registry = CollectorRegistry()
    registry.register(DependencyCollector({"redis": cached}, lambda: ["j"]))
    assert redis.calls == 0  # registering does not run the check
    generate_latest(registry)
    assert cached() is None  # what /readyz asks, in the same TTL
    generate_latest(registry)
    assert redis.calls == 1
    clock.now += 1
    generate_latest(registry)
    assert redis.calls == 2


def test_no_job_no_series_and_no_check() -> None:
    redis = Dependency()
    registry = CollectorRegistry()
    registry.register(DependencyCollector({"redis": CachedCheck(redis, 0)}, list))
    assert "dstreams_dependency_up{" not in generate_latest(registry).decode()
    assert redis.calls == 0


def test_job_observability_labels_the_configured_job_until_a_context_attaches() -> None:
    """An outage while the job starts shows under its configured name."""
    redis = Dependency()
    redis.up = False
    conf = load_settings({"metrics_port": 0, "job_name": "configured"})
    obs = JobObservability(
        conf, registry=CollectorRegistry(), checks={"redis": CachedCheck(redis, 0)}
    )
    try:
        assert up(obs.registry, "configured", "redis") == 0.0
        obs.metrics.init_job("from-context")  # what attaching a context's listener does
        assert up(obs.registry, "from-context", "redis") == 0.0
        assert up(obs.registry, "configured", "redis") is None
    finally:
        obs.close()
