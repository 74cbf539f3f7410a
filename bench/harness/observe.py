"""Watching one system drain the input: when is every record reflected, and is the answer right.

"Reflected" means both: the system's consumer group has committed the input's end offset on every
partition (lag 0), and the latest count per word on the output topic, read with
``read_committed``, equals the expected count for every word. The output is checked, not
trusted: a count above the expected one (a record counted twice) or a missing word makes the run
wrong, however fast it was, and the output is watched for a few more seconds after it matched so
that a late duplicate still shows.

Resource use comes from /proc (Linux): ``VmHWM``, the kernel's own peak resident set size of each
worker process and its descendants, and user+system CPU time from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    completed: bool = False  # both conditions met before the deadline
    exact: bool = False  # output equals the expected counts (checked again after settling)
    wall_s: float | None = None  # launch until both conditions held
    first_output_s: float | None = None
    output_s: float | None = None  # launch until the output first matched
    lag0_s: float | None = None  # launch until the group first had lag 0
    output_records: int = 0
    words_wrong: int = 0  # words whose final count differs from the expected one
    words_missing: int = 0
    overcount: int = 0  # sum of (final - expected) over words counted too high
    peak_rss_bytes: int = 0  # sum over processes of each one's peak RSS
    cpu_s: float = 0.0  # user+system CPU of the workers up to completion
    services_cpu_s: float | None = None  # the broker's and Redis's CPU meanwhile, if local
    note: str = ""
    exit_codes: list[int | None] = field(default_factory=list)
    died: list[int] = field(default_factory=list)  # exit codes of workers gone before the stop


class ProcessTree:
    """Peak RSS and CPU time of the workers and anything they spawn, sampled from /proc."""

    def __init__(self, roots: Sequence[int]) -> None:
        self.roots = list(roots)
        self.hwm: dict[int, int] = {}
        self.cpu: dict[int, float] = {}

    def _descendants(self, pid: int) -> list[int]:
        found = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                children = task.read_text().split()
            except OSError:
                continue
            for child in children:
                found.extend(self._descendants(int(child)))
        return found

    def sample(self) -> None:
        for root in self.roots:
            for pid in self._descendants(root):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        self.hwm[pid] = max(self.hwm.get(pid, 0), kib * 1024)
                fields = stat.rpartition(")")[2].split()
                # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def peak_rss(self) -> int:
        return sum(self.hwm.values())

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


class _OutputReader:
    """Every committed record of the output topic, reduced to the latest count per word."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.latest: dict[str, int | None] = {}
        self.records = 0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{topic}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, -2) for p in range(partitions)]  # -2: beginning
        )

    def poll(self, seconds: float) -> None:
        for msg in self._consumer.consume(10_000, timeout=seconds):
            if msg.error() is not None:
                continue
            self.records += 1
            key = (msg.key() or b"").decode(errors="replace")
            try:
                self.latest[key] = int(msg.value() or b"")
            except (TypeError, ValueError):
                self.latest[key] = None  # not a count: wrong whatever the key

    def close(self) -> None:
        self._consumer.close()


class _Lag:
    def __init__(self, bootstrap: str, group: str, topic: str, end: dict[int, int]) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._group, self._topic, self._end = group, topic, end

    def zero(self) -> bool:
        request = ConsumerGroupTopicPartitions(
            self._group, [TopicPartition(self._topic, p) for p in self._end]
        )
        try:
            result = self._admin.list_consumer_group_offsets([request])[self._group].result(5)
        except Exception:  # group not known yet
            return False
        committed = {tp.partition: tp.offset for tp in result.topic_partitions}
        return all(committed.get(p, -1) >= end for p, end in self._end.items())


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def _compare(outcome: Outcome, latest: dict[str, int | None], expected: dict[str, int]) -> bool:
    wrong = missing = over = 0
    for word, count in expected.items():
        got = latest.get(word)
        if got is None:
            missing += 1
        elif got != count:
            wrong += 1
            over += max(0, got - count)
    strangers = len(latest.keys() - expected.keys())
    outcome.words_wrong, outcome.words_missing, outcome.overcount = wrong + strangers, missing, over
    return wrong == missing == strangers == 0


def watch(
    workers: Sequence[subprocess.Popen[bytes]],
    *,
    started: float,
    bootstrap: str,
    group: str,
    input_topic: str,
    output_topic: str,
    partitions: int,
    end: dict[int, int],
    expected: dict[str, int],
    timeout_s: float,
    services: ProcessTree | None = None,
    settle_s: float = 3.0,
) -> Outcome:
    """Follow the workers until the input is reflected, the deadline passes or they all exit.

    ``services``: the broker and Redis, sampled when the workers were launched; their CPU time
    from then to completion is what this system cost them.
    """
    outcome = Outcome()
    services_before = services.cpu_seconds() if services is not None else 0.0
    tree = ProcessTree([w.pid for w in workers])
    reader = _OutputReader(bootstrap, output_topic, partitions)
    lag = _Lag(bootstrap, group, input_topic, end)
    next_lag_check = 0.0
    try:
        while True:
            reader.poll(0.2)
            tree.sample()
            now = time.monotonic() - started
            if outcome.first_output_s is None and reader.records:
                outcome.first_output_s = now
            if outcome.output_s is None and _compare(outcome, reader.latest, expected):
                outcome.output_s = now
            if outcome.lag0_s is None and now >= next_lag_check:
                next_lag_check = now + 0.25
                if lag.zero():
                    outcome.lag0_s = now
            if outcome.output_s is not None and outcome.lag0_s is not None:
                outcome.completed = True
                outcome.wall_s = max(outcome.output_s, outcome.lag0_s)
                outcome.cpu_s = tree.cpu_seconds()
                if services is not None:
                    services.sample()
                    outcome.services_cpu_s = services.cpu_seconds() - services_before
                break
            if now > timeout_s:
                outcome.note = f"not done after {timeout_s:.0f} s"
                break
            if all(w.poll() is not None for w in workers):
                outcome.note = "workers exited before the input was reflected"
                break
        # Settle: whatever arrives now (a late duplicate) still counts against the answer.
        settle_until = time.monotonic() + (settle_s if outcome.completed else 0.5)
        while time.monotonic() < settle_until:
            reader.poll(0.2)
            tree.sample()
        outcome.exact = _compare(outcome, reader.latest, expected)
        outcome.died = [code for code in (w.poll() for w in workers) if code is not None]
        if not outcome.completed:
            outcome.cpu_s = tree.cpu_seconds()
        outcome.output_records = reader.records
        outcome.peak_rss_bytes = tree.peak_rss()
    finally:
        reader.close()
    return outcome
