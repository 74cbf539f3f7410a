"""Run a pipeline over queued batches and observe its output per batch time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from service.runtime.clock import ManualClock
from service.state.base import StateStore
from service.streaming import DStream, StreamingContext
from service.streaming.rdd import BatchRDD
from service.streaming.testing import run_batches


def make_ssc(
    duration: float = 0.5,
    parallelism: int = 1,
    store: StateStore | None = None,
    job: str = "test",
    recover: bool = False,
) -> StreamingContext:
    """``recover``: built through getOrCreate, so it carries on from the store's state."""

    def create() -> StreamingContext:
        return StreamingContext(
            duration,
            clock=ManualClock(),
            defaultParallelism=parallelism,
            stateStore=store,
            jobName=job,
        )

    return StreamingContext.getOrCreate("memory://", create) if recover else create()


class Collector:
    """Output per batch time; ``None`` where the stream produced no batch."""

    def __init__(self, sort: bool = False) -> None:
        self.sort = sort
        self.by_time: dict[datetime, list[Any]] = {}

    def __call__(self, t: datetime, rdd: BatchRDD) -> None:
        items = rdd.collect()
        self.by_time[t] = sorted(items) if self.sort else items

    def per_batch(self, times_ms: Sequence[int]) -> list[list[Any] | None]:
        by_ms = {round(t.timestamp() * 1000): v for t, v in self.by_time.items()}
        return [by_ms.get(t) for t in times_ms]


def run(
    inputs: Sequence[Sequence[Any]],
    build: Callable[..., DStream],
    n: int,
    *,
    duration: float = 0.5,
    parallelism: int = 1,
    sort: bool = False,
    inputs2: Sequence[Sequence[Any]] | None = None,
) -> list[list[Any] | None]:
    """Queue ``inputs`` (and ``inputs2``), run ``n`` batches, return the output of each batch."""
    ssc = make_ssc(duration, parallelism)
    streams = [ssc.queueStream([list(b) for b in inputs])]
    if inputs2 is not None:
        streams.append(ssc.queueStream([list(b) for b in inputs2]))
    collector = Collector(sort)
    build(*streams).foreachRDD(collector)
    times = run_batches(ssc, n)
    ssc.stop()
    return collector.per_batch(times)
