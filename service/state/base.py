"""The contract between the DStream engine and the store that holds its state.

The engine owns serialization (values are opaque bytes here) and decides what to keep; a store
only reads and applies writes. All writes of one batch arrive in one ``StateWrites`` and are
applied atomically by ``commit``, so a batch's state is either wholly persisted or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class StateWrites:
    """Everything one batch changes, pre-aggregated: at most one write per key per batch."""

    # map name -> field -> value to set, and fields to delete
    map_sets: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    map_deletes: dict[str, set[bytes]] = field(default_factory=dict)
    # map names to drop whole
    map_drops: set[str] = field(default_factory=set)
    # map name -> expiry in milliseconds, set after the map's writes (window slices)
    map_ttls_ms: dict[str, int] = field(default_factory=dict)

    def set(self, name: str, key: bytes, value: bytes) -> None:
        self.map_sets.setdefault(name, {})[key] = value
        deletes = self.map_deletes.get(name)
        if deletes is not None:
            deletes.discard(key)

    def delete(self, name: str, key: bytes) -> None:
        self.map_deletes.setdefault(name, set()).add(key)
        sets = self.map_sets.get(name)
        if sets is not None:
            sets.pop(key, None)

    def is_empty(self) -> bool:
        return not (self.map_sets or self.map_deletes or self.map_drops or self.map_ttls_ms)


class StateStore(Protocol):
    """Durable maps of bytes to bytes, grouped by name, for one job."""

    def load_map(self, name: str) -> dict[bytes, bytes]:
        """Every field of one map; empty when the map does not exist or has expired."""

    def commit(self, writes: StateWrites) -> None:
        """Apply one batch's writes atomically (all or nothing)."""

    def drop_prefix(self, prefix: str) -> None:
        """Forget every map whose name starts with ``prefix`` (a job starting afresh)."""

    def close(self) -> None:
        """Release connections."""
