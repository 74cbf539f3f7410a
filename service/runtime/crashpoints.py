"""Named steps of the batch commit protocol at which a test can crash the process.

Fault tests set ``DSTREAMS_CRASH_AT=<step>`` (or ``<step>:<n>``, the n-th time the step is
reached, default 1) and the process dies there with SIGKILL, as abruptly as a power cut: no
``finally`` blocks, no flushes. The context counts only batches that took records, so a crash
always hits a batch with something to lose or to publish twice. Unset, ``reached`` is a
dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

ENV_VAR = "DSTREAMS_CRASH_AT"

# In protocol order, for one batch.
STEPS = (
    "batch_taken",  # records taken from the sources, nothing computed
    "outputs_done",  # output operations ran (results sent or flushed), no state persisted
    "state_persisted",  # ledger/state applied in Redis, Kafka offsets not yet committed
    "offsets_committed",  # Kafka offsets committed, the next batch not started
)


class CrashPoints:
    """Counts arrivals at each step and kills the process at the configured one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        spec = (environ if environ is not None else os.environ).get(ENV_VAR, "")
        self._step: str | None = None
        self._at = 1
        self._seen = 0
        if spec:
            step, _, nth = spec.partition(":")
            if step not in STEPS:
                raise ValueError(f"{ENV_VAR}={spec!r}: unknown step; steps are {', '.join(STEPS)}")
            self._step = step
            self._at = int(nth) if nth else 1
            if self._at < 1:
                raise ValueError(f"{ENV_VAR}={spec!r}: the count must be >= 1")

    @property
    def armed(self) -> bool:
        return self._step is not None

    def reached(self, step: str) -> None:
        if step != self._step:
            return
        self._seen += 1
        if self._seen == self._at:
            os.kill(os.getpid(), signal.SIGKILL)
