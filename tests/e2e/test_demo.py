"""The README's main command: the live Kafka word count runs, counts, and stops cleanly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import redis


def test_demo_counts_words_live_and_stops_with_exit_0(kafka_bootstrap: str, redis_url: str) -> None:
    job_name = f"demo-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "DSTREAMS_JOB_NAME": job_name,
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--seconds", "8", "--lines-per-second", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batches = result.stdout.split("Time: ")
    counts_of_the = [int(n) for n in re.findall(r"\('the', (\d+)\)", result.stdout)]
    assert len(batches) > 3, result.stdout[-3000:]
    assert counts_of_the, result.stdout[-3000:]
    assert counts_of_the == sorted(counts_of_the), "a running count never goes down"

    # the running counts are in Redis, under the job's own keys
    keys = redis.Redis.from_url(redis_url).keys(f"dstreams:{job_name}:*")
    assert any(key.endswith(b":state") for key in keys), keys
