"""Shuffled records: keys partitioned as the Java client does, values and markers read back."""

from __future__ import annotations

import pytest

from service.shuffle.alignment import AlignmentState, ShuffleRecord
from service.shuffle.codec import (
    UnshuffleableKey,
    data_record,
    decode,
    decode_state,
    encode_state,
    key_bytes,
    marker_record,
    partition_for,
)


def test_text_keys_land_where_a_java_producer_puts_them() -> None:
    # Utils.murmur2("1") = -1993445489 (Kafka's test vector), made positive, modulo
    assert partition_for("1", 7) == (-1993445489 & 0x7FFFFFFF) % 7
    assert partition_for(b"1", 7) == partition_for("1", 7)


def test_other_keys_have_the_same_bytes_in_every_process() -> None:
    assert key_bytes((1, "a", None, 2.5, True)) == b"(1,'a',None,2.5,True,)"
    assert key_bytes(42) == b"42"
    with pytest.raises(UnshuffleableKey, match="frozenset"):
        key_bytes(frozenset({"a"}))


def test_a_pair_and_a_marker_read_back() -> None:
    key, value, headers = data_record(("w", 1), (0, (("w", 1), [1, 2])), 300, ("in", 4))
    assert key == b"('w',1,)"
    assert decode(value, headers) == ShuffleRecord(("in", 4), 300, (0, (("w", 1), [1, 2])))
    assert decode(None, marker_record(600, ("a:b", 2))) == ShuffleRecord(
        ("a:b", 2), 600, marker=True
    )
    with pytest.raises(ValueError, match="not a shuffled record"):
        decode(b"x", [])


def test_the_alignment_state_reads_back() -> None:
    state = AlignmentState({("in", 0): 300}, 200, ((300, ("k", 1)),))
    assert decode_state(encode_state(state)) == state
    assert decode_state(None) == AlignmentState()
