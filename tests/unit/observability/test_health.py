"""Liveness, readiness and the cached dependency checks, on a hand-moved monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass

from service.observability.health import (
    BatchProgress,
    CachedCheck,
    Liveness,
    Readiness,
    exactness_lost,
    stall_bound_seconds,
)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Ctx:
    state: str = "ACTIVE"
    batchDurationMs: int = 1000

    def getState(self) -> str:
        return self.state


def test_stall_bound_is_ten_intervals_or_sixty_seconds() -> None:
    assert stall_bound_seconds(1000) == 60.0
    assert stall_bound_seconds(30_000) == 300.0


def test_live_while_batches_progress_and_dead_when_they_stall() -> None:
    clock = Monotonic()
    progress = BatchProgress(clock)
    ctx = Ctx()
    liveness = Liveness(lambda: ctx, progress, 1000, clock)
    assert liveness.check().ok
    clock.now += 59
    assert liveness.check().ok
    progress.onBatchCompleted(None)
    clock.now += 59
    assert liveness.check().ok
    clock.now += 2
    verdict = liveness.check()
    assert not verdict.ok
    assert "batches" in verdict.failed


def test_a_loop_waiting_for_a_dependency_that_is_down_is_not_stuck() -> None:
    """The service pauses through an outage; restarting the pod would not bring Redis back."""
    clock = Monotonic()
    redis_up = [True]

    def redis_ping() -> None:
        if not redis_up[0]:
            raise ConnectionError("refused")

    liveness = Liveness(
        lambda: Ctx(),
        BatchProgress(clock),
        1000,
        clock,
        dependencies={"redis": CachedCheck(redis_ping, 0, clock)},
    )
    clock.now += 120
    assert not liveness.check().ok  # stuck while Redis answers
    redis_up[0] = False
    assert liveness.check().ok  # waiting for Redis
    redis_up[0] = True
    assert not liveness.check().ok


def test_a_long_interval_allows_ten_intervals() -> None:
    clock = Monotonic()
    ctx = Ctx(batchDurationMs=20_000)
    liveness = Liveness(lambda: ctx, BatchProgress(clock), 1000, clock)
    clock.now += 150
    assert liveness.check().ok
    clock.now += 60
    assert not liveness.check().ok


def test_a_stopped_context_is_not_live() -> None:
    clock = Monotonic()
    ctx: Ctx | None = Ctx()
    liveness = Liveness(lambda: ctx, BatchProgress(clock), 1000, clock)
    assert liveness.check().ok
    ctx = Ctx(state="STOPPED")
    assert liveness.check().failed == {"context": "streaming context is STOPPED"}
    ctx = None  # getActive() after the stop
    assert not liveness.check().ok


def test_startup_is_live_within_the_bound_only() -> None:
    clock = Monotonic()
    liveness = Liveness(lambda: None, BatchProgress(clock), 1000, clock)
    assert liveness.check().ok
    clock.now += 61
    assert "context" in liveness.check().failed


def test_cached_check_runs_at_most_once_per_ttl_and_reports_the_error() -> None:
    clock = Monotonic()
    calls: list[float] = []
    failing = [False]

    def check() -> None:
        calls.append(clock.now)
        if failing[0]:
            raise ConnectionError("refused")

    cached = CachedCheck(check, ttl=5.0, monotonic=clock)
    assert cached() is None
    failing[0] = True
    clock.now += 4
    assert cached() is None  # cached answer
    assert len(calls) == 1
    clock.now += 1
    assert cached() == "ConnectionError: refused"
    failing[0] = False
    clock.now += 5
    assert cached() is None
    assert len(calls) == 3


def test_readiness_names_every_failed_dependency() -> None:
    ctx: Ctx | None = Ctx()

    def ok() -> None:
        pass

    def down() -> None:
        raise TimeoutError("no answer")

    checks = {"kafka": CachedCheck(ok, 0), "redis": CachedCheck(down, 0)}
    readiness = Readiness(lambda: ctx, checks)
    assert readiness.check().failed == {"redis": "TimeoutError: no answer"}
    ctx = None
    readiness = Readiness(lambda: ctx, {"kafka": CachedCheck(ok, 0)})
    verdict = readiness.check()
    assert not verdict.ok
    assert set(verdict.failed) == {"context"}
    ctx = Ctx()
    assert readiness.check().ok


def test_readiness_shows_input_lost_to_retention_without_failing() -> None:
    """Issue 9: exactness lost for good (input deleted by retention before it was processed)
    is shown in /readyz's body, while the pod stays ready (restarting cannot bring it back)."""

    class Source:
        offsets_lost = {("orders", 3): 1234}

    readiness = Readiness(lambda: Ctx(), {}, lambda: exactness_lost([Source(), object()]))
    verdict = readiness.check()
    assert verdict.ok
    assert verdict.degraded == {
        "input orders[3]": "1234 offsets deleted by retention before they were processed: "
        "their records are missing from state and outputs"
    }
    assert Readiness(lambda: Ctx(), {}).check().degraded == {}
