"""Where batch times come from: the wall clock in production, a hand-driven clock in tests."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Milliseconds since the epoch, and a way to sleep until a time that can be cut short."""

    def now_ms(self) -> int:
        """The current time in integer milliseconds."""

    def wait_until(self, ms: int, interrupt: threading.Event) -> None:
        """Return once ``now_ms() >= ms`` or ``interrupt`` is set, whichever comes first."""


class SystemClock:
    """Wall-clock time; waiting sleeps on the interrupt event so stop() is prompt."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wait_until(self, ms: int, interrupt: threading.Event) -> None:
        while not interrupt.is_set():
            remaining = ms - self.now_ms()
            if remaining <= 0:
                return
            interrupt.wait(remaining / 1000.0)


class ManualClock:
    """A clock that only moves when a test calls ``advance`` or ``set_time``."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._cond = threading.Condition()

    def now_ms(self) -> int:
        with self._cond:
            return self._now

    def set_time(self, ms: int) -> None:
        with self._cond:
            self._now = ms
            self._cond.notify_all()

    def advance(self, ms: int) -> None:
        with self._cond:
            self._now += ms
            self._cond.notify_all()

    def wait_until(self, ms: int, interrupt: threading.Event) -> None:
        # The interrupt is an Event, not our condition, so poll it at a short interval.
        with self._cond:
            while self._now < ms and not interrupt.is_set():
                self._cond.wait(0.01)
