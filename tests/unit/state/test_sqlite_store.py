"""The SQLite store (``ssc.checkpoint("/some/dir")``) applies batches as Redis would, all or
nothing, and keeps them across processes: a new store on the same directory reads them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.state.base import StateWrites
from service.state.sqlite_store import FILE_NAME, SQLiteStateStore


def writes(**maps: dict[bytes, bytes]) -> StateWrites:
    w = StateWrites()
    for name, fields in maps.items():
        for key, value in fields.items():
            w.set(name, key, value)
    return w


def test_commit_sets_deletes_and_drops_and_a_new_store_reads_them(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "ckpt")
    store.commit(writes(m={b"a": b"1", b"b": b"2"}, gone={b"x": b"y"}))
    w = StateWrites()
    w.delete("m", b"a")
    w.map_drops.add("gone")
    store.commit(w)
    store.close()
    again = SQLiteStateStore(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / FILE_NAME).is_file()
    assert again.load_map("m") == {b"b": b"2"}
    assert again.load_map("gone") == {}
    assert again.map_names() == ["m"]
    again.close()


def test_a_failing_commit_leaves_nothing_of_its_batch(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path)
    store.commit(writes(m={b"a": b"1"}))
    bad = writes(m={b"a": b"2", b"b": b"3"})
    bad.map_sets["m"][b"d"] = object()  # type: ignore[assignment]
    with pytest.raises(sqlite3.ProgrammingError):
        store.commit(bad)
    assert store.load_map("m") == {b"a": b"1"}


def test_ttls_hold_across_stores_and_end_with_the_map(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteStateStore(tmp_path, now=lambda: now[0])
    w = writes(slice={b"k": b"v"})
    w.map_ttls_ms["slice"] = 2000
    store.commit(w)
    store.close()
    later = SQLiteStateStore(tmp_path, now=lambda: now[0])
    now[0] += 1.5
    assert later.load_map("slice") == {b"k": b"v"}
    now[0] += 1.0
    assert later.load_map("slice") == {}
    # a map emptied by deletes loses its TTL, as a Redis hash does
    w = writes(short={b"k": b"v"})
    w.map_ttls_ms["short"] = 10
    later.commit(w)
    gone = StateWrites()
    gone.delete("short", b"k")
    later.commit(gone)
    later.commit(writes(short={b"again": b"1"}))
    now[0] += 60
    assert later.load_map("short") == {b"again": b"1"}


def test_drop_prefix_takes_only_maps_under_it(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path)
    store.commit(writes(**{"dstreams:j_1:s1": {b"a": b"1"}, "dstreams:jx1:s1": {b"b": b"2"}}))
    store.drop_prefix("dstreams:j_1:")
    assert store.map_names() == ["dstreams:jx1:s1"]  # "_" is no wildcard here
