"""A record that makes a job function raise is retried, then dead-lettered; the rest flows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from service.runtime.clock import ManualClock
from service.state.memory_store import MemoryStateStore
from service.streaming import DStream, StreamingContext
from service.streaming.rdd import BatchRDD
from service.streaming.testing import run_batches
from tests.unit.dead_letters.support import RawSource, RecordingQueue


def run(
    batches: Sequence[Sequence[Sequence[int]]],
    build: Callable[[DStream], DStream],
    n: int,
    *,
    max_attempts: int = 3,
    output: Callable[[BatchRDD], None] | None = None,
) -> tuple[list[list[Any]], RecordingQueue, RawSource, StreamingContext]:
    queue = RecordingQueue(max_attempts)
    source = RawSource(batches, queue)
    ssc = StreamingContext(0.5, clock=ManualClock(0), stateStore=MemoryStateStore(), jobName="j")
    outputs: list[list[Any]] = []

    def collect(rdd: BatchRDD) -> None:
        if output is not None:
            output(rdd)
        outputs.append(sorted(rdd.collect()))

    build(ssc._sourceStream(source)).foreachRDD(collect)
    run_batches(ssc, n)
    ssc.stop()
    return outputs, queue, source, ssc


def test_poison_is_retried_then_dead_lettered_and_outputs_see_only_good_records() -> None:
    outputs, queue, source, _ = run([[[1, 0, 2], [5]]], lambda s: s.map(lambda x: 10 // x), 4)
    # batch 1 and 2: partition 0 rewound (attempts 1, 2); batch 3: attempt 3 -> dead letter
    assert outputs == [[2], [], [5, 10], []]
    assert source.rewinds == [(0, [0, 1, 2]), (0, [0, 1, 2])]
    assert queue.offsets() == [(0, 1)]
    record, exc, attempts = queue.letters[0]
    assert record.value == b"0"
    assert isinstance(exc, ZeroDivisionError)
    assert attempts == 3


def test_state_counts_every_good_record_exactly_once() -> None:
    def running_count(values: list[int], state: int | None) -> int:
        return (state or 0) + len(values)

    def build(s: DStream) -> DStream:
        checked = s.map(lambda x: x if x >= 0 else 1 // 0)
        return checked.map(lambda x: (x % 2, 1)).updateStateByKey(running_count)

    outputs, queue, _, _ = run([[[1, -1, 2, 3], [4, -2]], [[5], [6, 7]]], build, 5, max_attempts=2)
    assert queue.offsets() == [(0, 1), (1, 1)]
    # state is per partition: p0 saw 1, 2, 3, 5 and p1 saw 4, 6, 7
    assert outputs[-1] == [(0, 1), (0, 2), (1, 1), (1, 3)]


def test_every_record_of_a_task_failing_are_all_dead_lettered() -> None:
    outputs, queue, _, _ = run(
        [[[0, 0, 0], [1]]], lambda s: s.map(lambda x: 1 // x), 2, max_attempts=1
    )
    assert queue.offsets() == [(0, 0), (0, 1), (0, 2)]
    assert outputs == [[1], []]


def test_failure_of_partitions_only_together_counts_the_whole_batch() -> None:
    # each partition alone sums fine; together a str meets an int
    def build(s: DStream) -> DStream:
        return s.map(lambda x: str(x) if x >= 10 else x).reduce(lambda a, b: a + b)

    outputs, queue, source, _ = run([[[10, 11], [1, 2]]], build, 3, max_attempts=2)
    assert sorted(queue.offsets()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(source.rewinds) == 2  # both partitions rewound once, after attempt 1
    assert outputs == [[], [], []]  # the batches that remain hold no record


def test_an_output_function_that_raises_retries_then_dead_letters_its_batch() -> None:
    calls: list[list[int]] = []

    def explode(rdd: BatchRDD) -> None:
        calls.append(sorted(rdd.collect()))
        if 0 in rdd.collect():
            raise RuntimeError("sink refused")

    outputs, queue, source, ssc = run([[[1, 0]]], lambda s: s, 3, max_attempts=2, output=explode)
    assert queue.offsets() == [(0, 0), (0, 1)]
    assert [type(e) for _, e, _ in queue.letters] == [RuntimeError, RuntimeError]
    # the output is not called again within a failed batch: its effects cannot be undone
    assert calls == [[0, 1], [0, 1], []]
    assert outputs == [[]]
    assert source.rewinds == [(0, [0, 1]), (0, [])]
    assert ssc._errors == []  # retried, not the job's failure


def test_a_failure_without_records_is_the_jobs_error() -> None:
    queue = RecordingQueue(1)
    source = RawSource([[[1]]], queue)
    ssc = StreamingContext(0.5, clock=ManualClock(0), stateStore=MemoryStateStore(), jobName="j")
    ssc._sourceStream(source).transform(lambda rdd: 1 // 0).foreachRDD(lambda rdd: None)
    run_batches(ssc, 1)
    errors = list(ssc._errors)
    ssc.stop()
    assert [type(e) for e in errors] == [ZeroDivisionError]
    assert queue.letters == []
    assert source.rewinds == [(0, [0])]


def test_good_batches_are_evaluated_once() -> None:
    _, queue, _, ssc = run([[[1, 2], [3]]], lambda s: s.map(lambda x: x + 1), 1)
    isolation = ssc._graph._isolation
    assert isolation is not None
    assert isolation.evaluations == 1
    assert queue.letters == []


@pytest.mark.parametrize("max_attempts", [1, 4])
def test_attempts_follow_the_setting(max_attempts: int) -> None:
    outputs, queue, source, _ = run(
        [[[0, 1]]], lambda s: s.map(lambda x: 1 // x), max_attempts + 1, max_attempts=max_attempts
    )
    assert len(source.rewinds) == max_attempts - 1
    assert queue.letters[0][2] == max_attempts
    assert [1] in outputs
