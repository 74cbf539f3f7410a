"""How often a record has failed, counted in Redis so a restart does not give it fresh attempts.

One hash per shard (``Shard.key("attempts")``, so it shares the partition's Redis Cluster hash
tag), one field per failing offset. Only failures write here: a healthy partition costs nothing.
The hash expires a while after its last failure, since offsets behind the ledger's position are
never read again and nothing else would reclaim them.
"""

from __future__ import annotations

from typing import Protocol

from service.commit.ledger import Shard
from service.state.redis_client import AnyRedis

# Long enough for any realistic retry schedule; refreshed on every failure.
ATTEMPTS_TTL_MS = 7 * 24 * 3600 * 1000


class AttemptCounter(Protocol):
    def add(self, shard: Shard, offset: int, *, at_least: int = 0) -> int:
        """Count one more failed attempt of ``offset`` (at least ``at_least``); the new total."""

    def get(self, shard: Shard, offset: int) -> int:
        """Failed attempts so far (0 for a record that never failed)."""


class RedisAttempts:
    """Attempts in Redis: survive restarts and move with the partition to its next owner."""

    def __init__(self, client: AnyRedis, ttl_ms: int = ATTEMPTS_TTL_MS) -> None:
        self._client = client
        self._ttl_ms = ttl_ms

    def add(self, shard: Shard, offset: int, *, at_least: int = 0) -> int:
        key = shard.key("attempts")
        field = str(offset)
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(key, field, 1)
        pipe.pexpire(key, self._ttl_ms)
        count = int(pipe.execute()[0])
        if count < at_least:
            self._client.hset(key, field, str(at_least))
            count = at_least
        return count

    def get(self, shard: Shard, offset: int) -> int:
        value = self._client.hget(shard.key("attempts"), str(offset))
        return int(value) if value is not None else 0


class MemoryAttempts:
    """Attempts in this process only: for Kafka jobs without a Redis checkpoint (and tests)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[Shard, int], int] = {}

    def add(self, shard: Shard, offset: int, *, at_least: int = 0) -> int:
        count = max(self._counts.get((shard, offset), 0) + 1, at_least)
        self._counts[(shard, offset)] = count
        return count

    def get(self, shard: Shard, offset: int) -> int:
        return self._counts.get((shard, offset), 0)
