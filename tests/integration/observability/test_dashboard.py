"""Every dashboard query answers from a real Prometheus scraping a real job on Kafka and Redis.

Grafana is not run: a panel works when its PromQL, with Grafana's variables filled in, returns
series from what the job exports. Prometheus (Debian's ``prometheus``, installed by scripts/setup)
is required: without it this test fails rather than skips, so CI cannot silently lose it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "dstreams.json"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"

# An output that raises on a poison record: its batches are retried (reason "outputs") until
# the record's attempts reach the maximum and it is dead-lettered (docs/dead-letters.md). Run
# with DSTREAMS_SHUFFLE=kafka, the state's re-keyed pairs go through a repartition topic, for
# the shuffle panels.
JOB = """
import sys

from service.streaming.kafka import KafkaUtils


def refuse_poison(rdd):
    if rdd.filter(lambda kv: kv[1] == "poison").count():
        raise ValueError("poison record")


def setup(ssc):
    pairs = KafkaUtils.createDirectStream(ssc, [sys.argv[1]], {})
    counts = pairs.map(lambda kv: (kv[1], 1)).updateStateByKey(
        lambda new, old: sum(new) + (old or 0)
    )
    counts.foreachRDD(lambda rdd: rdd.count())
    pairs.foreachRDD(refuse_poison)
"""


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows included."""
    found: list[tuple[str, str]] = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            visit(panel.get("panels", []))
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))

    visit(dashboard["panels"])
    return found


def substitute(expr: str, job: str) -> str:
    return (
        expr.replace("$__rate_interval", "10s")
        .replace("$__range", "5m")
        .replace("$__interval", "2s")
        .replace("$job", job)
    )


def prom_query(base: str, query: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http_get(url)
    assert status == 200, f"{query}: HTTP {status} {body}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    result: list[Any] = answer["data"]["result"]
    return result


@pytest.fixture
def producing(kafka_bootstrap: str, create_topic: Callable[..., str]) -> Iterator[str]:
    """A two-partition topic fed with a few hundred records a second while the test runs."""
    topic = create_topic(partitions=2)
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        i = 0
        while not stop.is_set():
            for _ in range(20):
                producer.produce(topic, key=str(i % 7).encode(), value=f"w{i % 13}".encode())
                i += 1
            producer.poll(0)
            stop.wait(0.05)
        producer.flush(10)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    yield topic
    stop.set()
    thread.join()


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def end(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def test_every_panel_query_returns_series(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    producing: str,
    create_topic: Callable[..., str],
) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "prometheus is not installed: run scripts/setup"

    job_name = f"obs-{uuid.uuid4().hex[:8]}"
    create_topic(f"{job_name}-dlq")  # the job's default dead-letter topic
    metrics_port = free_port()
    job_file = tmp_path / "observed_job.py"
    job_file.write_text(JOB)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "DSTREAMS_JOB_NAME": job_name,
        "DSTREAMS_BATCH_INTERVAL_SECONDS": "0.5",
        "DSTREAMS_METRICS_PORT": str(metrics_port),
        "DSTREAMS_SHUFFLE": "kafka",
    }
    job = start(
        [sys.executable, "-m", "service", "run", str(job_file), producing],
        tmp_path / "job.log",
        env,
    )
    prom_port = free_port()
    # the shipped example configuration and alert rules, pointed at this job, scraping every 1s
    example = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    config = example.replace("interval: 15s", "interval: 1s").replace(
        '"localhost:9108"', f'"127.0.0.1:{metrics_port}"'
    )
    assert config.count("interval: 1s") == 2 and str(metrics_port) in config
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    prom = start(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    base = f"http://127.0.0.1:{prom_port}"
    job_url = f"http://127.0.0.1:{metrics_port}"
    try:

        def job_serving() -> bool:
            assert job.poll() is None, (tmp_path / "job.log").read_text()
            return http_get(f"{job_url}/readyz")[0] == 200

        wait_for(job_serving, 60, "the job's /readyz to answer 200")
        assert http_get(f"{job_url}/livez")[0] == 200
        names = [
            "dstreams_batches_total",
            "dstreams_batch_processing_seconds_bucket",
            "dstreams_batch_scheduling_delay_seconds_bucket",
            "dstreams_state_commit_seconds_bucket",
            "dstreams_kafka_records_total",
            "dstreams_kafka_consumer_lag_records",
            "dstreams_last_completed_batch_timestamp_seconds",
            "dstreams_errors_total",
            "dstreams_batches_retried_total",
            "dstreams_dependency_up",
            "dstreams_dead_letters_total",
            "dstreams_kafka_partition_events_total",
            "dstreams_shuffle_stage_delay_seconds_bucket",
        ]

        def exported() -> bool:
            status, exposition = http_get(f"{job_url}/metrics")
            assert status == 200
            samples = {
                sample.name
                for family in text_string_to_metric_families(exposition)
                for sample in family.samples
                if sample.labels.get("job_name") == job_name
            }
            return samples >= set(names)

        wait_for(exported, 60, f"/metrics to export {names}")
        poison = Producer({"bootstrap.servers": kafka_bootstrap})
        poison.produce(producing, key=b"p", value=b"poison")
        assert poison.flush(30) == 0

        wait_for(lambda: http_get(f"{base}/-/ready")[0] == 200, 60, "Prometheus to be ready")
        queries = panel_queries(json.loads(DASHBOARD.read_text()))
        assert len(queries) >= 6

        def all_answer() -> bool:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            return all(prom_query(base, substitute(q, job_name)) for _, q in queries)

        with contextlib.suppress(AssertionError):  # the asserts below say which panel is empty
            wait_for(all_answer, 90, "every panel query to return series")
        empty = [
            f"{title!r}: {query}"
            for title, query in queries
            if not prom_query(base, substitute(query, job_name))
        ]
        assert not empty, "panels without data:\n" + "\n".join(empty)

        status, body = http_get(f"{base}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        assert status == 200 and [g["name"] for g in groups] == ["kafka-dstreams"]
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        # the $job variable's own query
        status, body = http_get(
            f"{base}/api/v1/label/job_name/values?"
            + urllib.parse.urlencode({"match[]": "dstreams_batches_total"})
        )
        assert status == 200
        assert job_name in json.loads(body)["data"]
        # throughput is real: records were counted on both partitions
        partitions = prom_query(
            base, f'sum by (partition) (dstreams_kafka_records_total{{job_name="{job_name}"}}) > 0'
        )
        assert {r["metric"]["partition"] for r in partitions} == {"0", "1"}

        # the poison record: its batches retried for their output, then it was dead-lettered
        def seen(query: str) -> bool:
            return bool(prom_query(base, query.replace("JOB", job_name)))

        wait_for(
            lambda: seen('dstreams_dead_letters_total{job_name="JOB",reason="job_error"} > 0'),
            90,
            "the poison record's dead letter in Prometheus",
        )
        assert seen('dstreams_batches_retried_total{job_name="JOB",reason="outputs"} > 0')
        assert seen('dstreams_batches_total{job_name="JOB",status="retried"} > 0')
        assert seen('dstreams_batches_total{job_name="JOB",status="failed"} == 0')
        up = prom_query(base, f'dstreams_dependency_up{{job_name="{job_name}"}} == 1')
        assert {r["metric"]["dependency"] for r in up} == {"kafka", "redis"}

        def dead_letter_alert_fires() -> bool:
            status, body = http_get(f"{base}/api/v1/alerts")
            assert status == 200
            return any(
                a["labels"]["alertname"] == "DStreamsDeadLetters"
                and a["labels"].get("job_name") == job_name
                and a["state"] == "firing"
                for a in json.loads(body)["data"]["alerts"]
            )

        wait_for(dead_letter_alert_fires, 60, "the dead-letter alert to fire")
    finally:
        end(prom)
        code = end(job)
    assert code == 0, (tmp_path / "job.log").read_text()
