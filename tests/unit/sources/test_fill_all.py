"""Several Kafka sources share each fill slice (service/sources/base.py, ``fill_all``): a job
reading two topics, or its input and a repartition topic, once left the second source one poll
per slice. Timing-free: sources here count turns and report how long each was allowed."""

from __future__ import annotations

import time
from typing import Any

from service.sources.base import fill_all


class Polled:
    """A polling source: records arrive while ``busy``; a turn waits until its end if none."""

    def __init__(self, busy: bool) -> None:
        self.busy = busy
        self.turns = 0
        self.waited_turns = 0  # turns that were allowed to wait (not only asked)

    def start(self) -> None: ...

    def fill(self, deadline: float) -> None:
        self.fill_turn(deadline)

    def fill_turn(self, deadline: float) -> int:
        self.turns += 1
        if deadline > time.monotonic():
            self.waited_turns += 1
            time.sleep(max(0.0, deadline - time.monotonic()))
        return 1 if self.busy else 0

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        return []

    def on_batch_persisted(self, batch_time_ms: int) -> None: ...

    def stop(self) -> None: ...


def test_each_source_gets_turns_and_an_idle_one_does_not_hold_up_a_busy_one() -> None:
    busy, idle = Polled(busy=True), Polled(busy=False)
    fill_all([idle, busy], time.monotonic() + 0.3)
    assert busy.turns >= 5  # many turns in one slice, not one
    assert idle.turns >= busy.turns - 1  # asked every round...
    assert idle.waited_turns == 1  # ...but waited for only before it was found idle


def test_a_round_where_nothing_arrived_ends_the_fill_early() -> None:
    a, b = Polled(busy=False), Polled(busy=False)
    deadline = time.monotonic() + 5.0
    fill_all([a, b], deadline)
    assert a.turns == b.turns == 1
    assert time.monotonic() < deadline


def test_one_polling_source_fills_the_whole_slice_in_one_call() -> None:
    only = Polled(busy=True)
    fill_all([only], time.monotonic() + 0.05)
    assert only.turns == 1 and only.waited_turns == 1
