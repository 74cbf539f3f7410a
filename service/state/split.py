"""Split one batch's ``StateWrites`` by Redis Cluster hash tag: one group per ledger shard.

Under Kafka inputs every map a batch writes for partition P carries P's tag
(``dstreams:{job:topic:P}:...``), so each group can be applied atomically with P's offsets by
one ledger script; job-scoped maps (no tag) form the ``None`` group. The same split by hash
slot gives the Redis Cluster store one MULTI/EXEC per slot.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from service.state.base import StateWrites
from service.state.redis_client import hash_tag

K = TypeVar("K", bound=Hashable)


def split_writes(writes: StateWrites, key: Callable[[str], K]) -> dict[K, StateWrites]:
    """``key(map name)`` -> the writes of the maps with that key (keys with no write omitted)."""
    groups: dict[K, StateWrites] = {}

    def group(name: str) -> StateWrites:
        k = key(name)
        found = groups.get(k)
        if found is None:
            found = groups[k] = StateWrites()
        return found

    for name, fields in writes.map_sets.items():
        group(name).map_sets[name] = dict(fields)
    for name, keys in writes.map_deletes.items():
        group(name).map_deletes[name] = set(keys)
    for name in writes.map_drops:
        group(name).map_drops.add(name)
    for name, ttl in writes.map_ttls_ms.items():
        group(name).map_ttls_ms[name] = ttl
    return groups


def split_by_hash_tag(writes: StateWrites) -> dict[str | None, StateWrites]:
    """``hash_tag(name)`` -> the writes of the maps with that tag (tags with no write omitted)."""
    return split_writes(writes, hash_tag)
