"""SIGTERM's grace period: a stop that finishes in time exits normally, one that does not is cut."""

from __future__ import annotations

import signal
import threading

import pytest

from service import runner as job_runner
from service.runner import OVERRAN_EXIT_CODE, GracefulStop


class Context:
    def __init__(self, release: threading.Event | None = None) -> None:
        self.release = release
        self.stopped = False

    def stop(self, stopSparkContext: bool = True, stopGraceFully: bool = False) -> None:
        if self.release is not None:
            self.release.wait()
        self.stopped = stopGraceFully


def test_a_stop_within_the_grace_period_is_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Context()
    monkeypatch.setattr(job_runner, "active_contexts", lambda: [ctx])
    exits: list[int] = []
    stopper = GracefulStop(grace_seconds=30.0, exit=exits.append)
    stopper.handle(signal.SIGTERM, None)
    assert stopper.watcher is not None
    stopper.watcher.join(10)
    assert not stopper.watcher.is_alive()
    assert ctx.stopped and exits == []


def test_a_stop_that_overruns_the_grace_period_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(job_runner, "active_contexts", lambda: [Context(release)])
    exited = threading.Event()
    exits: list[int] = []

    def exit_(code: int) -> None:
        exits.append(code)
        exited.set()

    stopper = GracefulStop(grace_seconds=0.05, exit=exit_)
    stopper.handle(signal.SIGTERM, None)
    assert exited.wait(10)
    assert exits == [OVERRAN_EXIT_CODE]
    release.set()


def test_a_second_signal_exits_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(job_runner, "active_contexts", lambda: [Context(release)])
    exits: list[int] = []
    stopper = GracefulStop(grace_seconds=30.0, exit=exits.append)
    stopper.handle(signal.SIGTERM, None)
    stopper.handle(signal.SIGINT, None)
    assert exits == [128 + signal.SIGINT]
    release.set()
