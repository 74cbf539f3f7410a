"""Partition ownership's rules, with the ledger and Kafka's answers given as plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from service.commit.ledger import Position, Shard
from service.commit.ownership import (
    OFFSET_BEGINNING,
    LedgerSpan,
    OffsetsUnknown,
    PartitionOwnership,
)

Task = tuple[str, int]
TP: Task = ("in", 0)


@dataclass
class Ledger:
    """Epochs and positions as the Redis ledger would answer them."""

    positions: dict[Task, int] = field(default_factory=dict)
    epochs: dict[Task, int] = field(default_factory=dict)

    def acquire_epoch(self, shard: Shard) -> int:
        tp = (shard.topic, shard.partition)
        self.epochs[tp] = self.epochs.get(tp, 0) + 1
        return self.epochs[tp]

    def read_position(self, shard: Shard) -> Position | None:
        offset = self.positions.get((shard.topic, shard.partition))
        return None if offset is None else Position(offset, 0, 0, 0)


@dataclass
class Log:
    """What the broker says: log start and end per partition, and the group's offsets."""

    low: int = 0
    high: int = 100
    group: dict[Task, int] = field(default_factory=dict)
    answers: bool = True

    def watermarks(self, tp: Task) -> tuple[int, int]:
        return self.low, self.high

    def committed(self, tps: Sequence[Task], *, strict: bool) -> dict[Task, int]:
        if not self.answers:
            raise OffsetsUnknown("coordinator not available")
        return {tp: self.group[tp] for tp in tps if tp in self.group}


def owner(
    ledger: Ledger, *, reset_to_end: bool = False, reclaim_after_s: float = 0.0
) -> PartitionOwnership:
    ownership = PartitionOwnership(reset_to_end=reset_to_end, reclaim_after_s=reclaim_after_s)
    ownership.attach_ledger(ledger, "job")
    return ownership


def test_a_claim_reads_from_the_ledger_not_from_the_group_offset() -> None:
    ownership = owner(Ledger(positions={TP: 40}))
    assert ownership.claim(Log(group={TP: 40}), [TP]) == {TP: 40}
    ownership.record_spans([TP], {TP: (40, 50)})
    assert ownership.span(TP) == LedgerSpan(1, 40, 50)
    assert ownership.replaying([TP]) == set()


def test_an_unrecorded_partition_starts_where_the_reset_says_and_latest_is_resolved_now() -> None:
    earliest = owner(Ledger())
    assert earliest.claim(Log(), [TP]) == {TP: OFFSET_BEGINNING}
    earliest.record_spans([TP], {})
    assert earliest.span(TP) is None  # position unknown until records come: nothing to record

    latest = owner(Ledger(), reset_to_end=True)
    assert latest.claim(Log(high=70), [TP]) == {TP: 70}
    latest.record_spans([TP], {})  # an idle partition records its position with an empty span
    assert latest.span(TP) == LedgerSpan(1, 70, 70)


def test_a_position_deleted_by_retention_reads_on_from_the_log_start_and_counts_the_loss() -> None:
    ownership = owner(Ledger(positions={TP: 10}))
    assert ownership.claim(Log(low=25), [TP]) == {TP: 25}
    assert ownership.offsets_lost == {TP: 15}
    ownership.record_spans([TP], {TP: (25, 30)})
    # contiguous with what the ledger holds, so the commit is not refused as a gap
    assert ownership.span(TP) == LedgerSpan(1, 10, 30)


def test_a_group_offset_ahead_of_the_ledger_is_replayed_exactly_to_it() -> None:
    ownership = owner(Ledger(positions={TP: 40}))
    ownership.claim(Log(group={TP: 60}), [TP])
    assert ownership.events["replay"] == 1
    assert ownership.replay_ends(lambda tp: 40) == {TP: 60}
    assert ownership.replaying([TP]) == {TP}
    ownership.record_spans([TP], {TP: (40, 60)})
    # while it runs, no commit of ours lowers the group offset below the replay's end
    assert ownership.keep_marker(TP, 45) == 60
    ownership.persisted()
    assert ownership.replaying([TP]) == set()
    assert ownership.keep_marker(TP, 61) == 61


def test_an_unrecorded_partition_read_from_the_beginning_replays_up_to_the_group_offset() -> None:
    ownership = owner(Ledger())
    ownership.claim(Log(group={TP: 30}), [TP])
    assert ownership.replay_ends(lambda tp: 0) == {TP: 30}


def test_a_replay_whose_records_are_gone_is_over() -> None:
    ownership = owner(Ledger(positions={TP: 40}))
    ownership.claim(Log(group={TP: 60}), [TP])
    assert ownership.replay_ends(lambda tp: 75) == {}  # compaction or retention left nothing below
    assert ownership.replaying([TP]) == set()


def test_kafka_not_answering_replays_nothing_at_a_claim_but_fails_a_settlement() -> None:
    ownership = owner(Ledger(positions={TP: 40}))
    kafka = Log(group={TP: 60}, answers=False)
    assert ownership.claim(kafka, [TP]) == {TP: 40}  # at worst one batch's outputs repeat
    assert ownership.replaying([TP]) == set()
    with pytest.raises(OffsetsUnknown):
        ownership.find_published(kafka, [TP])
    kafka.answers = True
    ownership.find_published(kafka, [TP])
    assert ownership.replaying([TP]) == {TP}


def test_spans_follow_one_another_and_a_rewind_or_withdrawal_goes_back_to_their_start() -> None:
    ownership = owner(Ledger(positions={TP: 0}))
    other: Task = ("in", 1)
    ownership.claim(Log(), [TP, other])
    ownership.record_spans([TP, other], {TP: (0, 5), other: (0, 3)})
    ownership.record_spans([TP, other], {TP: (5, 9)})
    assert ownership.spans == {TP: LedgerSpan(1, 5, 9), other: LedgerSpan(1, 3, 3)}
    assert ownership.group_offsets() == {TP: 9, other: 3}
    ownership.withdraw(TP)
    assert ownership.span(TP) is None and ownership.positions()[TP] == 5
    assert ownership.rewind() == {other: LedgerSpan(1, 3, 3)}
    ownership.record_spans([TP, other], {TP: (5, 9)})
    assert ownership.span(TP) == LedgerSpan(1, 5, 9)


def test_a_resync_moves_to_the_ledgers_offset_and_replays_what_we_published_past_it() -> None:
    ownership = owner(Ledger(positions={TP: 50}))
    kafka = Log()
    ownership.claim(kafka, [TP])
    ownership.record_spans([TP], {TP: (50, 70)})
    kafka.group[TP] = 70  # we published up to 70; Redis lost the commits past 50
    assert ownership.resync(kafka, TP, 50) == 50
    assert ownership.span(TP) is None
    assert ownership.events["resync"] == 1
    assert ownership.replay_ends(lambda tp: 50) == {TP: 70}


def test_a_reclaim_takes_a_new_epoch_from_what_the_ledger_still_records() -> None:
    ledger = Ledger(positions={TP: 20})
    ownership = owner(ledger)
    ownership.claim(Log(), [TP])
    ledger.positions[TP] = 12  # Redis lost writes
    assert ownership.reclaim(Log(), TP) == 12
    assert ownership.events["regressed"] == 1
    ownership.record_spans([TP], {TP: (12, 15)})
    assert ownership.span(TP) == LedgerSpan(2, 12, 15)


def test_a_fenced_partition_is_forgotten_and_due_for_a_new_claim_after_the_wait() -> None:
    ownership = owner(Ledger(positions={TP: 0}), reclaim_after_s=3600)
    ownership.claim(Log(), [TP])
    ownership.fence(TP)
    assert ownership.span(TP) is None and TP not in ownership.positions()
    assert ownership.due_reclaims() == []  # not before the wait is over
    assert ownership.fenced == {TP}
    assert ownership.unfence([TP]) == [TP]  # a rebalance decided meanwhile
    assert ownership.fenced == set()

    soon = owner(Ledger(positions={TP: 0}), reclaim_after_s=0.0)
    soon.fence(TP)
    assert soon.due_reclaims() == [TP]
    assert soon.fenced == set()
    soon.fence_again([TP])  # its claim failed: wait again
    assert soon.fenced == {TP}
