"""``commit_tasks`` on a real Redis: what a source is told when the ledger refuses a batch."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from service.commit.batch import commit_tasks
from service.commit.ledger import BatchLedger, Outcome, Shard
from service.commit.ownership import LedgerSpan
from service.state.base import StateWrites

Task = tuple[str, int]


@dataclass
class SpanRecorder:
    spans: dict[Task, LedgerSpan]
    fenced: list[Task] = field(default_factory=list)
    resynced: list[tuple[Task, int]] = field(default_factory=list)
    reclaimed: list[Task] = field(default_factory=list)

    def ledger_span(self, tp: Task) -> LedgerSpan | None:
        return self.spans.get(tp)

    def fence(self, tp: Task) -> None:
        self.fenced.append(tp)

    def resync(self, tp: Task, next_offset: int) -> None:
        self.resynced.append((tp, next_offset))

    def reclaim(self, tp: Task) -> None:
        self.reclaimed.append(tp)


def test_gap_resyncs_the_partition_and_fenced_drops_it(
    redis_url: str, closing: Callable[[Any], Any]
) -> None:
    client = closing(redis.Redis.from_url(redis_url))
    ledger = BatchLedger(client, retry_seconds=5)
    job = f"ct-{uuid.uuid4().hex[:8]}"
    ours, theirs = ("in", 0), ("in", 1)
    epoch_ours = ledger.acquire_epoch(Shard(job, *ours))
    epoch_old = ledger.acquire_epoch(Shard(job, *theirs))
    ledger.acquire_epoch(Shard(job, *theirs))  # a newer owner took partition 1
    first = SpanRecorder({ours: LedgerSpan(epoch_ours, 0, 10)})
    [done] = commit_tasks(ledger, job, 1, [ours], StateWrites(), [first])
    assert done.result is not None and done.result.outcome is Outcome.APPLIED

    # a batch retaken from 5 after the ledger reached 10 (e.g. a lost reply) and a zombie's
    source = SpanRecorder(
        {ours: LedgerSpan(epoch_ours, 5, 12), theirs: LedgerSpan(epoch_old, 0, 3)}
    )
    results = commit_tasks(ledger, job, 2, [ours, theirs], StateWrites(), [source])
    outcomes = {d.task: d.result.outcome for d in results if d.result is not None}
    assert outcomes == {ours: Outcome.GAP, theirs: Outcome.FENCED}
    assert source.resynced == [(ours, 10)]  # read on from where the ledger stands
    assert source.fenced == [theirs]


def test_a_redis_that_lost_commits_is_noticed_and_epochs_do_not_go_back(
    redis_url: str, closing: Callable[[Any], Any]
) -> None:
    """Issue 9, hole 4: Redis lost acknowledged writes (a failover without WAIT, an AOF without
    fsync, an emptied server). The survivor's next commit carries an epoch above the counter:
    refused as REGRESSED (it would have written onto state its caches no longer match), and
    its source claims the partition again; a new claim never gets an epoch already recorded."""
    client = closing(redis.Redis.from_url(redis_url))
    ledger = BatchLedger(client, retry_seconds=5)
    job = f"lost-{uuid.uuid4().hex[:8]}"
    tp = ("in", 0)
    shard = Shard(job, *tp)
    ledger.acquire_epoch(shard)
    epoch = ledger.acquire_epoch(shard)  # 2: we own it
    writes = StateWrites()
    writes.set(shard.key("s1", "state"), b"k", b"1")
    source = SpanRecorder({tp: LedgerSpan(epoch, 0, 10)})
    [done] = commit_tasks(ledger, job, 1, [tp], writes, [source])
    assert done.result is not None and done.result.outcome is Outcome.APPLIED

    # the epoch counter lost its last INCR, the ledger kept its record: a new claim still goes
    # past the epoch the ledger recorded
    client.set(shard.epoch_key, 1)
    assert ledger.acquire_epoch(shard) == epoch + 1

    # an emptied Redis: our next commit is refused and the partition claimed again
    client.delete(shard.epoch_key, shard.ledger_key, shard.key("s1", "state"))
    source = SpanRecorder({tp: LedgerSpan(epoch + 1, 10, 15)})
    [done] = commit_tasks(ledger, job, 2, [tp], writes, [source])
    assert done.result is not None and done.result.outcome is Outcome.REGRESSED
    assert source.reclaimed == [tp]
    assert client.exists(shard.ledger_key, shard.key("s1", "state")) == 0  # nothing written
