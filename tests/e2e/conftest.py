"""Fixtures of the exactly-once scenarios: a fleet of service instances that is always cleaned up.

Kafka and Redis (``kafka_bootstrap``, ``redis_url``, ``kafka_broker``, ``redis_server``,
``create_topic``) are the session fixtures of tests/conftest.py.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from service.devstack.process import free_port
from tests.e2e.support.checker import Producing, make_plan
from tests.e2e.support.fleet import KEYED_COUNTER, Fleet
from tests.e2e.support.scenario import INSTANCES, KEYS, Run, StartRun


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the fleet fixture knows whether the test failed."""
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    return report


MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, redis_url: str
) -> Iterator[MakeFleet]:
    """``make_fleet(input_topic, output_topic, **options)``; every process dies at teardown.

    On failure the tail of each instance's log is printed (and the logs stay in ``tmp_path``).
    """
    fleets: list[Fleet] = []

    def make(input_topic: str, output_topic: str, *more_outputs: str, **options: Any) -> Fleet:
        fleet = Fleet(
            tmp_path / f"fleet-{len(fleets)}",
            job_args=[input_topic, output_topic, *more_outputs],
            kafka_bootstrap=kafka_bootstrap,
            redis_url=options.pop("redis_url", redis_url),
            job_name=options.pop("job_name", f"e2e-{uuid.uuid4().hex[:8]}"),
            **options,
        )
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()
    report = getattr(request.node, "e2e_report_call", None)
    if report is not None and report.failed:
        for fleet in fleets:
            print(f"\n=== logs of job {fleet.job_name} ({fleet.log_dir}) ===")
            print(fleet.log_tails())


@pytest.fixture
def topics(create_topic: Callable[..., str]) -> tuple[str, str]:
    """A 6-partition input topic and a 6-partition output topic, fresh per test."""
    return create_topic(partitions=6), create_topic(partitions=6)


@pytest.fixture
def start_run(
    make_fleet: Callable[..., Fleet],
    topics: tuple[str, str],
    create_topic: Callable[..., str],
    kafka_bootstrap: str,
    redis_url: str,
) -> StartRun:
    """A fleet of the keyed counter writing to two output topics through two KafkaSinks and its
    window to a third (one transaction per batch), the producer started; ``Run.finish`` judges
    all three."""

    def start(
        name: str,
        rng: random.Random,
        *,
        records: int,
        rate: float,
        instances: int = INSTANCES,
        env: dict[str, str] | None = None,
        metrics: bool = False,
        job: Path | Sequence[Path] = KEYED_COUNTER,
        redis: str | None = None,
        join: bool = False,
    ) -> Run:
        """``redis``: another Redis than the session's (e.g. one behind a failover proxy);
        ``join``: the job also joins the input with a copy of it on a second topic."""
        input_topic, output_topic = topics
        second_output = create_topic(partitions=6)
        window_output = create_topic(partitions=6)
        join_input = create_topic(partitions=6) if join else None
        redis = redis or redis_url
        fleet = make_fleet(
            input_topic,
            output_topic,
            second_output,
            window_output,
            *([join_input] if join_input is not None else []),
            extra_env=env,
            job=job,
            redis_url=redis,
        )
        for _ in range(instances):
            own = {"DSTREAMS_METRICS_PORT": str(free_port())} if metrics else {}
            fleet.add(own).env.update(own)  # kept for restarts
        plan = make_plan(KEYS, records, rng)
        producing = Producing(
            kafka_bootstrap, input_topic, plan, rng, rate=rate, mirror=join_input
        ).start()
        return Run(
            name,
            fleet,
            plan,
            producing,
            input_topic,
            output_topic,
            kafka_bootstrap,
            redis,
            second_output=second_output,
            window_output=window_output,
            join_input=join_input,
        )

    return start
