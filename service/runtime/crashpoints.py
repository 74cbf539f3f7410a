"""Named steps of the batch commit protocol at which a test can crash the process.

Fault tests set ``DSTREAMS_CRASH_AT=<step>`` (or ``<step>:<n>``, the n-th time the step is
reached, default 1) and the process dies there with SIGKILL, as abruptly as a power cut: no
``finally`` blocks, no flushes. The context counts only batches that took records, so a crash
always hits a batch with something to lose or to publish twice. Unset, ``reached`` is a
dictionary lookup and nothing else.

``DSTREAMS_SIGSTOP_AT=<step>:<n>:<pid>`` instead freezes another process there, once: e.g. the
Kafka broker at ``commit_transaction``, so that the broker receives the batch's EndTxn only
when the test lets it go on, after the client gave up waiting (an ambiguous commit).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

ENV_VAR = "DSTREAMS_CRASH_AT"
STOP_ENV_VAR = "DSTREAMS_SIGSTOP_AT"

# In protocol order, for one batch.
STEPS = (
    "batch_taken",  # records taken from the sources, nothing computed
    # the batch's transaction has its records and input offsets; commit_transaction comes next
    "commit_transaction",
    "outputs_done",  # output operations ran (results sent or flushed), no state persisted
    "state_persisted",  # ledger/state applied in Redis, Kafka offsets not yet committed
    "offsets_committed",  # Kafka offsets committed, the next batch not started
)


class CrashPoints:
    """Counts arrivals at each step and kills the process at the configured one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = environ if environ is not None else os.environ
        self._step: str | None = None
        self._at = 1
        self._seen = 0
        # the process to SIGSTOP at the step (None: SIGKILL this one)
        self._target: int | None = None
        spec, var = env.get(ENV_VAR, ""), ENV_VAR
        if not spec and env.get(STOP_ENV_VAR):
            spec, var = env[STOP_ENV_VAR], STOP_ENV_VAR
        if spec:
            step, _, rest = spec.partition(":")
            nth, _, pid = rest.partition(":")
            if step not in STEPS:
                raise ValueError(f"{var}={spec!r}: unknown step; steps are {', '.join(STEPS)}")
            self._step = step
            self._at = int(nth) if nth else 1
            if self._at < 1:
                raise ValueError(f"{var}={spec!r}: the count must be >= 1")
            if var == STOP_ENV_VAR:
                if not pid:
                    raise ValueError(f"{var}={spec!r}: give the pid to stop: <step>:<n>:<pid>")
                self._target = int(pid)

    @property
    def armed(self) -> bool:
        return self._step is not None

    def reached(self, step: str) -> None:
        if step != self._step:
            return
        self._seen += 1
        if self._seen != self._at:
            return
        if self._target is None:
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            os.kill(self._target, signal.SIGSTOP)
