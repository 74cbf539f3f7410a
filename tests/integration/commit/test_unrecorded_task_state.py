"""A task whose first batch had no position to record must not keep the writes it dropped.

Regression for the e2e losses at ``batch_taken`` and SIGTERM (docs/testing-faults.md): a
partition claimed before the ledger recorded anything has no span until its first record, so
that batch's writes for it are skipped; the in-process caches had taken them anyway (``present``
among the meta fields), were never written since (writes go out only when a value differs from
the cache), and the next owner restored the state as absent and counted from zero.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import redis

from service.commit.batch import SpanSource
from service.commit.ledger import BatchLedger, Shard
from service.commit.ownership import LedgerSpan
from service.runtime.clock import ManualClock
from service.state.redis_store import RedisStateStore
from service.streaming import StreamingContext
from service.streaming.testing import run_batches
from tests.support.sources import InMemoryTaskSource

TOPIC = "events"


def count(values: Iterable[int], last: int | None) -> int:
    return (last or 0) + sum(values)


class SpanTaskSource(InMemoryTaskSource):
    """Partition 0 of ``TOPIC``: one list of records per batch, offsets from ``start``.

    ``start`` None plays a partition the ledger never recorded: it has no span until its first
    record, as in ``KafkaSource._record_spans``.
    """

    def __init__(self, batches: list[list[Any]], epoch: int, start: int | None) -> None:
        self.batches = batches
        self.epoch = epoch
        self.position = start
        self.span: LedgerSpan | None = None

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]:
        records = self.batches.pop(0) if self.batches else []
        start = self.position if self.position is not None else (0 if records else None)
        if start is None:
            self.span = None
        else:
            self.span = LedgerSpan(self.epoch, start, start + len(records))
            self.position = self.span.next_offset
        return [((TOPIC, 0), records)]

    def ledger_span(self, tp: tuple[str, int]) -> LedgerSpan | None:
        return self.span

    def fence(self, tp: tuple[str, int]) -> None:
        raise AssertionError(f"{tp} fenced")

    def resync(self, tp: tuple[str, int], next_offset: int) -> None:
        raise AssertionError(f"{tp} out of step with the ledger (at {next_offset})")

    def reclaim(self, tp: tuple[str, int]) -> None:
        raise AssertionError(f"{tp}: Redis lost commits")


def run_instance(
    redis_url: str, job: str, source: SpanTaskSource, n: int, start_ms: int
) -> list[list[Any]]:
    store = RedisStateStore.from_url(redis_url)

    def create() -> StreamingContext:
        return StreamingContext(0.5, clock=ManualClock(start_ms), stateStore=store, jobName=job)

    ssc = StreamingContext.getOrCreate(redis_url, create)
    assert isinstance(source, SpanSource)
    out: list[list[Any]] = []
    ssc._sourceStream(source).updateStateByKey(count).foreachRDD(
        lambda rdd: out.append(sorted(rdd.collect()))
    )
    run_batches(ssc, n)
    assert ssc._commit.ledger is not None, "the job must commit through the ledger"
    ssc.stop()
    store.close()
    return out


def test_next_owner_sees_the_state_of_a_task_whose_first_batch_was_empty(
    redis_url: str,
) -> None:
    job = f"unrec-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    ledger = BatchLedger(client)
    shard = Shard(job, TOPIC, 0)
    # first owner: claimed with nothing recorded; its first batch has no record yet
    epoch = ledger.acquire_epoch(shard)
    first = SpanTaskSource([[], [("a", 1), ("b", 1)], [("a", 1)]], epoch=epoch, start=None)
    assert run_instance(redis_url, job, first, 3, 0)[-1] == [("a", 2), ("b", 1)]
    # what the ledger applied is whole: the meta says the state is there
    meta = client.hgetall(shard.key("meta"))
    present = {k: v for k, v in meta.items() if k.endswith(b":present")}
    assert present and set(present.values()) == {b"1"}, meta
    # the partition moves: the next owner starts at the recorded offset and the stored state
    second = SpanTaskSource([[("a", 1), ("b", 1)]], epoch=ledger.acquire_epoch(shard), start=3)
    assert run_instance(redis_url, job, second, 1, 10_000) == [[("a", 3), ("b", 2)]]
    client.close()
