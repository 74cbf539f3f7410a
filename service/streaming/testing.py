"""Run a job's batches synchronously, for tests: no thread, no sleeping.

``run_batches`` drives exactly the code path of the scheduler thread (``_run_batch`` for each
batch time in order), moving a ManualClock to each batch time first, so outputs equal a
real-time run's.
"""

from __future__ import annotations

import time

from service.runtime.clock import ManualClock
from service.streaming.context import INITIALIZED, StreamingContext


def run_batches(ssc: StreamingContext, n: int) -> list[int]:
    """Start ``ssc`` (without its thread) if needed, run the next ``n`` batches; their times."""
    if ssc._scheduler is not None:
        raise RuntimeError("run_batches cannot drive a context started with start()")
    if ssc.getState() == INITIALIZED:
        ssc._prepare()
    times: list[int] = []
    for _ in range(n):
        t = ssc._next_batch_ms
        assert t is not None
        clock = ssc._clock
        if isinstance(clock, ManualClock) and clock.now_ms() < t:
            clock.set_time(t)
        if ssc._sources:
            ssc._fill_sources(time.monotonic())
        ssc._run_batch(t)
        times.append(t)
    return times
