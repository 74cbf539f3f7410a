"""The shipped alert rules fire, and only fire, on the series they are about: ``promtool test
rules`` evaluates deploy/prometheus/alerts.yml over synthetic series with Prometheus's engine.

promtool comes with Debian's ``prometheus`` (scripts/setup); without it this fails, as the
dashboard test does, rather than skipping.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def alert(name: str, labels: dict[str, str], severity: str, summary: str) -> dict[str, Any]:
    return {"alertname": name, "labels": labels, "severity": severity, "summary": summary}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """One input series in promtool's expanding notation (``0+15x20``: 21 samples from 0 by 15)."""
    rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def run_promtool(tmp_path: Path, series: list[dict[str, str]], cases: list[dict[str, Any]]) -> None:
    """Each case: alertname, eval_time and the alerts expected to fire then."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed: run scripts/setup"
    tests = []
    for case in cases:
        expected = [
            {
                "exp_labels": {**a["labels"], "severity": a["severity"]},
                "exp_annotations": {"summary": a["summary"]},
            }
            for a in case["firing"]
        ]
        tests.append(
            {"eval_time": case["eval_time"], "alertname": case["alertname"], "exp_alerts": expected}
        )
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": series, "alert_rule_test": tests}],
    }
    # JSON is YAML: no YAML writer needed
    (tmp_path / "tests.yml").write_text(json.dumps(spec))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependency_down_fires_after_a_minute_and_only_for_that_dependency(
    tmp_path: Path,
) -> None:
    redis = {"job_name": "j", "dependency": "redis"}
    inputs = [
        # up for 1 minute, then down for 3 minutes, then up again
        series("dstreams_dependency_up", "1x4 0x12 1x4", job_name="j", dependency="redis"),
        series("dstreams_dependency_up", "1x20", job_name="j", dependency="kafka"),
    ]
    name = "DStreamsDependencyDown"
    redis_down = "j: redis has not answered for over a minute; the job is paused"
    run_promtool(
        tmp_path,
        inputs,
        [
            {"alertname": name, "eval_time": "1m", "firing": []},
            {"alertname": name, "eval_time": "1m45s", "firing": []},  # down 45 s: pending
            {
                "alertname": name,
                "eval_time": "2m30s",
                "firing": [alert(name, redis, "page", redis_down)],
            },
            {"alertname": name, "eval_time": "4m30s", "firing": []},  # answering again
        ],
    )


def test_dead_letters_fire_when_they_appear_even_in_a_new_series(tmp_path: Path) -> None:
    growing = {"job_name": "g", "dlq_topic": "g-dlq", "reason": "job_error"}
    fresh = {"job_name": "f", "dlq_topic": "f-dlq", "reason": "too_large"}
    inputs = [
        # at 0 for 5 minutes, then one dead letter, then none for 20 minutes
        series(
            "dstreams_dead_letters_total",
            "0x20 1x80",
            job_name="g",
            dlq_topic="g-dlq",
            reason="job_error",
        ),
        # a job whose first batch dead-letters: the series starts at 2 after 5 minutes
        series(
            "dstreams_dead_letters_total",
            "_x20 2x80",
            job_name="f",
            dlq_topic="f-dlq",
            reason="too_large",
        ),
        series(
            "dstreams_dead_letters_total",
            "0x100",
            job_name="q",
            dlq_topic="q-dlq",
            reason="job_error",
        ),
    ]
    name = "DStreamsDeadLetters"
    fresh_summary = "f: 2 records sent to f-dlq (too_large) in the last 10 minutes"
    growing_summary = "g: 1 records sent to g-dlq (job_error) in the last 10 minutes"
    run_promtool(
        tmp_path,
        inputs,
        [
            {"alertname": name, "eval_time": "4m", "firing": []},
            {
                "alertname": name,
                "eval_time": "6m",
                "firing": [
                    alert(name, fresh, "ticket", fresh_summary),
                    alert(name, growing, "ticket", growing_summary),
                ],
            },
            {
                "alertname": name,
                "eval_time": "14m",
                "firing": [
                    alert(name, fresh, "ticket", fresh_summary),
                    alert(name, growing, "ticket", growing_summary),
                ],
            },
            {"alertname": name, "eval_time": "20m", "firing": []},  # none for over 10 minutes
        ],
    )


def test_batches_retried_persistently_fires_on_a_majority_for_ten_minutes(
    tmp_path: Path,
) -> None:
    """A batch a second; job "o" retries every batch for an outage, job "p" retries two batches
    for a poison record once, which is what the machinery is for, not a page."""
    inputs = [
        series("dstreams_batches_total", "0+15x20 300x60", job_name="o", status="completed"),
        series("dstreams_batches_total", "0x20 0+15x60", job_name="o", status="retried"),
        series("dstreams_batches_retried_total", "0x20 0+15x60", job_name="o", reason="outage"),
        series("dstreams_batches_total", "0+15x80", job_name="p", status="completed"),
        series("dstreams_batches_total", "0x40 2x40", job_name="p", status="retried"),
        series("dstreams_batches_retried_total", "0x40 2x40", job_name="p", reason="outputs"),
    ]
    name = "DStreamsBatchesRetriedPersistently"
    outage = {"job_name": "o", "reason": "outage"}
    run_promtool(
        tmp_path,
        inputs,
        [
            {"alertname": name, "eval_time": "5m", "firing": []},
            {"alertname": name, "eval_time": "12m", "firing": []},  # pending: retried for 7 min
            {
                "alertname": name,
                "eval_time": "18m",
                "firing": [alert(name, outage, "page", "o: 100% of batches retried (outage)")],
            },
        ],
    )


def test_input_lost_to_retention_pages_for_an_hour_from_the_first_loss(tmp_path: Path) -> None:
    """Issue 9: input deleted before it was processed is never silent. The series exists only
    once a claim found a loss (service/sources/kafka.py ``_readable_from``)."""
    lost = {"job_name": "j", "topic": "orders", "partition": "3"}
    inputs = [
        series(
            "dstreams_kafka_offsets_lost_total",
            "_x20 1234x400",
            job_name="j",
            topic="orders",
            partition="3",
        ),
    ]
    name = "DStreamsInputLostToRetention"
    summary = "j: 1.234k offsets of orders[3] deleted by retention before they were processed"
    run_promtool(
        tmp_path,
        inputs,
        [
            {"alertname": name, "eval_time": "4m", "firing": []},
            {"alertname": name, "eval_time": "6m", "firing": [alert(name, lost, "page", summary)]},
            {"alertname": name, "eval_time": "50m", "firing": [alert(name, lost, "page", summary)]},
            {"alertname": name, "eval_time": "80m", "firing": []},
        ],
    )
