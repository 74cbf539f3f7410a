"""An abandoned batch (outputs refused, or the batch raised) is handed out again, same records,
same span start, so the ledger sees no gap."""

from __future__ import annotations

from service.sources.kafka import KafkaRecord, KafkaSource


def test_rewind_hands_the_batch_out_again_before_later_records() -> None:
    source = KafkaSource(
        {"group.id": "g", "bootstrap.servers": "unused:9092"},
        ["in"],
        batch_interval_s=1.0,
        max_rate_per_partition=2,
    )
    for offset in range(10, 15):
        source._buffers.add(KafkaRecord("in", 0, offset, None, str(offset).encode()))
    first = source.take_tasks(1000)
    span = source.ledger_span(("in", 0))
    assert span is not None and (span.from_offset, span.next_offset) == (10, 12)

    source.rewind()
    assert source.ledger_span(("in", 0)) is None  # nothing of it reaches the ledger
    assert source.group_offsets() is None
    assert source._buffers.persisted(1000) == {}  # its offsets are not committable either
    again = source.take_tasks(2000)
    assert again == first
    span = source.ledger_span(("in", 0))
    assert span is not None and (span.from_offset, span.next_offset) == (10, 12)
    later = source.take_tasks(3000)
    assert [r.offset for r in later[0][1]] == [12, 13]
    span = source.ledger_span(("in", 0))
    assert span is not None and (span.from_offset, span.next_offset) == (12, 14)
