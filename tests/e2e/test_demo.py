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
        [sys.executable, "-m", "service", "demo", "--seconds", "12", "--lines-per-second", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    batches = result.stdout.split("Time: ")[1:]
    assert len(batches) > 3, result.stdout[-3000:]
    counts: dict[str, list[int]] = {}
    for batch in batches:
        for word, n in re.findall(r"\('(\w+)', (\d+)\)", batch):
            counts.setdefault(word, []).append(int(n))
    seen_twice = {word: ns for word, ns in counts.items() if len(ns) > 1}
    assert seen_twice, result.stdout[-3000:]
    for word, ns in seen_twice.items():
        assert ns == sorted(ns) and ns[-1] > ns[0], f"{word}: a running count grows: {ns}"

    # the words of the lines are re-keyed, so the running counts are in Redis under the keys of
    # the repartition topic's partitions (the tasks past the shuffle), each beside its ledger;
    # the input partition's ledger records how far the input was read (docs/state-schema.md,
    # docs/exactly-once.md)
    client = redis.Redis.from_url(redis_url)
    shard = f"dstreams:{{{job_name}:wordcount-input:0}}"
    assert int(client.hget(f"{shard}:ledger", "next_offset") or 0) > 0
    downstream = client.keys(f"dstreams:{{{job_name}:{job_name}-repartition-0:*}}:*")
    assert any(key.endswith(b":state") for key in downstream), downstream
    assert any(key.endswith(b":ledger") for key in downstream), downstream
