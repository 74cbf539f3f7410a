"""Offsets are committed after persistence: the batch commit ledger in Redis (see ledger.py)."""

from service.commit.ledger import (
    BatchLedger,
    CommitResult,
    ForeignKeyError,
    LedgerError,
    Outcome,
    Position,
    Shard,
    UnsafeRedisError,
    check_redis,
)
from service.state.redis_client import hash_tag

__all__ = [
    "BatchLedger",
    "CommitResult",
    "ForeignKeyError",
    "LedgerError",
    "Outcome",
    "Position",
    "Shard",
    "UnsafeRedisError",
    "check_redis",
    "hash_tag",
]
