"""Started while Kafka or Redis is down, the service waits instead of exiting (issue 9, hole 6).

Before: Redis unreachable exited 1 within a second with a traceback; Kafka unreachable exited 1
after ~61 s with ~215 raw librdkafka lines and ignored SIGTERM for ~55 s. On Kubernetes both
are a crash loop. Now it waits: /livez 200, /readyz 503 naming the dependency, one log line
for the wait (librdkafka's repeats held back), a SIGTERM honoured at once, and once the
dependency comes up the job starts by itself.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from service.devstack.process import free_port
from service.devstack.redis import RedisServer
from tests.e2e.support.fleet import Fleet, Instance

WAIT_S = 8.0


def _probe(instance: Instance, path: str) -> tuple[int, dict[str, object]]:
    port = instance.env["DSTREAMS_METRICS_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _until(predicate: object, timeout_s: float) -> bool:
    assert callable(predicate)
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def _instance(tmp_path: Path, kafka: str, redis_url: str, topics: tuple[str, str]) -> Instance:
    fleet = Fleet(
        tmp_path,
        job_args=list(topics),
        kafka_bootstrap=kafka,
        redis_url=redis_url,
        job_name=f"startup-{uuid.uuid4().hex[:8]}",
    )
    own = {"DSTREAMS_METRICS_PORT": str(free_port()), "DSTREAMS_SHUTDOWN_GRACE_SECONDS": "20"}
    instance = fleet.add(own)
    instance.env.update(own)
    return instance


def _assert_waiting_for(instance: Instance, dependency: str, name: str) -> str:
    """The instance is up, not ready, naming ``dependency``, and said so in one line; returns
    its logs."""
    assert _until(lambda: _probe(instance, "/readyz")[0] == 503, 20.0), instance.logs()
    time.sleep(WAIT_S)
    assert instance.alive(), instance.logs()
    status, body = _probe(instance, "/readyz")
    assert status == 503 and dependency in str(body["failed"]), body
    assert _probe(instance, "/livez")[0] == 200
    logs = instance.logs()
    assert logs.count(f"waits for {name} to answer") == 1, logs
    assert "Traceback" not in logs
    return logs


def test_redis_down_at_start_is_waited_for(
    tmp_path: Path, kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    port = free_port()
    instance = _instance(tmp_path, kafka_bootstrap, f"redis://127.0.0.1:{port}/0", topics)
    try:
        _assert_waiting_for(instance, "redis", "Redis")

        # Redis comes up on that port: the job starts by itself
        redis_server = RedisServer(tmp_path / "redis", port=port, appendfsync="always")
        redis_server.start()
        try:
            assert _until(lambda: _probe(instance, "/readyz")[0] == 200, 60.0), instance.logs()
            assert instance.terminate(timeout_s=30.0) == 0
        finally:
            redis_server.stop()
    finally:
        if instance.alive():
            instance.kill()


def test_kafka_down_at_start_is_waited_for_and_sigterm_is_honoured(
    tmp_path: Path, redis_url: str, topics: tuple[str, str]
) -> None:
    instance = _instance(tmp_path, f"127.0.0.1:{free_port()}", redis_url, topics)
    try:
        logs = _assert_waiting_for(instance, "kafka", "Kafka")
        # librdkafka's connection failures: a few kinds, each once a minute, not a flood
        assert logs.count("Connect to") <= 6, logs
        started = time.monotonic()
        assert instance.terminate(timeout_s=30.0) == 0, instance.logs()
        assert time.monotonic() - started < 15.0, "SIGTERM was not honoured promptly"
    finally:
        if instance.alive():
            instance.kill()
