"""The Redis StateStore: one hash per map, on one Redis server or on Redis Cluster.

Which one is the checkpoint URL's choice (``service/state/redis_client.py``); jobs do not change.

Guarantees of ``commit``:

- One Redis server: a batch's writes are one ``MULTI/EXEC`` transaction, all or nothing.
- Redis Cluster: a transaction may not span hash slots, so the writes are grouped by slot and
  each group is one ``MULTI/EXEC`` on the slot's master. All maps sharing a hash tag (one Kafka
  partition's maps, ``dstreams:{job:topic:P}:*``) are therefore applied all or nothing, and so is
  each single map; maps of different slots are not: a crash between two groups leaves some of
  them applied. That is enough where ``commit`` is used: a Kafka job commits its state through
  the ledger's script (``service/commit/ledger.py``, one shard at a time) and sends ``commit``
  only the job's ``meta`` (one map); a job without Kafka inputs has no replayable input to
  make exactly-once anyway, and its maps (``dstreams:<job>:*``, no hash tag) spread over slots.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.cluster import RedisCluster

from service.state.base import StateWrites
from service.state.redis_client import AnyRedis, connect, hash_tag, is_redis_url
from service.state.split import split_writes

__all__ = ["AnyRedis", "RedisStateStore", "is_redis_url"]

_HSCAN_THRESHOLD = 10_000
_HSET_CHUNK = 5_000
_UNLINK_CHUNK = 500


class RedisStateStore:
    """Maps are Redis hashes; a batch's writes go out in transactional pipelines."""

    def __init__(self, client: AnyRedis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStateStore:
        """``redis://``, ``rediss://``, ``unix://``, or ``redis+cluster://`` for a cluster."""
        return cls(connect(url, **kwargs))

    @property
    def client(self) -> AnyRedis:
        return self._client

    def load_map(self, name: str) -> dict[bytes, bytes]:
        size = int(self._client.hlen(name))
        if size > _HSCAN_THRESHOLD:
            # HSCAN keeps each round trip small and never blocks Redis on one huge reply.
            return {k: v for k, v in self._client.hscan_iter(name, count=1000)}
        raw: dict[Any, Any] = self._client.hgetall(name)
        return {bytes(k): bytes(v) for k, v in raw.items()}

    def commit(self, writes: StateWrites) -> None:
        if writes.is_empty():
            return
        if isinstance(self._client, RedisCluster):
            cluster: Any = self._client  # redis-py's cluster methods are untyped
            # redis-py resends a slot's MULTI/EXEC after a connection error or a MOVED: safe,
            # since sets, deletes, drops and expiries land the same when applied twice
            groups = split_writes(writes, lambda name: int(cluster.keyslot(name)))
            for slot in sorted(groups):
                _apply(cluster.pipeline(transaction=True), groups[slot])
        else:
            _apply(self._client.pipeline(transaction=True), writes)

    def drop_prefix(self, prefix: str) -> None:
        # SCAN, not KEYS: never block Redis on a large keyspace. Glob metacharacters in the
        # prefix are escaped so one job's name cannot match another's keys.
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        batch: list[bytes] = []
        for key in self._scan(prefix, pattern):
            batch.append(key)
            if len(batch) >= _UNLINK_CHUNK:
                self._unlink(batch)
                batch.clear()
        if batch:
            self._unlink(batch)

    def _scan(self, prefix: str, pattern: str) -> Iterable[bytes]:
        if not isinstance(self._client, RedisCluster):
            return self._client.scan_iter(match=pattern, count=1000)
        client: Any = self._client
        if hash_tag(prefix) is not None:
            # every key starting with the prefix has the prefix's tag, so lives on one master
            node = client.get_node_from_key(prefix)
            keys: Iterable[bytes] = client.scan_iter(match=pattern, count=1000, target_nodes=node)
            return keys
        # redis-py scans every master of the cluster, each with its own cursor
        keys = client.scan_iter(match=pattern, count=1000)
        return keys

    def _unlink(self, keys: list[bytes]) -> None:
        if isinstance(self._client, RedisCluster):
            # UNLINK of several keys must stay within one slot: one UNLINK per key, pipelined
            # (a non-transactional cluster pipeline sends each master its own keys)
            cluster: Any = self._client
            pipe = cluster.pipeline(transaction=False)
            for key in keys:
                pipe.unlink(key)
            pipe.execute()
        else:
            self._client.unlink(*keys)

    def close(self) -> None:
        self._client.close()


def _apply(pipe: Any, writes: StateWrites) -> None:
    """Queue drops, then sets, then deletes, then expiries (a drop never undoes a set)."""
    for name in writes.map_drops:
        pipe.delete(name)
    for name, fields in writes.map_sets.items():
        items = list(fields.items())
        for i in range(0, len(items), _HSET_CHUNK):
            pipe.hset(name, mapping=dict(items[i : i + _HSET_CHUNK]))
    for name, keys in writes.map_deletes.items():
        if keys:
            pipe.hdel(name, *keys)
    for name, ttl in writes.map_ttls_ms.items():
        pipe.pexpire(name, ttl)
    pipe.execute()
