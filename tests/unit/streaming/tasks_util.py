"""A fake Kafka-like source offering ``take_tasks``, and runners for task-scoped pipelines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from service.runtime.clock import ManualClock
from service.state.base import StateStore, StateWrites
from service.state.memory_store import MemoryStateStore
from service.streaming import DStream, StreamingContext
from service.streaming.rdd import BatchRDD, Task
from service.streaming.testing import run_batches
from tests.support.sources import InMemoryTaskSource

TOPIC = "events"
JOB = "tj"

# batch -> partition -> records
TaskBatches = Sequence[Sequence[Sequence[Any]]]


class TaskSource(InMemoryTaskSource):
    """In-memory partitions of one topic; ``assigned`` plays the consumer group's assignment."""

    def __init__(self, batches: TaskBatches, assigned: Sequence[int] = (0, 1, 2)) -> None:
        self.batches = [[list(p) for p in b] for b in batches]
        self.assigned = list(assigned)

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]:
        batch = self.batches.pop(0) if self.batches else []
        return [((TOPIC, p), list(batch[p]) if p < len(batch) else []) for p in self.assigned]


class RecordingStore(MemoryStateStore):
    """A memory store that keeps every committed StateWrites, to inspect what a batch wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[StateWrites] = []

    def commit(self, writes: StateWrites) -> None:
        self.history.append(writes)
        super().commit(writes)


class TaskCollector:
    """Per batch: ``{task: records}`` of the output batch (partitions of one task concatenated)."""

    def __init__(self) -> None:
        self.batches: list[dict[Task | None, list[Any]]] = []

    def __call__(self, rdd: BatchRDD) -> None:
        out: dict[Task | None, list[Any]] = {}
        for task, part in zip(rdd.tasks, rdd.partitions, strict=True):
            out.setdefault(task, []).extend(part)
        self.batches.append(out)


def task_ssc(
    store: StateStore, *, recover: bool = False, start_ms: int = 0, duration: float = 0.5
) -> StreamingContext:
    def create() -> StreamingContext:
        return StreamingContext(
            duration, clock=ManualClock(start_ms), stateStore=store, jobName=JOB
        )

    return StreamingContext.getOrCreate("memory://", create) if recover else create()


def run_tasks(
    batches: TaskBatches,
    build: Callable[[DStream], DStream],
    n: int,
    *,
    store: StateStore | None = None,
    assigned: Sequence[int] = (0, 1, 2),
) -> list[dict[Task | None, list[Any]]]:
    """Run ``n`` batches of a pipeline over a fresh TaskSource; the output per batch per task."""
    ssc = task_ssc(store if store is not None else MemoryStateStore())
    collector = TaskCollector()
    build(ssc._sourceStream(TaskSource(batches, assigned))).foreachRDD(collector)
    run_batches(ssc, n)
    ssc.stop()
    return collector.batches


def run_global(
    batches: TaskBatches, build: Callable[[DStream], DStream], n: int
) -> list[list[Any]]:
    """The same records through the job-scoped engine (a queue stream): Spark's global result."""
    ssc = StreamingContext(0.5, clock=ManualClock(), defaultParallelism=2, jobName="global")
    out: list[list[Any]] = []
    flat = [[x for part in b for x in part] for b in batches]
    build(ssc.queueStream(flat)).foreachRDD(lambda rdd: out.append(rdd.collect()))
    run_batches(ssc, n)
    ssc.stop()
    return out
