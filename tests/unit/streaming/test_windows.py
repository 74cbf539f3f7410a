"""Window rules: alignment to slide multiples, partial and trailing windows, inverse reduce."""

from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.streaming.testing import run_batches
from tests.unit.streaming.util import Collector, make_ssc, run

RANGES5 = [list(range(n)) for n in range(1, 6)]
RANGES6 = [list(range(n)) for n in range(1, 7)]


def test_window_count_partial_and_trailing() -> None:
    # PySpark test_window: 3-batch window sliding by one batch, then the input stops. Once only
    # drained-queue batches (one empty partition each) are left, count emits [0].
    out = run(RANGES5, lambda d: d.window(1.5, 0.5).count(), 9)
    assert out == [[1], [3], [6], [9], [12], [9], [5], [0], [0]]


def test_window_emits_only_at_slide_multiples_and_keeps_emitting_empty() -> None:
    out = run([[1], [2], [3], [4], [5]], lambda d: d.window(1.0, 1.0), 8)
    assert out == [None, [1, 2], None, [3, 4], None, [5], None, []]
    out = run([[1], [2], [3]], lambda d: d.window(1.5, 1.0), 6)
    assert out == [None, [1, 2], None, [2, 3], None, []]


def test_default_slide_is_parent_slide() -> None:
    out = run([[1], [2], [3]], lambda d: d.window(1.0), 4)
    assert out == [[1], [1, 2], [2, 3], [3]]


def test_stream_on_windowed_parent_emits_at_its_slide() -> None:
    out = run([[1], [2], [3], [4]], lambda d: d.window(1.0, 1.0).map(lambda x: x * 10), 4)
    assert out == [None, [10, 20], None, [30, 40]]


def test_window_of_window() -> None:
    out = run([[1], [2], [3], [4]], lambda d: d.window(1.0, 1.0).window(2.0, 1.0), 6, sort=True)
    assert out == [None, [1, 2], None, [1, 2, 3, 4], None, [3, 4]]


def test_count_by_window_small_window_recomputes() -> None:
    # window < 5 slides: reduced from slices, so the window empties to no record.
    out = run(RANGES5, lambda d: d.countByWindow(1.5, 0.5), 9)
    assert out == [[1], [3], [6], [9], [12], [9], [5], [], []]


def test_count_by_window_large_window_is_incremental() -> None:
    # window >= 5 slides: incremental; the key survives with count 0 (no filterFunc).
    out = run(RANGES6, lambda d: d.countByWindow(2.5, 0.5), 12)
    assert out == [[1], [3], [6], [10], [15], [20], [18], [15], [11], [6], [0], [0]]


def test_count_by_value_and_window_filters_zero_counts() -> None:
    out = run(RANGES6, lambda d: d.countByValueAndWindow(2.5, 0.5), 12, sort=True)
    assert out[:3] == [[(0, 1)], [(0, 2), (1, 1)], [(0, 3), (1, 2), (2, 1)]]
    assert out[5] == [(0, 5), (1, 5), (2, 4), (3, 3), (4, 2), (5, 1)]
    assert out[9] == [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
    assert out[10:] == [[], []]


def test_group_by_key_and_window() -> None:
    out = run(
        [[("a", i)] for i in range(5)],
        lambda d: d.groupByKeyAndWindow(1.5, 0.5).mapValues(list),
        8,
    )
    assert out == [
        [("a", [0])],
        [("a", [0, 1])],
        [("a", [0, 1, 2])],
        [("a", [1, 2, 3])],
        [("a", [2, 3, 4])],
        [("a", [3, 4])],
        [("a", [4])],
        [],
    ]


def test_group_by_key_and_window_incremental_keeps_emptied_keys() -> None:
    out = run(
        [[("a", i)] for i in range(2)],
        lambda d: d.groupByKeyAndWindow(2.5, 0.5).mapValues(list),
        7,
    )
    assert out == [
        [("a", [0])],
        [("a", [0, 1])],
        [("a", [0, 1])],
        [("a", [0, 1])],
        [("a", [0, 1])],
        [("a", [1])],
        [("a", [])],
    ]


def test_reduce_by_key_and_window_without_inverse() -> None:
    # PySpark test_reduce_by_key_and_window_with_none_invFunc.
    out = run(
        RANGES6,
        lambda d: (
            d.map(lambda x: (x, 1))
            .reduceByKeyAndWindow(operator.add, None, 5, 1)
            .filter(lambda kv: kv[1] > 0)
            .count()
        ),
        12,
    )
    assert [o for o in out if o is not None] == [[2], [4], [6], [6], [6], [6]]


def test_reduce_by_key_and_window_inverse_with_filter_func() -> None:
    data = [[("a", 1), ("b", 2)], [("a", 3)], [], [], [], [], []]

    def build(filt: Any) -> Any:
        return lambda d: d.reduceByKeyAndWindow(
            operator.add, operator.sub, 2.5, 0.5, filterFunc=filt
        )

    kept = run(data, build(None), 7, sort=True)
    assert kept == [
        [("a", 1), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 3), ("b", 0)],
        [("a", 0), ("b", 0)],
    ]
    filtered = run(data, build(lambda kv: kv[1] != 0), 7, sort=True)
    assert filtered[5:] == [[("a", 3)], []]


def test_reduce_by_window() -> None:
    out = run([[1, 2], [3], [4]], lambda d: d.reduceByWindow(operator.add, None, 1.0, 0.5), 4)
    assert out == [[3], [6], [7], [4]]
    out = run(
        [[1, 2], [3], [4]], lambda d: d.reduceByWindow(operator.add, operator.sub, 1.0, 0.5), 4
    )
    assert out == [[3], [6], [7], [4]]


@pytest.mark.parametrize(
    ("window", "slide", "message"),
    [
        (0.7, 0.5, r"windowDuration \(700 ms\).*\(500 ms\)"),
        (1.0, 0.7, r"slideDuration \(700 ms\).*\(500 ms\)"),
        (0.1, 0.1, r"windowDuration \(100 ms\).*\(500 ms\)"),
    ],
)
def test_bad_window_durations_raise(window: float, slide: float, message: str) -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1]])
    with pytest.raises(ValueError, match=message):
        s.window(window, slide)
    with pytest.raises(ValueError, match=message):
        s.map(lambda x: (x, 1)).reduceByKeyAndWindow(operator.add, None, window, slide)
    with pytest.raises(ValueError, match=message):
        s.countByWindow(window, slide)


def test_window_multiple_of_windowed_parent_slide() -> None:
    ssc = make_ssc()
    w = ssc.queueStream([[1]]).window(1.0, 1.0)
    with pytest.raises(ValueError, match=r"\(1000 ms\)"):
        w.window(1.5, 1.0)


def test_float_durations_use_integer_ms() -> None:
    # 3 * 0.2 is 0.6000000000000001 seconds: still exactly 3 batches of 0.2.
    out = run([[1], [2], [3], [4]], lambda d: d.window(3 * 0.2, 2 * 0.2), 6, duration=0.2)
    assert out == [None, [1, 2], None, [2, 3, 4], None, [4]]


keyed_batches = st.lists(
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 5)), max_size=6),
    min_size=1,
    max_size=10,
)


@settings(max_examples=40, deadline=None)
@given(
    batches=keyed_batches,
    window=st.integers(1, 7),
    slide=st.integers(1, 3),
    parallelism=st.integers(1, 3),
)
def test_inverse_reduce_matches_full_reduce(
    batches: list[list[tuple[str, int]]], window: int, slide: int, parallelism: int
) -> None:
    """With and without invFunc, windows agree once keys reduced to the neutral value go.

    Values are positive: with values that cancel out, a filterFunc that drops a key whose window
    still holds data makes the incremental result differ, in Spark as here.
    """
    w, s = window * slide * 0.5, slide * 0.5
    n = len(batches) + window * slide + 2
    nonzero = lambda kv: kv[1] != 0  # noqa: E731
    full = run(
        batches,
        lambda d: d.reduceByKeyAndWindow(operator.add, None, w, s).filter(nonzero),
        n,
        parallelism=parallelism,
        sort=True,
    )
    inc = run(
        batches,
        lambda d: d.reduceByKeyAndWindow(operator.add, operator.sub, w, s, filterFunc=nonzero),
        n,
        parallelism=parallelism,
        sort=True,
    )
    assert full == inc
    # And both equal a direct computation from the batches that fall in each window.
    for k in range(1, n + 1):
        if k % slide:
            assert full[k - 1] is None
            continue
        start = max(0, k - window * slide)
        sums: dict[str, int] = {}
        for b in batches[start:k]:
            for key, v in b:
                sums[key] = sums.get(key, 0) + v
        assert full[k - 1] == sorted((key, v) for key, v in sums.items() if v != 0)


def test_window_shares_parent_batches_with_other_outputs() -> None:
    ssc = make_ssc()
    s = ssc.queueStream([[1], [2], [3]])
    plain, windowed = Collector(), Collector()
    s.foreachRDD(plain)
    s.window(1.0).foreachRDD(windowed)
    times = run_batches(ssc, 4)
    assert plain.per_batch(times) == [[1], [2], [3], []]
    assert windowed.per_batch(times) == [[1], [1, 2], [2, 3], [3]]
