"""An in-process StateStore: the default without a checkpoint, and the store of unit tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.state.base import StateWrites


class MemoryStateStore:
    """Maps held in a dict; commit applies a batch under a lock, so readers see all or nothing.

    TTLs are honoured against ``time.monotonic`` (or the given time source), like Redis PEXPIRE.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._maps: dict[str, dict[bytes, bytes]] = {}
        self._expiry: dict[str, float] = {}
        self._now = now
        self._lock = threading.Lock()
        self.commits = 0

    def _expire(self, name: str) -> None:
        deadline = self._expiry.get(name)
        if deadline is not None and self._now() >= deadline:
            self._maps.pop(name, None)
            self._expiry.pop(name, None)

    def load_map(self, name: str) -> dict[bytes, bytes]:
        with self._lock:
            self._expire(name)
            return dict(self._maps.get(name, {}))

    def map_names(self) -> list[str]:
        """Every live map name; for tests and debugging."""
        with self._lock:
            for name in list(self._maps):
                self._expire(name)
            return sorted(self._maps)

    def ttl_ms(self, name: str) -> int | None:
        with self._lock:
            deadline = self._expiry.get(name)
            return None if deadline is None else int((deadline - self._now()) * 1000)

    def commit(self, writes: StateWrites) -> None:
        with self._lock:
            for name in writes.map_drops:
                self._maps.pop(name, None)
                self._expiry.pop(name, None)
            for name, fields in writes.map_sets.items():
                self._expire(name)
                self._maps.setdefault(name, {}).update(fields)
            for name, keys in writes.map_deletes.items():
                current = self._maps.get(name)
                if current is not None:
                    for key in keys:
                        current.pop(key, None)
                    if not current:
                        # Redis deletes a hash with no fields; do the same.
                        del self._maps[name]
                        self._expiry.pop(name, None)
            for name, ttl in writes.map_ttls_ms.items():
                if name in self._maps:
                    self._expiry[name] = self._now() + ttl / 1000.0
            self.commits += 1

    def drop_prefix(self, prefix: str) -> None:
        with self._lock:
            for name in [n for n in self._maps if n.startswith(prefix)]:
                del self._maps[name]
                self._expiry.pop(name, None)

    def close(self) -> None:
        return None
