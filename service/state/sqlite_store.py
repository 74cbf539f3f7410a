"""A StateStore in one SQLite file: what ``ssc.checkpoint("/some/dir")`` keeps state in.

PySpark code checkpoints to a directory; run as a plain ``python job.py`` with nothing else
installed, its state must survive the process as Spark's does. SQLite is in the standard
library, and one transaction per batch makes a batch's writes all or nothing, as the Redis
store's MULTI does. TTLs are kept against the wall clock (``time.time``): they must hold across
restarts, where a monotonic clock starts again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from service.state.base import StateWrites

FILE_NAME = "dstreams-state.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (
    map TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (map, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expiry (map TEXT PRIMARY KEY, deadline REAL NOT NULL);
"""


class SQLiteStateStore:
    """Maps of bytes in ``<directory>/dstreams-state.sqlite``; one transaction per commit."""

    def __init__(self, directory: str | Path, now: Callable[[], float] = time.time) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / FILE_NAME
        self._now = now
        self._lock = threading.Lock()
        # the batch thread commits, the caller's thread may read: one connection, one lock
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
        self._db.executescript(_SCHEMA)

    def _expired(self, name: str) -> bool:
        row = self._db.execute("SELECT deadline FROM expiry WHERE map = ?", (name,)).fetchone()
        return row is not None and self._now() >= row[0]

    def load_map(self, name: str) -> dict[bytes, bytes]:
        with self._lock:
            if self._expired(name):
                return {}
            rows = self._db.execute("SELECT key, value FROM fields WHERE map = ?", (name,))
            return {bytes(k): bytes(v) for k, v in rows}

    def map_names(self) -> list[str]:
        """Every live map name; for tests and debugging."""
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT DISTINCT map FROM fields")]
            return sorted(n for n in names if not self._expired(n))

    def commit(self, writes: StateWrites) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for name in writes.map_drops:
                    self._drop(name)
                for name, fields in writes.map_sets.items():
                    if self._expired(name):
                        self._drop(name)
                    db.executemany(
                        "INSERT OR REPLACE INTO fields (map, key, value) VALUES (?, ?, ?)",
                        [(name, k, v) for k, v in fields.items()],
                    )
                for name, keys in writes.map_deletes.items():
                    db.executemany(
                        "DELETE FROM fields WHERE map = ? AND key = ?", [(name, k) for k in keys]
                    )
                    left = db.execute("SELECT 1 FROM fields WHERE map = ? LIMIT 1", (name,))
                    if left.fetchone() is None:
                        # Redis deletes a hash with no fields, and its TTL with it
                        db.execute("DELETE FROM expiry WHERE map = ?", (name,))
                now = self._now()
                for name, ttl in writes.map_ttls_ms.items():
                    db.execute(
                        "INSERT OR REPLACE INTO expiry (map, deadline) VALUES (?, ?)",
                        (name, now + ttl / 1000.0),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _drop(self, name: str) -> None:
        self._db.execute("DELETE FROM fields WHERE map = ?", (name,))
        self._db.execute("DELETE FROM expiry WHERE map = ?", (name,))

    def drop_prefix(self, prefix: str) -> None:
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            self._db.execute("DELETE FROM fields WHERE map LIKE ? ESCAPE '\\'", (pattern,))
            self._db.execute("DELETE FROM expiry WHERE map LIKE ? ESCAPE '\\'", (pattern,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
