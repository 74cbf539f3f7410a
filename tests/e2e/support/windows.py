"""Judge the keyed counter's sliding window (tests/e2e/jobs/keyed_counter.py) from outside.

Each window output carries, for one key, the count and the sums of ``seq``, ``seq**2`` and
``seq**3`` of the records in the window. A key's records are read in order, so a window that
lost nothing and counted nothing twice holds a run ``a..b`` of the key's sequence numbers: the
count and the first sum name ``a`` and ``b``, and the two higher sums must then be those of the
run. A window that missed a record of its run, or holds one twice, or drifted because a slice
was never subtracted, fails that test (both higher sums agreeing by chance is not a concern).

Across a key's outputs, in output order: batch times strictly increase (a repeat is a batch's
output published twice); ``a`` and ``b`` never go back; no sequence number falls between two
windows (every committed record is in the window written with its own batch, since the window
slides every batch); the first window starts at 1 and the last one ends at ``n_k``. Once the
input drained and the window passed, the window state left in Redis must be empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.state.redis_client import connect
from service.streaming.persistence import loads

Sums = tuple[int, int, int, int]


def _power_sum(n: int, power: int) -> int:
    """1**p + ... + n**p (0 for n <= 0)."""
    if n <= 0:
        return 0
    if power == 1:
        return n * (n + 1) // 2
    if power == 2:
        return n * (n + 1) * (2 * n + 1) // 6
    return (n * (n + 1) // 2) ** 2


def run_of(sums: Sums) -> tuple[int, int] | None:
    """The run ``(a, b)`` these power sums are the sums of, or None if they are of no run."""
    count, s1, s2, s3 = sums
    if count <= 0:
        return None
    numerator = s1 - count * (count - 1) // 2
    if numerator % count:
        return None
    a = numerator // count
    b = a + count - 1
    if a < 1:
        return None
    expected = tuple(_power_sum(b, p) - _power_sum(a - 1, p) for p in (1, 2, 3))
    return (a, b) if expected == (s1, s2, s3) else None


@dataclass
class WindowVerdict:
    keys: int = 0
    outputs: int = 0
    not_a_run: int = 0  # window values that are no run of sequence numbers (loss, double, drift)
    repeated: int = 0  # outputs of a batch time seen again (published twice)
    went_back: int = 0  # a window starting or ending before the one before it
    gaps: int = 0  # sequence numbers in no window at all
    incomplete: int = 0  # keys whose windows never reached 1 or n_k
    residual: int = 0  # keys still in the stored window once it passed
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (
            self.not_a_run
            or self.repeated
            or self.went_back
            or self.gaps
            or self.incomplete
            or self.residual
        )

    def summary(self) -> str:
        return (
            f"windows: outputs={self.outputs} not_a_run={self.not_a_run} "
            f"repeated={self.repeated} went_back={self.went_back} gaps={self.gaps} "
            f"incomplete={self.incomplete} residual={self.residual}"
        )


def verify_windows(
    plan: Mapping[str, int],
    outputs: Mapping[str, Sequence[Mapping[str, int]]],
    stored: Mapping[str, Sums],
) -> WindowVerdict:
    verdict = WindowVerdict(keys=len(plan))
    for key, n in sorted(plan.items()):
        seen = outputs.get(key, [])
        verdict.outputs += len(seen)
        last_t, last_a, covered = -1, 1, 0
        first: int | None = None
        for out in seen:
            sums = (out["count"], out["s1"], out["s2"], out["s3"])
            if out["t"] <= last_t:
                verdict.repeated += 1
                verdict.examples.append(f"{key}: window at {out['t']} after one at {last_t}")
                continue
            last_t = out["t"]
            run = run_of(sums)
            if run is None or run[1] > n:
                verdict.not_a_run += 1
                verdict.examples.append(f"{key}: window at {out['t']} is no run of 1..{n}: {sums}")
                continue
            a, b = run
            first = a if first is None else first
            if a < last_a or b < covered:
                verdict.went_back += 1
                verdict.examples.append(
                    f"{key}: window {a}..{b} at {out['t']} after one ending at {covered}"
                )
            if a > covered + 1:
                verdict.gaps += a - covered - 1
                verdict.examples.append(f"{key}: {covered + 1}..{a - 1} in no window")
            last_a, covered = max(last_a, a), max(covered, b)
        if first != 1 or covered != n:
            verdict.incomplete += 1
            verdict.examples.append(f"{key}: windows cover {first}..{covered}, not 1..{n}")
    for key, sums in sorted(stored.items()):
        if sums[0] != 0:
            verdict.residual += 1
            verdict.examples.append(f"{key}: window state {sums} left after the window passed")
    return verdict


def read_window_state(redis_url: str, job_name: str) -> dict[str, Sums]:
    """The stored window of every key (the job's only state whose values are four sums)."""
    client = connect(redis_url)
    found: dict[str, Sums] = {}
    try:
        for name in client.scan_iter(match=f"dstreams:*{job_name}*:s*:state", count=1000):
            fields: dict[bytes, bytes] = client.hgetall(name)  # type: ignore[assignment]
            for raw_key, raw_value in fields.items():
                value = loads(raw_value)[2]  # (partition, seq, value)
                if isinstance(value, tuple) and len(value) == 4:
                    key = loads(raw_key)
                    old = found.get(key, (0, 0, 0, 0))
                    found[key] = (
                        old[0] + value[0],
                        old[1] + value[1],
                        old[2] + value[2],
                        old[3] + value[3],
                    )
    finally:
        client.close()
    return found
