"""The endpoints over real HTTP, and the job wiring on a real threaded StreamingContext."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from service.config import load_settings
from service.observability.health import Verdict
from service.observability.http import ObservabilityServer
from service.observability.job import JobObservability
from service.streaming import StreamingContext


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def server() -> Iterator[tuple[ObservabilityServer, list[Verdict]]]:
    registry = CollectorRegistry()
    Counter("dstreams_probe_total", "a test counter", registry=registry).inc(3)
    verdicts = [Verdict(True, {}), Verdict(False, {"redis": "ConnectionError: refused"})]
    srv = ObservabilityServer(registry, lambda: verdicts[0], lambda: verdicts[1])
    srv.start()
    yield srv, verdicts
    srv.close()


def test_metrics_livez_readyz_and_404(server: tuple[ObservabilityServer, list[Verdict]]) -> None:
    srv, verdicts = server
    status, content_type, body = get(f"{srv.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "dstreams_probe_total 3.0" in body

    status, content_type, body = get(f"{srv.url}/livez")
    assert (status, content_type, json.loads(body)) == (
        200,
        "application/json",
        {"status": "ok", "failed": {}},
    )
    status, _, body = get(f"{srv.url}/readyz")
    assert status == 503
    assert json.loads(body)["failed"] == {"redis": "ConnectionError: refused"}

    verdicts[1] = Verdict(True, {})
    assert get(f"{srv.url}/readyz?verbose=1")[0] == 200
    verdicts[1] = Verdict(True, {}, {"input t[0]": "5 offsets deleted by retention"})
    status, _, body = get(f"{srv.url}/readyz")
    assert (status, json.loads(body)) == (
        200,
        {
            "status": "degraded",
            "failed": {},
            "degraded": {"input t[0]": "5 offsets deleted by retention"},
        },
    )
    assert get(f"{srv.url}/nope")[0] == 404


def test_server_binds_loopback_by_default(server: tuple[ObservabilityServer, object]) -> None:
    assert server[0].url.startswith("http://127.0.0.1:")


def wait_for(predicate: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_job_observability_attaches_to_the_active_context() -> None:
    conf = load_settings({"metrics_port": 0, "batch_interval_seconds": 0.05})
    obs = JobObservability(conf, registry=CollectorRegistry(), checks={})
    obs.start()
    ssc = StreamingContext(0.05, jobName="wired", defaultParallelism=1)
    try:
        assert get(f"{obs.server.url}/readyz")[0] == 503  # no context yet
        assert get(f"{obs.server.url}/livez")[0] == 200  # starting up
        ssc.queueStream([[1, 2], [3]], default=[0]).foreachRDD(lambda rdd: rdd.count())
        ssc.start()

        def completed() -> float:
            sample = obs.registry.get_sample_value(
                "dstreams_batches_total", {"job_name": "wired", "status": "completed"}
            )
            return sample or 0.0

        assert wait_for(lambda: completed() >= 3)
        assert get(f"{obs.server.url}/readyz")[0] == 200
        assert get(f"{obs.server.url}/livez")[0] == 200
        _, _, body = get(f"{obs.server.url}/metrics")
        assert 'dstreams_batches_total{job_name="wired",status="completed"}' in body
    finally:
        ssc.stop()
        status, _, body = get(f"{obs.server.url}/readyz")
        obs.close()
    assert status == 503
    assert "context" in json.loads(body)["failed"]
