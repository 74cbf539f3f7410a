"""librdkafka's repeated lines are held back: one of each kind a minute, with the count."""

import logging

from service.runtime.kafka_logs import RepeatFilter


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord(
        "librdkafka", logging.ERROR, "", 0, "%s [%s] %s", ("FAIL", "rdkafka#producer-1", text), None
    )


def test_repeats_are_held_back_for_a_minute_then_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(window_s=60.0, clock=lambda: now[0])
    line = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed (after 0ms in state CONNECT)"
    assert repeats.filter(record(line))
    for ms in range(1, 200):
        now[0] += 0.25
        assert not repeats.filter(record(line.replace("0ms", f"{ms}ms")))
    assert repeats.filter(record("another kind of line"))
    now[0] = 61.0
    later = record(line)
    assert repeats.filter(later)
    assert later.getMessage().endswith("(and 199 more like it in the last minute)")
