"""Calls into librdkafka that may block past their own timeouts, run under a deadline.

A C call cannot be interrupted from Python: the call runs on a helper thread, the caller waits
for it up to the deadline and then goes on; the helper ends when the call finally returns, its
result discarded. Used where going on is safe: a transactional call whose producer is then
abandoned (``service.sinks.kafka``), a consumer's close at shutdown (``service.sources.kafka``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The call did not return in time; it may still be running."""


def call_with_deadline(what: str, deadline_s: float, call: Callable[[], T]) -> T:
    """``call()``'s result or exception, or ``DeadlineExceeded`` after ``deadline_s``."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name=f"dstreams-{what}", daemon=True).start()
    if not done.wait(deadline_s):
        raise DeadlineExceeded(f"{what} did not return within {deadline_s:.0f} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
