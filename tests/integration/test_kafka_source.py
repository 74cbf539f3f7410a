"""KafkaSource on a real broker: bounded batches, commits only after persistence, rebalances."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from service.commit.batch import commit_tasks
from service.commit.ledger import BatchLedger, Outcome, Shard
from service.sources.kafka import KafkaRecord, KafkaSource
from service.state.base import StateWrites
from tests.support.kafka import produce, running

WAIT_SECONDS = 30.0


def new_source(
    bootstrap: str,
    topic: str,
    group: str,
    *,
    rate: float | None = None,
    interval: float = 1.0,
    ledger: tuple[BatchLedger, str] | None = None,
    **settings: Any,
) -> KafkaSource:
    """A source of ``topic`` in ``group``; ``ledger``: (the ledger, the job) it claims from;
    ``settings``: more consumer settings, dots written as underscores."""
    config = {"bootstrap.servers": bootstrap, "group.id": group}
    config.update({k.replace("_", "."): v for k, v in settings.items()})
    source = KafkaSource(config, [topic], batch_interval_s=interval, max_rate_per_partition=rate)
    if ledger is not None:
        source.attach_ledger(*ledger)
    return source


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def ledger(redis_client: redis.Redis) -> BatchLedger:
    return BatchLedger(redis_client, retry_seconds=5)


def record_processed(ledger: BatchLedger, shard: Shard, until: int) -> None:
    """The ledger records ``[0, until)`` of ``shard`` as processed by an earlier owner."""
    ledger.commit_batch(shard, ledger.acquire_epoch(shard), 1, 0, until, StateWrites())


def commit_group(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """The group's offsets, as a crashed owner's transaction left them."""
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committer.commit(
        offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
    )
    committer.close()


def take_until(source: KafkaSource, batch_time: int, count: int) -> list[KafkaRecord]:
    """Fill and take batches until ``count`` records arrived; fails after WAIT_SECONDS."""
    records: list[KafkaRecord] = []
    give_up = time.monotonic() + WAIT_SECONDS
    while len(records) < count and time.monotonic() < give_up:
        source.fill(time.monotonic() + 0.5)
        records.extend(source.take_batch(batch_time))
    return records


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def test_backlog_drains_in_batches_bounded_per_partition(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=2)
    for partition in (0, 1):
        produce(kafka_bootstrap, topic, partition, [f"p{partition}-{i}" for i in range(50)])
    # 5 records/s x 2 s batches = 10 records per partition per batch
    source = new_source(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex}", rate=5, interval=2.0)
    assert source.cap == 10
    batches: list[list[KafkaRecord]] = []
    with running(source):
        give_up = time.monotonic() + 4 * WAIT_SECONDS
        while sum(map(len, batches)) < 100 and time.monotonic() < give_up:
            source.fill(time.monotonic() + WAIT_SECONDS)
            batch = source.take_batch(len(batches))
            batches.append(batch)
            source.on_batch_persisted(len(batches) - 1)

    for batch in batches:
        for partition in (0, 1):
            assert len([r for r in batch if r.partition == partition]) <= 10
    # fill() returns as soon as every partition holds a full batch, so each batch is full
    per_partition_sizes = {
        p: [n for n in (len([r for r in b if r.partition == p]) for b in batches) if n]
        for p in (0, 1)
    }
    for sizes in per_partition_sizes.values():
        assert sizes == [10, 10, 10, 10, 10]
    for partition in (0, 1):
        values = [r.value for b in batches for r in b if r.partition == partition]
        assert values == [f"p{partition}-{i}".encode() for i in range(50)]
        offsets = [r.offset for b in batches for r in b if r.partition == partition]
        assert offsets == list(range(50))


def test_offsets_are_committed_only_when_the_batch_is_persisted(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=1)
    group = f"g-{uuid.uuid4().hex}"
    produce(kafka_bootstrap, topic, 0, [f"v{i}" for i in range(12)])

    with running(new_source(kafka_bootstrap, topic, group)) as first:
        seen = take_until(first, 1000, 12)
        assert [r.value for r in seen] == [f"v{i}".encode() for i in range(12)]
        # never persisted: nothing may be committed
    assert committed(kafka_bootstrap, group, topic, 1)[0] < 0

    # a new member of the same group reads the same records again, in bounded batches
    with running(new_source(kafka_bootstrap, topic, group, rate=5, interval=1.0)) as second:
        # fill() returns once the partition holds a full batch
        second.fill(time.monotonic() + WAIT_SECONDS)
        first_batch = second.take_batch(2000)
        assert [r.offset for r in first_batch] == [0, 1, 2, 3, 4]
        rest = take_until(second, 3000, 7)
        assert [r.offset for r in rest] == [5, 6, 7, 8, 9, 10, 11]
        second.on_batch_persisted(2000)
        # only the persisted batch is committed, not the one taken after it
        assert committed(kafka_bootstrap, group, topic, 1)[0] == 5

    with running(new_source(kafka_bootstrap, topic, group)) as third:
        again = take_until(third, 4000, 7)
        assert [r.offset for r in again] == [5, 6, 7, 8, 9, 10, 11]
        third.on_batch_persisted(4000)
    assert committed(kafka_bootstrap, group, topic, 1)[0] == 12


def test_from_offsets_reads_the_given_partitions_from_the_given_offsets(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=2)
    group = f"g-{uuid.uuid4().hex}"
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(5)])
    produce(kafka_bootstrap, topic, 1, [f"b{i}" for i in range(5)])
    source = KafkaSource(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group},
        [topic],
        batch_interval_s=1.0,
        from_offsets={(topic, 1): 3},
    )
    with running(source):
        records = take_until(source, 1000, 2)
        source.on_batch_persisted(1000)
    assert [(r.partition, r.value) for r in records] == [(1, b"b3"), (1, b"b4")]
    assert committed(kafka_bootstrap, group, topic, 2)[1] == 5

    # restarted with the same fromOffsets, it resumes after what it committed, as Spark resumes
    # from its checkpoint
    produce(kafka_bootstrap, topic, 1, ["b5"])
    with running(source):
        again = take_until(source, 2000, 1)
    assert [(r.partition, r.value) for r in again] == [(1, b"b5")]


def test_revoked_partitions_are_dropped_and_read_by_the_new_owner(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=2)
    group = f"g-{uuid.uuid4().hex}"
    for partition in (0, 1):
        produce(kafka_bootstrap, topic, partition, [f"p{partition}-{i}" for i in range(5)])

    # a cap of 2 leaves records buffered or in Kafka when the second member joins
    first = new_source(kafka_bootstrap, topic, group, rate=2, interval=1.0)
    second = new_source(kafka_bootstrap, topic, group, rate=2, interval=1.0)
    with running(first):
        first.fill(time.monotonic() + WAIT_SECONDS)  # until both partitions hold a full batch
        batch0 = first.take_batch(0)
        assert sorted((r.partition, r.offset) for r in batch0) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        # batch 0 is never persisted
        later_by_first: list[KafkaRecord] = []
        by_second: list[KafkaRecord] = []
        with running(second):
            give_up = time.monotonic() + 2 * WAIT_SECONDS
            while time.monotonic() < give_up and not (
                len(first.assigned_partitions) == len(second.assigned_partitions) == 1
            ):
                first.fill(time.monotonic() + 0.2)
                second.fill(time.monotonic() + 0.2)
            assert len(second.assigned_partitions) == 1
            [(_, moved_partition)] = second.assigned_partitions
            kept_partition = 1 - moved_partition
            batch_time = 1
            while time.monotonic() < give_up and not (
                len(by_second) >= 5 and [r.offset for r in later_by_first][-1:] == [4]
            ):
                first.fill(time.monotonic() + 0.2)
                second.fill(time.monotonic() + 0.2)
                later_by_first.extend(first.take_batch(batch_time))
                by_second.extend(second.take_batch(batch_time))
                first.on_batch_persisted(batch_time)
                second.on_batch_persisted(batch_time)
                batch_time += 1

    assert {r.partition for r in by_second} == {moved_partition}
    # nothing was committed for the moved partition, so its new owner reads it from the start
    assert [r.offset for r in by_second] == list(range(5))
    # the first member read nothing of it after the rebalance and lost nothing of the other
    assert [(r.partition, r.offset) for r in later_by_first] == [
        (kept_partition, 2),
        (kept_partition, 3),
        (kept_partition, 4),
    ]
    assert committed(kafka_bootstrap, group, topic, 2) == {moved_partition: 5, kept_partition: 5}


def test_create_direct_stream_runs_in_a_streaming_context(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    from service.streaming import StreamingContext
    from service.streaming.kafka import MAX_RATE_KEY, KafkaMessageAndMetadata, KafkaUtils

    topic = create_topic(partitions=2)
    for partition in (0, 1):
        produce(kafka_bootstrap, topic, partition, [f"p{partition}-{i}" for i in range(9)])

    def handler(m: KafkaMessageAndMetadata) -> tuple[str, int, int, str]:
        return (m.topic, m.partition, m.offset, m.message)

    ssc = StreamingContext(0.5, jobName=f"kafka-{uuid.uuid4().hex[:8]}")
    stream = KafkaUtils.createDirectStream(
        ssc,
        [topic],
        # 4 records/s x 0.5 s = 2 records per partition per batch
        {
            "metadata.broker.list": kafka_bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            MAX_RATE_KEY: 4,
        },
        messageHandler=handler,
    )
    batches: list[list[list[tuple[str, int, int, str]]]] = []
    stream.foreachRDD(lambda rdd: batches.append(rdd.glom().collect()))
    ssc.start()
    try:
        give_up = time.monotonic() + 2 * WAIT_SECONDS
        while sum(len(p) for b in batches for p in b) < 18:
            assert time.monotonic() < give_up, batches
            ssc.awaitTerminationOrTimeout(0.2)
    finally:
        ssc.stop(stopSparkContext=True, stopGraceFully=True)

    records = [r for batch in batches for part in batch for r in part]
    for batch in batches:
        for part in batch:
            # one RDD partition per Kafka partition, at most the cap of 2
            assert len({r[1] for r in part}) <= 1
            assert len(part) <= 2
    for partition in (0, 1):
        mine = [r for r in records if r[1] == partition]
        assert mine == [(topic, partition, i, f"p{partition}-{i}") for i in range(9)]


def test_resync_reads_on_from_the_ledgers_offset(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    """After a GAP the source drops what it buffered of the partition and fetches again from the
    offset the ledger stands at, backwards (a batch the ledger already has) or forwards."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"v{i}" for i in range(10)])
    source = new_source(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex}")
    with running(source):
        first = take_until(source, 1000, 10)
        assert [r.offset for r in first] == list(range(10))
        source.resync((topic, 0), 4)
        again = take_until(source, 2000, 6)
        assert [r.offset for r in again] == list(range(4, 10))
        source.resync((topic, 0), 8)
        last = take_until(source, 3000, 2)
        assert [r.offset for r in last] == [8, 9]


def test_a_group_offset_ahead_of_the_ledger_is_replayed_exactly_to_it(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """The crash window between a batch's transaction and its ledger step: the group is at 8,
    the ledger at 4. The claim replays [4, 8) as batches ending exactly at 8 and names the
    partition in ``replaying()`` until then. A partition the ledger never recorded, whose group
    offset is 2, is replayed from the start up to 2 as well."""
    topic = create_topic(partitions=2)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(12)])
    produce(kafka_bootstrap, topic, 1, [f"b{i}" for i in range(3)])
    group, job = f"g-{uuid.uuid4().hex}", f"replay-{uuid.uuid4().hex[:8]}"
    commit_group(kafka_bootstrap, group, {(topic, 0): 8, (topic, 1): 2})
    record_processed(ledger, Shard(job, topic, 0), 4)
    source = new_source(kafka_bootstrap, topic, group, ledger=(ledger, job))
    with running(source):
        # (record, whether its batch named its partition as replaying), batch by batch
        seen: list[tuple[KafkaRecord, bool]] = []
        batch_ms = 1000
        give_up = time.monotonic() + WAIT_SECONDS
        while len(seen) < 8 + 3 and time.monotonic() < give_up:
            source.fill(time.monotonic() + 0.5)
            batch = source.take_batch(batch_ms)
            replaying = source.replaying()
            seen.extend((r, (r.topic, r.partition) in replaying) for r in batch)
            source.on_batch_persisted(batch_ms)
            batch_ms += 1000

        def offsets(partition: int, replayed: bool) -> list[int]:
            return [r.offset for r, rep in seen if r.partition == partition and rep == replayed]

        assert offsets(0, True) == [4, 5, 6, 7]
        assert offsets(0, False) == [8, 9, 10, 11]
        assert offsets(1, True) == [0, 1]
        assert offsets(1, False) == [2]
        assert source.replaying() == set()


def test_a_replay_keeps_the_group_offset_at_its_end_through_a_second_crash(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 2: the group offset K is the only record of "published up to K". A replay
    of [4, 8) that persisted [4, 6) and committed 6 (its transaction, the commit after its
    ledger step, or the commit on revoke) made a second crash lose the marker: the next owner
    replayed nothing and published [6, 8) again. Every commit now keeps K while replaying."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(10)])
    group, job = f"g-{uuid.uuid4().hex}", f"replay2-{uuid.uuid4().hex[:8]}"
    tp, shard = (topic, 0), Shard(job, topic, 0)
    commit_group(kafka_bootstrap, group, {tp: 8})
    record_processed(ledger, shard, 4)

    # the first replaying owner: batches of 2 records (rate 2/s x 1 s)
    source = new_source(kafka_bootstrap, topic, group, rate=2, ledger=(ledger, job))
    with running(source):
        first = take_until(source, 1000, 2)
        assert [r.offset for r in first] == [4, 5] and source.replaying() == {tp}
        groups = source.group_offsets()
        assert groups is not None and groups.offsets == {tp: 8}  # what its transaction sends
        span = source.ledger_span(tp)
        assert span is not None
        ledger.commit_batch(shard, span.epoch, 1000, 4, 6, StateWrites())
        source.on_batch_persisted(1000)  # the plain commit after the ledger step
    # ... and the stop's commit: the group still says 8
    assert committed(kafka_bootstrap, group, topic, 1) == {0: 8}

    # the second owner (after the "crash") replays the rest of the span, [6, 8)
    again = new_source(kafka_bootstrap, topic, group, rate=2, ledger=(ledger, job))
    with running(again):
        second = take_until(again, 2000, 2)
        assert [r.offset for r in second] == [6, 7] and again.replaying() == {tp}


def test_latest_records_an_idle_partitions_position_so_a_restart_skips_nothing(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 9: with ``auto.offset.reset=latest`` an idle partition never recorded a
    position, so records produced while the job restarted were skipped by the next "latest".
    The claim now resolves "latest" to the end offset, which the first (empty) batch records."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"old{i}" for i in range(5)])
    group, job = f"g-{uuid.uuid4().hex}", f"latest-{uuid.uuid4().hex[:8]}"
    tp = (topic, 0)
    first = new_source(
        kafka_bootstrap, topic, group, ledger=(ledger, job), auto_offset_reset="latest"
    )
    with running(first):
        give_up = time.monotonic() + WAIT_SECONDS
        while first.ledger_span(tp) is None and time.monotonic() < give_up:
            first.fill(time.monotonic() + 0.5)
            assert first.take_batch(1000) == []
        span = first.ledger_span(tp)
        assert span is not None and (span.from_offset, span.next_offset) == (5, 5)
        ledger.commit_batch(Shard(job, topic, 0), span.epoch, 1000, 5, 5, StateWrites())
    # produced while no instance runs
    produce(kafka_bootstrap, topic, 0, ["new0", "new1", "new2"])
    second = new_source(
        kafka_bootstrap, topic, group, ledger=(ledger, job), auto_offset_reset="latest"
    )
    with running(second):
        records = take_until(second, 2000, 3)
    assert [r.value for r in records] == [b"new0", b"new1", b"new2"]


def test_a_partition_fenced_by_a_late_claim_is_claimed_again_while_still_ours(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """Issue 9, hole 7: a claim that finished after its member was evicted (blocked on Redis in
    its assignment callback) fenced the rightful owner, which dropped the partition until the
    next rebalance: lag grew with no error. The owner, still assigned it a session timeout
    later, claims it again and reads on from the ledger's position."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(4)])
    group, job = f"g-{uuid.uuid4().hex}", f"late-{uuid.uuid4().hex[:8]}"
    tp, shard = (topic, 0), Shard(job, topic, 0)
    source = new_source(
        kafka_bootstrap, topic, group, ledger=(ledger, job), session_timeout_ms=6000
    )
    with running(source):
        first = take_until(source, 1000, 4)
        span = source.ledger_span(tp)
        assert [r.offset for r in first] == [0, 1, 2, 3] and span is not None
        ledger.commit_batch(shard, span.epoch, 1000, 0, 4, StateWrites())
        source.on_batch_persisted(1000)

        ledger.acquire_epoch(shard)  # the evicted member's claim, completing late
        produce(kafka_bootstrap, topic, 0, [f"b{i}" for i in range(3)])
        second = take_until(source, 2000, 3)
        span = source.ledger_span(tp)
        assert span is not None
        refused = ledger.commit_batch(shard, span.epoch, 2000, 4, 7, StateWrites())
        assert refused.outcome is Outcome.FENCED
        source.fence(tp)  # what commit_tasks does with a FENCED outcome
        assert source.assigned_partitions == []

        # still ours in the group: claimed again, read again from the recorded offset 4
        again = take_until(source, 3000, 3)
        assert [r.offset for r in again] == [4, 5, 6], [r.offset for r in second]
        span = source.ledger_span(tp)
        assert span is not None and span.from_offset == 4
        applied = ledger.commit_batch(shard, span.epoch, 3000, 4, 7, StateWrites())
        assert applied.outcome is Outcome.APPLIED


def test_a_ledger_that_lost_commits_is_replayed_without_republishing(
    kafka_bootstrap: str,
    redis_client: redis.Redis,
    ledger: BatchLedger,
    create_topic: Callable[..., str],
) -> None:
    """Issue 9, hole 4: Redis lost the ledger step of [4, 8) after its outputs were published
    (the group offset says 8). The next commit is a GAP behind us: the source goes back to 4
    and replays [4, 8) without outputs, instead of publishing them a second time."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(8)])
    group, job = f"g-{uuid.uuid4().hex}", f"lost-{uuid.uuid4().hex[:8]}"
    tp, shard = (topic, 0), Shard(job, topic, 0)
    source = new_source(kafka_bootstrap, topic, group, rate=4, ledger=(ledger, job))
    with running(source):
        for batch_ms, (start, end) in ((1000, (0, 4)), (2000, (4, 8))):
            assert [r.offset for r in take_until(source, batch_ms, 4)] == list(range(start, end))
            span = source.ledger_span(tp)
            assert span is not None
            ledger.commit_batch(shard, span.epoch, batch_ms, start, end, StateWrites())
            if batch_ms == 1000:
                saved = redis_client.hgetall(shard.ledger_key)
            source.on_batch_persisted(batch_ms)  # the group offset reaches 8
        redis_client.delete(shard.ledger_key)
        redis_client.hset(shard.ledger_key, mapping=saved)  # Redis lost the second commit

        produce(kafka_bootstrap, topic, 0, ["b0"])
        assert [r.offset for r in take_until(source, 3000, 1)] == [8]
        [done] = commit_tasks(ledger, job, 3000, [tp], StateWrites(), [source])
        assert done.result is not None and done.result.outcome is Outcome.GAP
        replayed = take_until(source, 4000, 4)
        assert [r.offset for r in replayed] == [4, 5, 6, 7]
        assert source.replaying() == {tp}


def test_input_deleted_by_retention_before_processing_is_counted_and_skipped_loudly(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """Issue 9: where exactness is impossible it is never silent. The ledger records [0, 4) as
    processed; then retention (here deleteRecords, which moves the log start as retention
    does) removes offsets below 10 before the next owner claims the partition. Before, the
    consumer's out-of-range reset silently started at the log start (or, with
    ``auto.offset.reset=latest``, at the end, skipping all of it); now the source reads on
    from the log start, counts the 6 lost offsets, and its next span is contiguous with the
    ledger (from 4), so the commit is APPLIED rather than taken for a gap."""
    from confluent_kafka.admin import AdminClient

    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(14)])
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 10)]).values():
        future.result(timeout=30)
    group, job = f"g-{uuid.uuid4().hex}", f"retention-{uuid.uuid4().hex[:8]}"
    tp, shard = (topic, 0), Shard(job, topic, 0)
    record_processed(ledger, shard, 4)

    source = new_source(
        kafka_bootstrap, topic, group, ledger=(ledger, job), auto_offset_reset="latest"
    )
    with running(source):
        records: list[KafkaRecord] = []
        outcomes = []
        batch_ms = 1000
        give_up = time.monotonic() + WAIT_SECONDS
        while len(records) < 4 and time.monotonic() < give_up:
            source.fill(time.monotonic() + 0.5)
            records.extend(source.take_batch(batch_ms))
            [done] = commit_tasks(ledger, job, batch_ms, [tp], StateWrites(), [source])
            outcomes.append(None if done.result is None else done.result.outcome)
            source.on_batch_persisted(batch_ms)
            batch_ms += 1000
        assert [r.offset for r in records] == [10, 11, 12, 13]
        assert source.offsets_lost == {tp: 6}
        assert set(outcomes) == {Outcome.APPLIED}, outcomes
        position = ledger.read_position(shard)
        assert position is not None and position.next_offset == 14


def test_a_partition_fenced_then_lost_reads_again_once_assigned_back(
    kafka_bootstrap: str, ledger: BatchLedger, create_topic: Callable[..., str]
) -> None:
    """A zombie (stopped past max.poll.interval.ms) wakes, its batch is FENCED (the partition is
    paused), then the group takes the partition and gives it back. librdkafka keeps a partition
    paused through that: the fault suite's zombie once read nothing of its partitions again,
    lag for ever and no error. An assigned partition now always reads."""
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"a{i}" for i in range(4)])
    group, job = f"g-{uuid.uuid4().hex}", f"zombie-{uuid.uuid4().hex[:8]}"
    tp, shard = (topic, 0), Shard(job, topic, 0)
    source = new_source(
        kafka_bootstrap,
        topic,
        group,
        ledger=(ledger, job),
        session_timeout_ms=6000,
        max_poll_interval_ms=6000,
    )
    with running(source):
        first = take_until(source, 1000, 4)
        span = source.ledger_span(tp)
        assert [r.offset for r in first] == [0, 1, 2, 3] and span is not None
        ledger.commit_batch(shard, span.epoch, 1000, 0, 4, StateWrites())
        source.on_batch_persisted(1000)

        ledger.acquire_epoch(shard)  # another member claimed it while this one was stopped
        time.sleep(7.0)  # stopped: past max.poll.interval.ms, no poll
        refused = ledger.commit_batch(shard, span.epoch, 2000, 4, 4, StateWrites())
        assert refused.outcome is Outcome.FENCED
        source.fence(tp)  # paused; the next poll finds the member left the group

        produce(kafka_bootstrap, topic, 0, [f"b{i}" for i in range(3)])
        again = take_until(source, 3000, 3)
        assert [r.offset for r in again] == [4, 5, 6]
        assert source.assigned_partitions == [tp]
