"""librdkafka's log lines through Python logging, each kind once a minute.

With a broker down, librdkafka writes a line per connection attempt to stderr: hundreds a minute
of the same "Connect to ... failed", which bury the one line that says what is wrong. Every
client the service builds passes ``kafka_logger()`` as its ``logger``, so librdkafka's lines go
through the job's logging, and a line like one already logged (digits aside) within the last
``window_s`` (a minute) is held back and counted; the next one that passes says how many were.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

_DIGITS = re.compile(r"\d+")
_TIMING = re.compile(r"\(after [^)]*\)")


class RepeatFilter(logging.Filter):
    """Lets the first of each kind of line through per ``window_s``; counts the rest."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> (when it last passed, lines held back since)
        self._seen: dict[str, tuple[float, int]] = {}

    @staticmethod
    def kind(record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"{record.levelno}:{_DIGITS.sub('#', _TIMING.sub('', text))}"

    def filter(self, record: logging.LogRecord) -> bool:
        kind = self.kind(record)
        now = self._clock()
        with self._lock:
            passed, held = self._seen.get(kind, (None, 0))
            if passed is not None and now - passed < self._window_s:
                self._seen[kind] = (passed, held + 1)
                return False
            self._seen[kind] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} (and {held} more like it in the last minute)"
            record.args = None
        return True


_logger = logging.getLogger("service.librdkafka")
_logger.addFilter(RepeatFilter())


def kafka_logger() -> logging.Logger:
    """The ``logger`` setting for every librdkafka client of the service."""
    return _logger
