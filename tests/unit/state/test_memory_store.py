"""The memory store applies batches as Redis would: sets, deletes, drops, TTLs."""

from __future__ import annotations

from service.state.base import StateWrites
from service.state.memory_store import MemoryStateStore


def test_commit_sets_deletes_and_drops() -> None:
    store = MemoryStateStore()
    w = StateWrites()
    w.set("m", b"a", b"1")
    w.set("m", b"b", b"2")
    w.set("gone", b"x", b"y")
    store.commit(w)
    assert store.load_map("m") == {b"a": b"1", b"b": b"2"}
    w = StateWrites()
    w.delete("m", b"a")
    w.map_drops.add("gone")
    store.commit(w)
    assert store.load_map("m") == {b"b": b"2"}
    assert store.load_map("gone") == {}
    w = StateWrites()
    w.delete("m", b"b")
    store.commit(w)
    assert store.map_names() == []


def test_ttl_expires_maps() -> None:
    now = [100.0]
    store = MemoryStateStore(now=lambda: now[0])
    w = StateWrites()
    w.set("slice", b"k", b"v")
    w.map_ttls_ms["slice"] = 2000
    store.commit(w)
    now[0] += 1.5
    assert store.load_map("slice") == {b"k": b"v"}
    now[0] += 1.0
    assert store.load_map("slice") == {}
