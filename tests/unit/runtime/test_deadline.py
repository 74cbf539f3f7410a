"""call_with_deadline: the result, the exception, or a timely DeadlineExceeded."""

from __future__ import annotations

import threading

import pytest

from service.runtime.deadline import DeadlineExceeded, call_with_deadline


def test_call_with_deadline_returns_raises_or_gives_up() -> None:
    assert call_with_deadline("add", 5.0, lambda: 1 + 1) == 2
    with pytest.raises(ZeroDivisionError):
        call_with_deadline("divide", 5.0, lambda: 1 // 0)
    release = threading.Event()
    with pytest.raises(DeadlineExceeded, match="wait did not return within"):
        call_with_deadline("wait", 0.2, release.wait)
    release.set()
