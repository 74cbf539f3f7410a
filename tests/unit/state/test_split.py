"""split_by_hash_tag: one StateWrites per ledger shard, job-scoped maps under None."""

from __future__ import annotations

from service.commit.ledger import Shard
from service.state.base import StateWrites
from service.state.memory_store import MemoryStateStore
from service.state.split import split_by_hash_tag


def test_writes_are_grouped_by_hash_tag_and_together_equal_the_whole() -> None:
    p0, p1 = Shard("job", "t", 0), Shard("job", "t", 1)
    writes = StateWrites()
    writes.set(p0.key("s2", "state"), b"a", b"1")
    writes.delete(p0.key("s2", "state"), b"gone")
    writes.set(p0.key("s1", "slice", "500"), b"k", b"v")
    writes.map_ttls_ms[p0.key("s1", "slice", "500")] = 9000
    writes.map_drops.add(p1.key("s1", "slice", "0"))
    writes.set(p1.key("meta"), b"last_batch_ms", b"500")
    writes.set("dstreams:job:meta", b"zero_ms", b"0")

    groups = split_by_hash_tag(writes)

    assert set(groups) == {p0.tag, p1.tag, None}
    assert groups[p0.tag].map_sets == {
        p0.key("s2", "state"): {b"a": b"1"},
        p0.key("s1", "slice", "500"): {b"k": b"v"},
    }
    assert groups[p0.tag].map_deletes == {p0.key("s2", "state"): {b"gone"}}
    assert groups[p0.tag].map_ttls_ms == {p0.key("s1", "slice", "500"): 9000}
    assert groups[p1.tag].map_drops == {p1.key("s1", "slice", "0")}
    assert groups[None].map_sets == {"dstreams:job:meta": {b"zero_ms": b"0"}}
    # applying the groups one by one gives what applying the whole batch gives
    whole, parts = MemoryStateStore(), MemoryStateStore()
    whole.commit(writes)
    for group in groups.values():
        parts.commit(group)
    assert parts.map_names() == whole.map_names()
    assert all(parts.load_map(n) == whole.load_map(n) for n in whole.map_names())


def test_empty_writes_give_no_groups() -> None:
    assert split_by_hash_tag(StateWrites()) == {}
