"""Undecodable and oversize records leave the batch at take time; dead-letter headers."""

from __future__ import annotations

import pytest

from service.commit.attempts import MemoryAttempts
from service.commit.ledger import Shard
from service.sinks.dead_letter import DeadLetterPolicy, RecordTooLarge, error_headers
from service.sources.kafka import KafkaRecord, KafkaSource
from tests.unit.dead_letters.support import RecordingQueue


def source_with(records: list[KafkaRecord], queue: RecordingQueue) -> KafkaSource:
    def decode(r: KafkaRecord) -> int:
        return int((r.value or b"").decode())

    source = KafkaSource(
        {"bootstrap.servers": "unused:9092", "group.id": "g"},
        ["t"],
        batch_interval_s=1.0,
        convert=decode,
        dead_letters=queue,
    )
    for record in records:
        source._buffers.add(record)
    return source


def test_bad_records_are_dead_lettered_and_their_offsets_stay_in_the_span() -> None:
    queue = RecordingQueue(max_attempts=3, max_record_bytes=8)
    records = [
        KafkaRecord("t", 0, 10, None, b"1"),
        KafkaRecord("t", 0, 11, None, b"not a number"),  # oversize (checked first)
        KafkaRecord("t", 0, 12, None, b"x"),  # undecodable
        KafkaRecord("t", 0, 13, b"k", b"4"),
    ]
    source = source_with(records, queue)
    tasks = source.take_tasks(1000)
    assert tasks == [(("t", 0), [1, 4])]
    assert [r.offset for r in source.raw_records(("t", 0))] == [10, 13]
    assert queue.offsets() == [(0, 11), (0, 12)]
    assert isinstance(queue.letters[0][1], RecordTooLarge)
    assert isinstance(queue.letters[1][1], ValueError)
    # decoding is deterministic: straight to the max, and recorded
    assert [a for _, _, a in queue.letters] == [3, 3]
    span = source.ledger_span(("t", 0))
    assert span is not None and (span.from_offset, span.next_offset) == (10, 14)


def test_a_rewound_partition_is_taken_again_from_the_same_offset() -> None:
    queue = RecordingQueue()
    records = [KafkaRecord("t", 0, o, None, b"%d" % o) for o in (5, 6, 7)]
    source = source_with(records, queue)
    source.take_tasks(1000)
    source.rewind_partition(("t", 0), 1000, source.raw_records(("t", 0))[1:])
    assert source.ledger_span(("t", 0)) is None
    source._buffers.add(KafkaRecord("t", 0, 8, None, b"8"))
    assert source.take_tasks(2000) == [(("t", 0), [6, 7, 8])]
    span = source.ledger_span(("t", 0))
    assert span is not None and (span.from_offset, span.next_offset) == (5, 9)


@pytest.mark.parametrize("retried", [[10, 11], [10]], ids=["whole", "failing-one-dropped"])
def test_a_record_rejected_at_take_stays_covered_when_isolation_hands_the_partition_back(
    retried: list[int],
) -> None:
    """Issue 9, hole 9c: offset 12 is undecodable (dead-lettered as the batch is taken) and
    the job fails on offset 11, so failure isolation hands the partition back with the
    records to retry (all of them, or all but the one dead-lettered after its last attempt).
    The rejected record is not among them; it must not be lost for all that: its letter is
    sent once, never again, and the spans that follow cover its offset with no gap."""
    queue = RecordingQueue()
    records = [KafkaRecord("t", 0, o, None, v) for o, v in ((10, b"1"), (11, b"0"), (12, b"x"))]
    source = source_with(records, queue)
    tp = ("t", 0)
    assert source.take_tasks(1000) == [(tp, [1, 0])]
    assert queue.offsets() == [(0, 12)]
    kept = [r for r in source.raw_records(tp) if r.offset in retried]
    source.rewind_partition(tp, 1000, kept)  # what isolation does with the failing task
    assert source.ledger_span(tp) is None

    assert source.take_tasks(2000) == [(tp, [int(r.value or b"") for r in kept])]
    span = source.ledger_span(tp)
    assert span is not None and (span.from_offset, span.next_offset) == (10, retried[-1] + 1)
    source._buffers.add(KafkaRecord("t", 0, 13, None, b"3"))
    assert source.take_tasks(3000) == [(tp, [3])]
    after = source.ledger_span(tp)
    assert after is not None and (after.from_offset, after.next_offset) == (span.next_offset, 14)
    assert queue.offsets() == [(0, 12)]  # sent once, not lost with the handed-back batch


def test_headers_name_origin_error_attempts_and_job() -> None:
    record = KafkaRecord("orders", 3, 42, b"k", b"v")
    try:
        raise KeyError("missing")
    except KeyError as exc:
        headers = dict(error_headers(record, exc, 2, "billing", 1_700_000_000_000))
    assert headers["__connect.errors.topic"] == b"orders"
    assert headers["__connect.errors.partition"] == b"3"
    assert headers["__connect.errors.offset"] == b"42"
    assert headers["__connect.errors.exception.class.name"] == b"builtins.KeyError"
    assert headers["__connect.errors.exception.message"] == b"'missing'"
    trace = headers["__connect.errors.exception.stacktrace"]
    assert isinstance(trace, bytes) and b"KeyError" in trace
    assert headers["dstreams.errors.attempts"] == b"2"
    assert headers["dstreams.errors.timestamp"] == b"1700000000000"
    assert headers["dstreams.errors.job"] == b"billing"


def test_stacktrace_is_bounded() -> None:
    record = KafkaRecord("t", 0, 0, None, None)
    headers = dict(error_headers(record, ValueError("x" * 100_000), 1, "j", 0))
    assert len(headers["__connect.errors.exception.stacktrace"] or b"") <= 8000
    assert len(headers["__connect.errors.exception.message"] or b"") <= 2000


def test_memory_attempts_count_per_shard_and_offset() -> None:
    attempts = MemoryAttempts()
    a, b = Shard("j", "t", 0), Shard("j", "t", 1)
    assert [attempts.add(a, 7), attempts.add(a, 7), attempts.add(b, 7)] == [1, 2, 1]
    assert attempts.add(a, 8, at_least=3) == 3
    assert attempts.get(a, 7) == 2 and attempts.get(a, 9) == 0


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        DeadLetterPolicy("t", max_attempts=0)
    with pytest.raises(ValueError):
        DeadLetterPolicy("")


def test_the_default_dead_letter_topic_is_a_legal_topic_name() -> None:
    import re

    from service.sinks.dead_letter import default_topic

    assert default_topic("wordcount") == "wordcount-dlq"
    topic = default_topic("team:wordcount")
    assert topic == "team.wordcount-dlq"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic)
