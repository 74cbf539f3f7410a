"""Batch alignment: downstream batch t holds exactly the records of upstream batch t."""

from __future__ import annotations

import pytest

from service.shuffle.alignment import AlignmentState, BatchAligner, ShuffleRecord

A, B = ("in", 0), ("in", 1)


def data(origin: tuple[str, int], t: int, payload: str) -> ShuffleRecord:
    return ShuffleRecord(origin, t, payload)


def mark(origin: tuple[str, int], t: int) -> ShuffleRecord:
    return ShuffleRecord(origin, t, marker=True)


def test_a_batch_is_released_once_every_upstream_task_is_through_it() -> None:
    aligner = BatchAligner({A, B}, batch_ms=100)
    # A is fast: its batch 200 arrives before B's batch 100 is through
    first = aligner.align(
        AlignmentState(),
        [data(A, 100, "a1"), mark(A, 100), data(A, 200, "a2"), mark(A, 200), data(B, 100, "b1")],
    )
    assert first.batches == []  # B has said nothing yet
    second = aligner.align(first.state, [mark(B, 100)])
    assert second.batches == [(100, ["a1", "b1"])]
    assert second.state.pending == ((200, "a2"),)  # read, kept for its own batch
    third = aligner.align(second.state, [data(B, 200, "b2"), mark(B, 200)])
    assert third.batches == [(200, ["a2", "b2"])]
    assert third.state.pending == () and third.state.released_ms == 200


def test_batch_times_in_between_are_released_empty_in_order() -> None:
    aligner = BatchAligner({A}, batch_ms=100)
    start = aligner.align(AlignmentState(), [data(A, 100, "x"), mark(A, 100)])
    assert start.batches == [(100, ["x"])]
    later = aligner.align(start.state, [data(A, 300, "y"), mark(A, 400)])
    # stateful operators downstream advance every batch, as Spark's do
    assert later.batches == [(200, []), (300, ["y"]), (400, [])]


def test_a_writer_that_skipped_batch_times_completes_them_with_its_next_marker() -> None:
    aligner = BatchAligner({A, B}, batch_ms=100)
    state = aligner.align(AlignmentState(), [mark(A, 100), mark(B, 100)]).state
    # B's owner was down for batches 200-400; its next batch is 500
    release = aligner.align(state, [mark(A, 500), data(B, 500, "b"), mark(B, 500)])
    assert [t for t, _ in release.batches] == [200, 300, 400, 500]
    assert release.batches[-1] == (500, ["b"])


def test_a_record_of_a_batch_already_released_is_late_and_goes_into_the_next_one() -> None:
    aligner = BatchAligner({A}, batch_ms=100)
    state = aligner.align(AlignmentState(), [data(A, 100, "x"), mark(A, 100)]).state
    waiting = aligner.align(state, [data(("in", 9), 100, "from a partition added later")])
    assert waiting.batches == [] and waiting.late == 0  # kept until the next release
    release = aligner.align(waiting.state, [data(A, 200, "y"), mark(A, 200)])
    assert release.batches == [(200, ["from a partition added later", "y"])]
    assert release.late == 1


def test_a_long_catch_up_skips_empty_batch_times_but_never_merges_batches() -> None:
    aligner = BatchAligner({A}, batch_ms=100, max_batches=10)
    state = aligner.align(AlignmentState(), [mark(A, 100)]).state
    release = aligner.align(state, [data(A, 500, "p"), data(A, 5000, "q"), mark(A, 9000)])
    assert release.batches == [(500, ["p"]), (5000, ["q"]), (9000, [])]


def test_the_state_carries_everything_a_new_owner_needs() -> None:
    """The position moves past pending records and markers: a new owner resumes from the
    persisted state alone and releases what the old owner would have."""
    aligner = BatchAligner({A, B}, batch_ms=100)
    records = [data(A, 100, "a1"), mark(A, 100), data(A, 200, "a2"), mark(A, 200)]
    records += [data(B, 100, "b1"), mark(B, 100), data(B, 200, "b2"), mark(B, 200)]
    whole = aligner.align(AlignmentState(), records)
    first = aligner.align(AlignmentState(), records[:5])
    resumed = aligner.align(first.state, records[5:])
    assert first.batches + resumed.batches == whole.batches


def test_refuses_an_empty_upstream() -> None:
    with pytest.raises(ValueError):
        BatchAligner(set(), batch_ms=100)
