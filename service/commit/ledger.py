"""The batch commit ledger: a batch's state and its input position reach Redis in one step.

A *shard* is one Kafka input partition of one job. Every key of a shard carries the Redis
Cluster hash tag ``{job:topic:partition}``, so one Lua script (``ledger.lua``) may touch all of
them, on a single Redis or on Redis Cluster. Redis, not Kafka, holds the authoritative offsets.

Protocol, per shard:

1. On assignment, the new owner ``acquire_epoch`` (``INCR`` of the shard's epoch key) and seeks
   to ``read_position``. Epochs come from Redis, never from a clock, so they are totally ordered.
2. Each batch ends with ``commit_batch``: one script call that first checks everything, then
   applies the batch's ``StateWrites`` and records ``next_offset``, ``batch_id`` and ``epoch``.

Invariants:

- I1 (atomic batch) The ledger records ``next_offset = n`` iff the state writes of the batch
  that ended at ``n`` are applied, and both came from the same script call. The script checks
  every failure it can meet (foreign keys, malformed ops, fencing, gaps, ``WRONGTYPE``) before
  its first write, because Redis does not roll a script back on a runtime error; an out-of-
  memory refusal only ever hits a script's first write, so it too writes nothing. A crash of
  Redis mid-script loses the whole script (its effects reach the AOF and replicas as one unit).
- I2 (fencing) A commit with ``epoch`` below the shard's epoch counter writes nothing
  (FENCED): once a new owner has run ``acquire_epoch`` the previous owner cannot write again.
- I3 (idempotence) A commit whose records are already covered (``next_offset <= recorded``
  and the batch is not empty, or its batch id is not after the recorded one) writes nothing
  (DUPLICATE). So a retry after an ambiguous reply (connection lost after sending) is safe:
  either the first call applied and the retry is a DUPLICATE, or it did not and the retry
  applies.
- I4 (no gap) A commit whose ``from_offset`` differs from the recorded ``next_offset`` writes
  nothing (GAP): records would be skipped or counted twice.
- I5 (no amnesia) A commit whose epoch is above the shard's epoch counter writes nothing
  (REGRESSED): the epoch came from that counter, so Redis lost acknowledged writes (a failover
  without ``WAIT``, ``appendfsync everysec``, an emptied server) and its state may lack what
  the committer's caches assume is there. The owner claims the partition again and reads on
  from what Redis still records. ``acquire_epoch`` never hands out an epoch at or below one the
  ledger recorded, so epochs do not go back after such a loss either.

Crash safety, by instant: before the call nothing changed and the batch is replayed from the
recorded offset; during the call Redis applies all or nothing (I1); after the call but before
the reply the retry is a DUPLICATE (I3); after the reply the Kafka commit is only for lag
tools, so losing it costs nothing. A zombie's late commit is FENCED (I2).
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)

from service.state.base import StateWrites
from service.state.redis_client import AnyRedis, hash_tag

log = logging.getLogger(__name__)

KEY_PREFIX = "dstreams"
# Lua numbers are doubles: offsets, ids and epochs must be exact integers there.
MAX_EXACT_INT = 2**53 - 1
# Fields per HSET/HDEL op: Lua's unpack() cannot spread many more arguments at once.
OP_CHUNK = 1000
# Errors after which the same script call is sent again (I3 makes that safe). Besides a lost
# connection: a failover in progress (READONLY from a demoted primary, MOVED/ASK once a slot
# moved, TRYAGAIN, CLUSTERDOWN) and a full Redis (OOM): each refuses the script before its
# first write, so it wrote nothing and is sent again until Redis takes it.
RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    ReadOnlyError,
    TryAgainError,
    AskError,
    OutOfMemoryError,
)


class ForeignKeyError(ValueError):
    """A key in a commit does not belong to the shard: refused before reaching Redis."""


class LedgerError(RuntimeError):
    """Redis refused a commit as malformed (a caller bug or a key of the wrong type)."""


class UnsafeRedisError(RuntimeError):
    """The Redis server is configured in a way that can lose committed state."""


@dataclass(frozen=True)
class Shard:
    """One Kafka input partition of one job: the unit of ownership, fencing and atomicity."""

    job: str
    topic: str
    partition: int

    def __post_init__(self) -> None:
        # Braces would move Redis Cluster's hash tag; ':' in a topic would make two shards'
        # tags equal (the job may contain ':', the topic and partition are parsed from the right).
        for what, text in (("job", self.job), ("topic", self.topic)):
            if not text or "{" in text or "}" in text:
                raise ValueError(f"shard {what} {text!r} must be non-empty and free of braces")
        if ":" in self.topic:
            raise ValueError(f"shard topic {self.topic!r} must not contain ':'")
        if self.partition < 0:
            raise ValueError(f"shard partition {self.partition} must be >= 0")

    @property
    def tag(self) -> str:
        """The hash tag's content: ``job:topic:partition``."""
        return f"{self.job}:{self.topic}:{self.partition}"

    def key(self, *parts: str) -> str:
        """A key of this shard, e.g. ``key("s2", "state")`` -> ``dstreams:{j:t:3}:s2:state``."""
        return ":".join((KEY_PREFIX, "{" + self.tag + "}", *parts))

    @property
    def ledger_key(self) -> str:
        return self.key("ledger")

    @property
    def epoch_key(self) -> str:
        return self.key("epoch")


class Outcome(enum.Enum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    FENCED = "FENCED"
    GAP = "GAP"
    # the epoch counter is below the committer's epoch: Redis lost acknowledged writes
    REGRESSED = "REGRESSED"


@dataclass(frozen=True)
class Position:
    """What the ledger recorded for a shard: where its next batch starts."""

    next_offset: int
    batch_id: int
    epoch: int
    committed_at_ms: int


@dataclass(frozen=True)
class CommitResult:
    outcome: Outcome
    # the recorded position after the call (the new one when APPLIED)
    position: Position | None
    # the shard's epoch counter as the script saw it
    current_epoch: int
    # replicas that acknowledged (``WAIT``), when waiting was configured
    replicas_acked: int | None = None


@dataclass(frozen=True)
class EncodedCommit:
    keys: list[str]
    args: list[bytes | str | int]


def encode_commit(
    shard: Shard,
    epoch: int,
    batch_id: int,
    from_offset: int,
    next_offset: int,
    writes: StateWrites,
) -> EncodedCommit:
    """KEYS and ARGV for ``ledger.lua``; raises before Redis sees anything malformed."""
    for name, value in (
        ("epoch", epoch),
        ("batch_id", batch_id),
        ("from_offset", from_offset),
        ("next_offset", next_offset),
    ):
        if not 0 <= value <= MAX_EXACT_INT:
            raise ValueError(f"{name} {value} is outside 0..2**53-1")
    if next_offset < from_offset:
        raise ValueError(f"next_offset {next_offset} is before from_offset {from_offset}")

    keys = [shard.ledger_key, shard.epoch_key]
    index: dict[str, int] = {}

    def key_index(name: str) -> int:
        if name not in index:
            if hash_tag(name) != shard.tag:
                raise ForeignKeyError(f"key {name!r} lacks the hash tag {{{shard.tag}}}")
            if name in (shard.ledger_key, shard.epoch_key):
                raise ForeignKeyError(f"key {name!r} is the ledger's own")
            keys.append(name)
            index[name] = len(keys)  # Lua's KEYS is 1-based
        return index[name]

    args: list[bytes | str | int] = [shard.tag, epoch, batch_id, from_offset, next_offset]
    for name in sorted(writes.map_drops):
        args += ["D", key_index(name), 0]
    for name in sorted(writes.map_sets):
        items = list(writes.map_sets[name].items())
        for start in range(0, len(items), OP_CHUNK):
            chunk = items[start : start + OP_CHUNK]
            args += ["S", key_index(name), len(chunk)]
            for fld, val in chunk:
                args += [fld, val]
    for name in sorted(writes.map_deletes):
        fields = sorted(writes.map_deletes[name])
        for start in range(0, len(fields), OP_CHUNK):
            batch = fields[start : start + OP_CHUNK]
            args += ["H", key_index(name), len(batch), *batch]
    for name in sorted(writes.map_ttls_ms):
        ttl = writes.map_ttls_ms[name]
        if not 0 < ttl <= MAX_EXACT_INT:
            raise ValueError(f"TTL of {name!r} must be a positive number of ms, got {ttl}")
        args += ["T", key_index(name), 1, ttl]
    return EncodedCommit(keys, args)


def decode_writes(keys: list[str], args: list[bytes | str | int]) -> StateWrites:
    """The inverse of ``encode_commit``'s ops, read the way ``ledger.lua`` reads them."""
    writes = StateWrites()
    pos = 5  # 0-based here: ARGV[6] in Lua
    while pos < len(args):
        code, idx, count = str(args[pos]), int(args[pos + 1]), int(args[pos + 2])
        name = keys[idx - 1]
        operands = args[pos + 3 :]
        if code == "D":
            writes.map_drops.add(name)
            width = 0
        elif code == "S":
            width = 2 * count
            target = writes.map_sets.setdefault(name, {})
            for i in range(0, width, 2):
                target[_as_bytes(operands[i])] = _as_bytes(operands[i + 1])
        elif code == "H":
            width = count
            writes.map_deletes.setdefault(name, set()).update(
                _as_bytes(f) for f in operands[:width]
            )
        elif code == "T":
            width = 1
            writes.map_ttls_ms[name] = int(operands[0])
        else:
            raise ValueError(f"unknown op {code!r}")
        pos += 3 + width
    return writes


def _as_bytes(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _int(value: Any) -> int:
    return int(value.decode() if isinstance(value, bytes) else value)


def _position(raw: list[Any]) -> Position | None:
    if raw[0] is None:
        return None
    return Position(_int(raw[0]), _int(raw[1]), _int(raw[2]), _int(raw[3]))


class BatchLedger:
    """Epochs, positions and atomic batch commits of shards, on one Redis or Redis Cluster.

    ``wait_replicas`` makes each applied commit wait (``WAIT``) for that many replicas of the
    shard's Redis node; ``wait_aof`` also waits for the local AOF fsync (``WAITAOF``, Redis 7.2+,
    skipped on older servers). ``retry_seconds`` bounds the retries on connection loss (None:
    retry until Redis answers, or until ``interrupt`` is set - a service pauses through an
    outage instead of exiting; the last error is raised when interrupted).
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        retry_seconds: float | None = 30.0,
        interrupt: threading.Event | None = None,
        wait_replicas: int = 0,
        wait_aof: bool = False,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self._client = client
        self._script = client.register_script(
            resources.files("service.commit").joinpath("ledger.lua").read_text()
        )
        self._acquire = client.register_script(_ACQUIRE_EPOCH)
        self._retry_seconds = retry_seconds
        self._interrupt = interrupt
        self._wait_replicas = wait_replicas
        self._wait_aof = wait_aof
        self._wait_timeout_ms = wait_timeout_ms
        self._waitaof_supported: bool | None = None

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
            stop=self._stop_condition(),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "ledger: Redis unavailable, retrying (attempt %d): %s",
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
        )

    def _stop_condition(self) -> Any:
        stop: Any = (
            stop_never if self._retry_seconds is None else (stop_after_delay(self._retry_seconds))
        )
        if self._interrupt is not None:
            stop = stop | stop_when_event_set(self._interrupt)
        return stop

    def acquire_epoch(self, shard: Shard) -> int:
        """Called when the partition is assigned: fences every earlier owner (I2).

        A retried INCR may skip a number; harmless, since only the order of epochs matters. A
        counter that lost writes (I5) is moved past the epoch the ledger last recorded.
        """
        for attempt in self._retrying():
            with attempt:
                epoch = int(self._acquire(keys=[shard.epoch_key, shard.ledger_key]))
        return epoch

    def read_position(self, shard: Shard) -> Position | None:
        for attempt in self._retrying():
            with attempt:
                raw = self._client.hmget(
                    shard.ledger_key, ["next_offset", "batch_id", "epoch", "committed_at_ms"]
                )
        return _position(list(raw))

    def commit_batch(
        self,
        shard: Shard,
        epoch: int,
        batch_id: int,
        from_offset: int,
        next_offset: int,
        writes: StateWrites,
    ) -> CommitResult:
        """Apply ``writes`` and record ``next_offset`` atomically, or nothing (see invariants).

        ``batch_id`` (the batch time) tells a retried empty batch from a new one. New records
        under an id not after the recorded one (an owner whose clock is behind its
        predecessor's) are applied all the same, and the recorded id never goes back.
        """
        encoded = encode_commit(shard, epoch, batch_id, from_offset, next_offset, writes)
        for attempt in self._retrying():
            with attempt:
                raw, acked = self._call(encoded)
        result = CommitResult(
            Outcome(_text(raw[0])), _position(raw[1:5]), _int(raw[5]), replicas_acked=acked
        )
        if result.outcome is not Outcome.APPLIED:
            log.info(
                "ledger: batch %d of %s not applied: %s (recorded %s, epoch %d)",
                batch_id,
                shard.tag,
                result.outcome.value,
                result.position,
                result.current_epoch,
            )
        elif acked is not None and acked < self._wait_replicas:
            log.warning(
                "ledger: batch %d of %s reached %d of %d replicas within %d ms",
                batch_id,
                shard.tag,
                acked,
                self._wait_replicas,
                self._wait_timeout_ms,
            )
        return result

    def _call(self, encoded: EncodedCommit) -> tuple[list[Any], int | None]:
        try:
            if not (self._wait_replicas or self._wait_aof):
                return list(self._script(keys=encoded.keys, args=encoded.args)), None
            return self._call_and_wait(encoded)
        except AskError:
            # the slot moved (a failover, a reshard): look the owner up again before the retry
            if isinstance(self._client, RedisCluster):
                cluster: Any = self._client
                cluster.nodes_manager.initialize()
            raise
        except redis.ResponseError as exc:
            if "dstreams ledger refused" in str(exc):
                raise LedgerError(str(exc)) from exc
            raise

    def _call_and_wait(self, encoded: EncodedCommit) -> tuple[list[Any], int | None]:
        # WAIT covers the writes of its own connection: script and WAIT share one pipeline
        # on the client of the node that owns the shard's slot.
        node_client = self._node_client(encoded.keys[0])
        pipe: Any = node_client.pipeline(transaction=False)
        self._script(keys=encoded.keys, args=encoded.args, client=pipe)
        if self._wait_replicas:
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
        if self._wait_aof and self._supports_waitaof(node_client):
            pipe.execute_command("WAITAOF", 1, self._wait_replicas, self._wait_timeout_ms)
        replies = pipe.execute()
        acked = int(replies[1]) if self._wait_replicas else None
        return list(replies[0]), acked

    def _node_client(self, key: str) -> redis.Redis:
        if isinstance(self._client, RedisCluster):
            cluster: Any = self._client
            node_client: redis.Redis = cluster.get_redis_connection(cluster.get_node_from_key(key))
            return node_client
        return self._client

    def _supports_waitaof(self, client: redis.Redis) -> bool:
        if self._waitaof_supported is None:
            version = str(client.info("server").get("redis_version", "0"))
            major, minor = (int(p) for p in version.split(".")[:2])
            self._waitaof_supported = (major, minor) >= (7, 2)
            if not self._waitaof_supported:
                log.warning("ledger: Redis %s lacks WAITAOF; not waiting for fsync", version)
        return self._waitaof_supported


# INCR of the epoch counter, never to or below the epoch the ledger recorded (invariant I5).
_ACQUIRE_EPOCH = """
local epoch = redis.call('INCR', KEYS[1])
local recorded = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
if epoch <= recorded then
  epoch = recorded + 1
  redis.call('SET', KEYS[1], epoch)
end
return epoch
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_redis(client: AnyRedis) -> None:
    """Refuse a server that may evict keys: an evicted ledger or state silently loses batches."""
    if isinstance(client, RedisCluster):
        cluster: Any = client
        nodes = [
            (f"{node.host}:{node.port}", cluster.get_redis_connection(node))
            for node in cluster.get_primaries()
        ]
    else:
        nodes = [("redis", client)]
    for name, node_client in nodes:
        config: dict[Any, Any] = node_client.config_get("maxmemory-policy")
        policy = _text(next(iter(config.values()), ""))
        if policy != "noeviction":
            raise UnsafeRedisError(
                f"{name}: maxmemory-policy is {policy!r}; the ledger needs 'noeviction' "
                "(CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
            )
