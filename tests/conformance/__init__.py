"""PySpark conformance harness: the case type, output normalization and the batch collector.

The recorder (real PySpark, in ``.venv-pyspark``) and the integration test (``service.streaming``)
both wire cases through :func:`wire`, so each side sees the same queue inputs, the same output
operation and the same normalization; only the ``StreamingContext`` differs. This package imports
neither pyspark nor ``service``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Batch = list[Any]
"""One queued input batch: a list of JSON-able values (tuples allowed for pairs)."""

Output = list[Any] | None
"""One batch's normalized output; ``None`` when the output stream emitted nothing at that batch."""


@dataclass(frozen=True)
class Case:
    """One conformance case; plain data so both engines can build it.

    ``build(ssc, *streams)`` receives one queue stream per entry of ``inputs`` and returns the
    DStream whose output is recorded. ``num_batches`` includes trailing batches after the queue
    drains, so windows and state can be seen emptying (or not). A case with ``error`` makes a
    job fail: that batch records no output and ``awaitTermination*`` re-raises the error.
    """

    name: str
    inputs: tuple[Sequence[Batch], ...]
    num_batches: int
    build: Callable[..., Any]
    one_at_a_time: bool = True
    default: Batch | None = None
    error: str | None = None
    """Text the first job error must contain, for cases where a batch fails on purpose."""
    notes: str = field(default="", compare=False)


def normalize_record(value: Any) -> Any:
    """Turn a record into plain JSON data; refuse anything JSON cannot state exactly.

    Tuples become lists (JSON has no tuples); an unexpected type (e.g. a ``ResultIterable`` a case
    forgot to turn into a list) raises instead of being compared by its ``repr``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"non-finite float in output: {value!r}")
        return value
    if isinstance(value, list | tuple):
        return [normalize_record(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"dict output needs str keys to survive JSON: {value!r}")
        return {k: normalize_record(v) for k, v in value.items()}
    raise TypeError(f"output record of type {type(value).__name__} is not JSON data: {value!r}")


def canonical(value: Any) -> str:
    """Stable text of normalized data: the sort key within a batch and the comparison form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def normalize_batch(records: Sequence[Any]) -> list[Any]:
    """Normalize records and sort them: order within a batch is not part of DStream semantics."""
    return sorted((normalize_record(r) for r in records), key=canonical)


class BatchCollector:
    """Collects what one output stream emitted, keyed by the batch it came from.

    Batches are numbered from the input stream's own per-batch calls (the "ticks"), registered
    after the output, so a tick for batch k means every output job of batch k has run (both
    engines run a batch's output operations in registration order). Output times are matched to
    tick times exactly, which needs no knowledge of the zero time or of the batch duration.
    Kept free of locks and other unpicklable state: PySpark pickles output functions when it
    writes its metadata checkpoint.
    """

    def __init__(self) -> None:
        self.outputs: list[tuple[datetime, list[Any]]] = []
        self.tick_times: list[datetime] = []

    @property
    def ticks(self) -> int:
        return len(self.tick_times)

    def batches(self, n: int) -> list[Output]:
        """The first ``n`` batches: a normalized list where the output emitted, else ``None``."""
        ticks = sorted(self.tick_times)
        if len(ticks) < n:
            raise RuntimeError(f"only {len(ticks)} of {n} batches ran")
        if len(set(ticks)) != len(ticks):
            raise RuntimeError(f"the input stream ran twice for one batch time: {ticks}")
        index = {t: i for i, t in enumerate(ticks[:n])}
        result: list[Output] = [None] * n
        for t, records in self.outputs:
            if t > ticks[n - 1]:
                continue
            if t not in index:
                raise RuntimeError(f"output at {t} matches no batch time of the input stream")
            i = index[t]
            if result[i] is not None:
                raise RuntimeError(f"two outputs for batch {i + 1} ({t})")
            result[i] = records
        return result


def wire(case: Case, ssc: Any) -> BatchCollector:
    """Create the case's queue streams on ``ssc``, build it, and attach the collector."""
    streams = [
        ssc.queueStream(
            [list(batch) for batch in batches],
            oneAtATime=case.one_at_a_time,
            default=None if case.default is None else list(case.default),
        )
        for batches in case.inputs
    ]
    output = case.build(ssc, *streams)
    collector = BatchCollector()
    outputs = collector.outputs
    tick_times = collector.tick_times

    # Plain two-argument closures: both engines pick the (time, rdd) form by arity, and
    # records are normalized at once so later in-place mutation of state cannot alter them.
    def on_output(time: datetime, rdd: Any) -> None:
        outputs.append((time, normalize_batch(rdd.collect())))

    def on_tick(time: datetime, rdd: Any) -> None:
        tick_times.append(time)

    output.foreachRDD(on_output)
    streams[0].foreachRDD(on_tick)
    return collector


def fixture_document(
    case: Case,
    batches: list[Output],
    *,
    pyspark_version: str,
    batch_duration: float,
    default_parallelism: int,
) -> dict[str, Any]:
    """The JSON document stored per case; the test reads back only ``batches``."""
    return {
        "case": case.name,
        "pyspark_version": pyspark_version,
        "batch_duration": batch_duration,
        "default_parallelism": default_parallelism,
        "num_batches": case.num_batches,
        "error": case.error,
        "batches": batches,
    }
