"""Split one batch's ``StateWrites`` by Redis Cluster hash tag: one group per ledger shard.

Under Kafka inputs every map a batch writes for partition P carries P's tag
(``dstreams:{job:topic:P}:...``), so each group can be applied atomically with P's offsets by
one ledger script; job-scoped maps (no tag) form the ``None`` group.
"""

from __future__ import annotations

from service.commit.ledger import hash_tag
from service.state.base import StateWrites


def split_by_hash_tag(writes: StateWrites) -> dict[str | None, StateWrites]:
    """``hash_tag(name)`` -> the writes of the maps with that tag (tags with no write omitted)."""
    groups: dict[str | None, StateWrites] = {}

    def group(name: str) -> StateWrites:
        tag = hash_tag(name)
        found = groups.get(tag)
        if found is None:
            found = groups[tag] = StateWrites()
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
