"""The Redis StateStore: one hash per map, one MULTI/EXEC transaction per batch."""

from __future__ import annotations

from typing import Any

import redis

from service.state.base import StateWrites

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_HSCAN_THRESHOLD = 10_000
_HSET_CHUNK = 5_000


def is_redis_url(url: str) -> bool:
    """A checkpoint URL that names a Redis server (anything else keeps state in memory)."""
    return url.startswith(REDIS_SCHEMES)


class RedisStateStore:
    """Maps are Redis hashes; a batch's writes are queued in one transactional pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStateStore:
        return cls(redis.Redis.from_url(url, **kwargs))

    @property
    def client(self) -> redis.Redis:
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
        pipe = self._client.pipeline(transaction=True)
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

    def drop_prefix(self, prefix: str) -> None:
        # SCAN, not KEYS: never block Redis on a large keyspace. Glob metacharacters in the
        # prefix are escaped so one job's name cannot match another's keys.
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                self._client.unlink(*batch)
                batch.clear()
        if batch:
            self._client.unlink(*batch)

    def close(self) -> None:
        self._client.close()
