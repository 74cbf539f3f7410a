"""service.streaming against real PySpark outputs, batch by batch.

Fixtures come from ``scripts/record_pyspark_fixtures.py`` (PySpark is the truth; never edit a
fixture to match the engine). Every case runs on a manual clock through
``service.streaming.testing.run_batches``; a few also run in real time with 0.2 s batches, the way
the held-out suite drives the engine. State goes to the real Redis of the ``redis_url`` fixture.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import Case, Output, canonical, wire
from tests.conformance.cases import BATCH_DURATION, CASES, CASES_BY_NAME, REALTIME_CASES

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"
FIXTURES = sorted(p.stem for p in FIXTURE_DIR.glob("*.json"))
REALTIME_TIMEOUT_S = 60.0


def expected_batches(name: str) -> list[Output]:
    document = json.loads((FIXTURE_DIR / f"{name}.json").read_text())
    assert document["case"] == name
    assert document["batch_duration"] == BATCH_DURATION
    assert document["error"] == CASES_BY_NAME[name].error, "fixture is stale: re-record it"
    batches: list[Output] = document["batches"]
    assert len(batches) == CASES_BY_NAME[name].num_batches, "fixture is stale: re-record it"
    return batches


def batch_diff(expected: list[Output], actual: list[Output]) -> str:
    """One line per differing batch (1-based, as in the docs); empty when they agree."""
    lines = []
    for i, (want, got) in enumerate(zip(expected, actual, strict=True), start=1):
        if canonical(want) != canonical(got):
            lines.append(f"batch {i}: pyspark={canonical(want)} engine={canonical(got)}")
    return "\n".join(lines)


def streaming_context(case: Case, redis_url: str, **kwargs: Any) -> Any:
    from service.streaming import StreamingContext

    job = f"conformance-{case.name}-{uuid.uuid4().hex[:8]}"
    ssc = StreamingContext(BATCH_DURATION, jobName=job, **kwargs)
    ssc.checkpoint(redis_url)
    return ssc


def check_error(ssc: Any, case: Case) -> None:
    """A stopped context re-raises the first job error, as PySpark's does; none if none was due."""
    if case.error is None:
        ssc.awaitTerminationOrTimeout(0)
        return
    with pytest.raises(Exception, match=re.escape(case.error)):
        ssc.awaitTerminationOrTimeout(0)


def test_every_case_has_a_fixture_and_every_fixture_a_case() -> None:
    assert sorted(c.name for c in CASES) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_matches_pyspark_on_manual_clock(name: str, redis_url: str) -> None:
    from service.runtime.clock import ManualClock
    from service.streaming.testing import run_batches

    case = CASES_BY_NAME[name]
    expected = expected_batches(name)
    ssc = streaming_context(case, redis_url, clock=ManualClock())
    collector = wire(case, ssc)
    try:
        run_batches(ssc, case.num_batches)
    finally:
        ssc.stop(stopSparkContext=False, stopGraceFully=False)
    check_error(ssc, case)
    diff = batch_diff(expected, collector.batches(case.num_batches))
    assert not diff, f"{name} differs from PySpark:\n{diff}"


@pytest.mark.parametrize("name", REALTIME_CASES)
def test_matches_pyspark_in_real_time(name: str, redis_url: str) -> None:
    case = CASES_BY_NAME[name]
    expected = expected_batches(name)
    ssc = streaming_context(case, redis_url)
    collector = wire(case, ssc)
    # Liveness guard, not a speed check: outputs are compared by batch index, not by time.
    deadline = time.monotonic() + REALTIME_TIMEOUT_S
    ssc.start()
    try:
        while collector.ticks < case.num_batches:
            assert time.monotonic() < deadline, f"{collector.ticks}/{case.num_batches} batches ran"
            if case.error is not None:
                time.sleep(0.05)  # the expected error must not end the wait
            else:
                assert not ssc.awaitTerminationOrTimeout(0.05), "streaming context stopped early"
    finally:
        ssc.stop(stopSparkContext=False, stopGraceFully=False)
    check_error(ssc, case)
    diff = batch_diff(expected, collector.batches(case.num_batches))
    assert not diff, f"{name} differs from PySpark:\n{diff}"
