"""The Kafka source's batch bookkeeping: caps, order, and what becomes committable when."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.sources.kafka import (
    KafkaRecord,
    PartitionBuffers,
    consumer_settings,
    records_per_batch,
)


def rec(partition: int, offset: int, topic: str = "t") -> KafkaRecord:
    return KafkaRecord(topic, partition, offset, None, f"{partition}:{offset}".encode())


def test_cap_is_rate_times_interval_and_at_least_one() -> None:
    assert records_per_batch(None, 2.0) is None
    assert records_per_batch(100, 2.0) == 200
    assert records_per_batch(2.5, 1.0) == 2
    assert records_per_batch(0.1, 1.0) == 1
    with pytest.raises(ValueError):
        records_per_batch(0, 1.0)


def test_add_reports_the_cap_and_take_keeps_the_rest_for_later() -> None:
    buffers = PartitionBuffers(cap=3)
    full = [buffers.add(rec(0, o)) for o in range(5)]
    assert full == [False, False, True, True, True]
    assert not buffers.add(rec(1, 0))

    first = buffers.take(1000)
    assert [[r.offset for r in part] for part in first] == [[0, 1, 2], [0]]
    assert buffers.size(("t", 0)) == 2
    second = buffers.take(2000)
    assert [[r.offset for r in part] for part in second] == [[3, 4]]
    assert buffers.take(3000) == []


def test_only_persisted_batches_become_committable() -> None:
    buffers = PartitionBuffers(cap=2)
    for o in range(6):
        buffers.add(rec(0, o))
    buffers.take(1000)  # offsets 0, 1
    buffers.take(2000)  # offsets 2, 3
    buffers.take(3000)  # offsets 4, 5
    assert buffers.persisted(999) == {}
    assert buffers.persisted(2000) == {("t", 0): 4}
    # already handed back once: not committable again
    assert buffers.persisted(2000) == {}
    assert buffers.persisted(3000) == {("t", 0): 6}


def test_dropping_a_partition_forgets_its_records_and_pending_offsets() -> None:
    buffers = PartitionBuffers(cap=None)
    for o in range(3):
        buffers.add(rec(0, o))
        buffers.add(rec(1, o))
    buffers.take(1000)
    buffers.add(rec(0, 3))
    buffers.add(rec(1, 3))
    assert buffers.drop([("t", 1)]) == 1
    assert buffers.persisted(1000) == {("t", 0): 3}
    assert [[r.partition for r in part] for part in buffers.take(2000)] == [[0]]


@given(
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=7)),
    counts=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
)
def test_every_record_is_handed_out_once_in_offset_order(
    cap: int | None, counts: list[int]
) -> None:
    buffers = PartitionBuffers(cap=cap)
    for partition, count in enumerate(counts):
        for offset in range(count):
            buffers.add(rec(partition, offset))
    handed: dict[int, list[int]] = {p: [] for p in range(len(counts))}
    t = 0
    while buffers.total():
        t += 1
        for part in buffers.take(t):
            assert cap is None or len(part) <= cap
            handed[part[0].partition].extend(r.offset for r in part)
    assert handed == {p: list(range(c)) for p, c in enumerate(counts)}
    committable = buffers.persisted(t)
    assert committable == {("t", p): c for p, c in enumerate(counts) if c}


def test_consumer_settings_turn_off_automatic_offsets_whatever_is_asked() -> None:
    config = consumer_settings(
        {
            "bootstrap.servers": "b:9092",
            "group.id": "g",
            "enable.auto.commit": True,
            "auto.offset.reset": "latest",
        }
    )
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert config["auto.offset.reset"] == "latest"
    with pytest.raises(ValueError, match=r"group\.id"):
        consumer_settings({"bootstrap.servers": "b:9092"})


def test_a_replay_batch_ends_exactly_at_its_offset_and_the_rest_follows() -> None:
    buffers = PartitionBuffers(cap=None)
    for o in (10, 11, 12, 14, 15):  # 13: a transaction marker, no record
        buffers.add(rec(0, o))
    buffers.add(rec(1, 7))
    first = buffers.take(1000, until={("t", 0): 13})
    assert [[r.offset for r in part] for part in first] == [[10, 11, 12], [7]]
    assert buffers.head_offset(("t", 0)) == 14
    second = buffers.take(2000, until={})
    assert [[r.offset for r in part] for part in second] == [[14, 15]]
    assert buffers.head_offset(("t", 0)) is None
