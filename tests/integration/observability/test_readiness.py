"""/readyz and dstreams_dependency_up follow the real Redis and Kafka going away and coming back
(issue 5)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from service.config import load_settings
from service.observability.job import JobObservability
from service.streaming import StreamingContext
from tests.support.services import ServiceHandle


def readyz(obs: JobObservability) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{obs.server.url}/readyz", timeout=15) as response:
            return response.status, json.loads(response.read())["failed"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["failed"]


def dependency_up(obs: JobObservability, dependency: str) -> float | None:
    """The gauge as a scrape serves it (the collector asks the cached checks)."""
    return obs.registry.get_sample_value(
        "dstreams_dependency_up", {"job_name": "readiness", "dependency": dependency}
    )


def eventually(predicate: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def observed(kafka_bootstrap: str, redis_url: str) -> Iterator[JobObservability]:
    """A running context (queue input, state in memory) watched with the real dependency checks."""
    conf = load_settings(
        {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "redis_url": redis_url,
            "metrics_port": 0,
            "batch_interval_seconds": 0.1,
        }
    )
    obs = JobObservability(conf, registry=CollectorRegistry())
    obs.start()
    ssc = StreamingContext(0.1, jobName="readiness", defaultParallelism=1)
    ssc.queueStream([], default=[1]).foreachRDD(lambda rdd: rdd.count())
    ssc.start()
    try:
        assert eventually(lambda: readyz(obs)[0] == 200), readyz(obs)
        yield obs
    finally:
        ssc.stop()
        obs.close()


def test_readyz_is_503_naming_redis_while_redis_is_stopped(
    observed: JobObservability, redis_server: ServiceHandle
) -> None:
    # the series is labelled with the context's job once the watcher attached it
    assert eventually(lambda: dependency_up(observed, "redis") == 1.0)
    assert dependency_up(observed, "kafka") == 1.0
    redis_server.stop()
    try:
        assert eventually(lambda: readyz(observed)[0] == 503)
        status, failed = readyz(observed)
        assert status == 503
        assert set(failed) == {"redis"}
        assert eventually(lambda: dependency_up(observed, "redis") == 0.0)
        assert dependency_up(observed, "kafka") == 1.0
    finally:
        redis_server.start()
    assert eventually(lambda: readyz(observed)[0] == 200), readyz(observed)
    assert eventually(lambda: dependency_up(observed, "redis") == 1.0)


def test_readyz_is_503_naming_kafka_while_the_broker_is_stopped(
    observed: JobObservability, kafka_broker: ServiceHandle
) -> None:
    kafka_broker.stop()
    try:
        assert eventually(lambda: readyz(observed)[0] == 503)
        status, failed = readyz(observed)
        assert status == 503
        assert set(failed) == {"kafka"}
        assert eventually(lambda: dependency_up(observed, "kafka") == 0.0)
        assert dependency_up(observed, "redis") == 1.0
    finally:
        kafka_broker.start()
    assert eventually(lambda: readyz(observed)[0] == 200, 120), readyz(observed)
    assert eventually(lambda: dependency_up(observed, "kafka") == 1.0, 120)
