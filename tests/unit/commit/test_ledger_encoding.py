"""Key naming, hash tags and the ARGV encoding of a commit, without any Redis."""

from __future__ import annotations

import binascii
import socket

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from service.commit.ledger import (
    OP_CHUNK,
    BatchLedger,
    ForeignKeyError,
    Shard,
    decode_writes,
    encode_commit,
    hash_tag,
)
from service.state.base import StateWrites


def _crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0)  # XMODEM CRC16, the one Redis Cluster uses


def _slot(key: str) -> int:
    tag = hash_tag(key)
    return _crc16((tag if tag is not None else key).encode()) % 16384


def test_shard_keys_carry_the_shard_hash_tag() -> None:
    shard = Shard("wordcount", "lines", 3)
    assert shard.tag == "wordcount:lines:3"
    assert shard.ledger_key == "dstreams:{wordcount:lines:3}:ledger"
    assert shard.epoch_key == "dstreams:{wordcount:lines:3}:epoch"
    assert shard.key("s2", "state") == "dstreams:{wordcount:lines:3}:s2:state"
    keys = [shard.ledger_key, shard.epoch_key, shard.key("s2", "slice", "1000")]
    assert {hash_tag(k) for k in keys} == {"wordcount:lines:3"}
    assert len({_slot(k) for k in keys}) == 1


def test_hash_tag_follows_redis_cluster_rule() -> None:
    assert hash_tag("a{b}c{d}") == "b"
    assert hash_tag("a{}b{c}") is None  # empty first tag: the whole key is hashed
    assert hash_tag("a{b") is None
    assert hash_tag("plain") is None
    assert hash_tag("x}{y}") == "y"


@pytest.mark.parametrize(
    ("job", "topic", "partition"),
    [("j{x}", "t", 0), ("j", "t}", 0), ("", "t", 0), ("j", "a:b", 0), ("j", "t", -1)],
)
def test_shard_names_that_would_break_the_tag_are_refused(
    job: str, topic: str, partition: int
) -> None:
    with pytest.raises(ValueError):
        Shard(job, topic, partition)


def test_distinct_shards_have_distinct_tags() -> None:
    # ':' may appear in a job name; topics cannot hold it, so tags stay unambiguous.
    assert Shard("a:b", "c", 1).tag != Shard("a", "b", 1).tag
    assert Shard("a", "b", 1).tag != Shard("a", "b", 11).tag


def test_keys_of_another_shard_are_refused() -> None:
    mine, other = Shard("j", "t", 0), Shard("j", "t", 1)
    writes = StateWrites()
    writes.set(mine.key("s1", "state"), b"k", b"v")
    writes.set(other.key("s1", "state"), b"k", b"v")
    with pytest.raises(ForeignKeyError, match=r"j:t:1"):
        encode_commit(mine, 1, 1, 0, 1, writes)


@pytest.mark.parametrize("name", ["dstreams:j:t:0:state", "dstreams:{j:t:0:x}:state"])
def test_untagged_or_mistagged_keys_are_refused(name: str) -> None:
    writes = StateWrites(map_drops={name})
    with pytest.raises(ForeignKeyError):
        encode_commit(Shard("j", "t", 0), 1, 1, 0, 1, writes)


def test_the_ledger_keys_cannot_be_written_as_state() -> None:
    shard = Shard("j", "t", 0)
    with pytest.raises(ForeignKeyError, match="ledger's own"):
        encode_commit(shard, 1, 1, 0, 1, StateWrites(map_drops={shard.epoch_key}))


@pytest.mark.parametrize(
    ("epoch", "batch_id", "from_offset", "next_offset"),
    [(1, 1, 5, 4), (-1, 1, 0, 1), (1, 1, 0, 2**53), (1, -2, 0, 1)],
)
def test_malformed_positions_are_refused(
    epoch: int, batch_id: int, from_offset: int, next_offset: int
) -> None:
    with pytest.raises(ValueError):
        encode_commit(Shard("j", "t", 0), epoch, batch_id, from_offset, next_offset, StateWrites())


def test_a_foreign_key_never_reaches_redis() -> None:
    """The client points at a closed port: reaching Redis would raise ConnectionError instead."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ledger = BatchLedger(redis.Redis(port=port), retry_seconds=0)
    shard = Shard("j", "t", 0)
    writes = StateWrites(map_drops={Shard("j", "t", 1).key("s1", "state")})
    with pytest.raises(ForeignKeyError):
        ledger.commit_batch(shard, 1, 1, 0, 1, writes)
    with pytest.raises(redis.ConnectionError):
        ledger.commit_batch(shard, 1, 1, 0, 1, StateWrites())


_SHARD = Shard("job", "topic", 7)
_names = st.sampled_from([_SHARD.key(f"s{i}", "state") for i in range(4)])
_blobs = st.binary(max_size=12)


@st.composite
def _writes(draw: st.DrawFn) -> StateWrites:
    writes = StateWrites()
    for name, key, value in draw(st.lists(st.tuples(_names, _blobs, _blobs), max_size=30)):
        writes.set(name, key, value)
    for name, key in draw(st.lists(st.tuples(_names, _blobs), max_size=30)):
        writes.delete(name, key)
    writes.map_drops = draw(st.sets(_names, max_size=2))
    writes.map_ttls_ms = draw(st.dictionaries(_names, st.integers(1, 2**40), max_size=2))
    # StateWrites keeps empty per-map containers after set/delete cancel out; the wire does not.
    writes.map_sets = {k: v for k, v in writes.map_sets.items() if v}
    writes.map_deletes = {k: v for k, v in writes.map_deletes.items() if v}
    return writes


@given(_writes())
def test_encoding_round_trips(writes: StateWrites) -> None:
    encoded = encode_commit(_SHARD, 3, 1000, 10, 20, writes)
    assert encoded.keys[:2] == [_SHARD.ledger_key, _SHARD.epoch_key]
    assert encoded.args[:5] == [_SHARD.tag, 3, 1000, 10, 20]
    assert len(set(encoded.keys)) == len(encoded.keys)
    assert decode_writes(encoded.keys, encoded.args) == writes


def test_large_maps_are_split_into_bounded_ops_of_one_call() -> None:
    name = _SHARD.key("s1", "state")
    writes = StateWrites()
    for i in range(2 * OP_CHUNK + 5):
        writes.set(name, i.to_bytes(4, "big"), b"\x00\xff" * 3)
    encoded = encode_commit(_SHARD, 1, 1, 0, 1, writes)
    counts = [encoded.args[i + 2] for i, a in enumerate(encoded.args) if a == "S"]
    assert counts == [OP_CHUNK, OP_CHUNK, 5]
    assert decode_writes(encoded.keys, encoded.args) == writes
