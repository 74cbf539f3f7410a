"""The batch loop: one thread that runs every batch time in order, never skipping one.

It knows nothing of DStreams: the streaming context gives it ``fill`` (let sources buffer until a
monotonic deadline) and ``run_batch`` (compute, output, commit, notify for one batch time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.runtime.clock import Clock

log = logging.getLogger(__name__)

_FILL_SLICE_MS = 100


class BatchScheduler:
    """Runs ``run_batch(t)`` for t = first, first + interval, ... once the clock reaches t."""

    def __init__(
        self,
        clock: Clock,
        interval_ms: int,
        first_batch_ms: int,
        run_batch: Callable[[int], None],
        fill: Callable[[float], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        name: str = "dstreams-batches",
    ) -> None:
        self._clock = clock
        self._interval = interval_ms
        self.next_batch_ms = first_batch_ms
        self._run_batch = run_batch
        self._fill = fill
        self._on_fatal = on_fatal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Finish the batch in flight, then end the loop."""
        self._stop.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _wait_for(self, t: int) -> None:
        now = self._clock.now_ms()
        if self._fill is not None:
            step_ms = min(max(t - now, 0), _FILL_SLICE_MS)
            self._fill(time.monotonic() + step_ms / 1000.0)
            now = self._clock.now_ms()
            if now < t:
                # Sources may return early; never spin, never sleep past t.
                self._clock.wait_until(min(t, now + 10), self._stop)
        else:
            self._clock.wait_until(t, self._stop)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                t = self.next_batch_ms
                if self._clock.now_ms() < t:
                    self._wait_for(t)
                    continue
                self._run_batch(t)
                self.next_batch_ms = t + self._interval
        except BaseException as exc:
            log.exception("batch loop failed")
            if self._on_fatal is not None:
                self._on_fatal(exc)
