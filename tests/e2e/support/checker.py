"""Produce keyed, numbered records; once the fleet drained them, judge Redis and the output.

Key ``k`` gets the sequence numbers ``1..n_k`` as values, so its final state must be
``(n_k, n_k(n_k+1)/2, n_k)``: a lost record lowers the count, a record applied twice raises it,
and nothing else can explain a difference. The output topic, read ``read_committed``, must show
each key's count strictly increasing and ending at the final state: a repeated or decreasing
count is a batch's output seen twice, a last output below the state is an output lost.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from service.state.redis_client import connect
from service.streaming.persistence import loads
from tests.e2e.support.windows import WindowVerdict

Plan = dict[str, int]  # key -> n_k, the number of records (sequence numbers 1..n_k)


def make_plan(keys: int, records: int, rng: random.Random) -> Plan:
    """``records`` spread over ``keys`` keys unevenly (every key at least one record)."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(keys)]
    total = sum(weights)
    counts = [max(1, int(records * w / total)) for w in weights]
    counts[0] += records - sum(counts)
    return {f"k{i}": n for i, n in enumerate(counts)}


def interleave(plan: Plan, rng: random.Random) -> list[tuple[str, int]]:
    """Every ``(key, seq)`` of the plan, keys shuffled together, each key's numbers in order."""
    slots = [key for key, n in plan.items() for _ in range(n)]
    rng.shuffle(slots)
    next_seq = dict.fromkeys(plan, 0)
    out = []
    for key in slots:
        next_seq[key] += 1
        out.append((key, next_seq[key]))
    return out


class Producing:
    """The plan produced by an idempotent producer on a thread, at ``rate`` records/s if given."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        plan: Plan,
        rng: random.Random,
        rate: float | None = None,
        extra: Sequence[tuple[bytes | None, bytes | None]] = (),
        mirror: str | None = None,
    ) -> None:
        self.records = interleave(plan, rng)
        # a second topic that gets a copy of every plan record (a join's other side)
        self._mirror = mirror
        # records outside the plan (e.g. poison ones), each sent just before the plan record at a
        # random place; they carry no sequence number, and ``extra_delivered`` tells where each
        # landed as (partition, offset, key, value). No extra: the rng is not drawn from.
        self.extra_at: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for record in extra:
            self.extra_at.setdefault(rng.randrange(len(self.records) + 1), []).append(record)
        self.extra_delivered: list[tuple[int, int, bytes | None, bytes | None]] = []
        self.sent = 0
        self.error: BaseException | None = None
        self._bootstrap = bootstrap
        self._topic = topic
        self._rate = rate
        self._thread = threading.Thread(target=self._run, name="e2e-producer", daemon=True)

    def start(self) -> Producing:
        self._thread.start()
        return self

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 600.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"producer still running after {timeout_s} s ({self.sent} sent)")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:
            self.error = exc

    def _produce(self) -> None:
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                failures.append(err)

        def extra_delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                failures.append(err)
            else:
                self.extra_delivered.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

        producer = Producer(
            {
                "bootstrap.servers": self._bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # a broker restart mid-run must delay records, not drop them
                "message.timeout.ms": 300000,
            }
        )

        def send(
            key: str | bytes | None,
            value: str | bytes | None,
            on_delivery: Any,
            topic: str | None = None,
        ) -> None:
            while True:
                try:
                    producer.produce(
                        topic or self._topic, key=key, value=value, on_delivery=on_delivery
                    )
                    return
                except BufferError:
                    producer.poll(0.1)

        started = time.monotonic()
        for i, (key, seq) in enumerate(self.records):
            if self._rate is not None:
                ahead = started + i / self._rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            for extra_key, extra_value in self.extra_at.get(i, ()):
                send(extra_key, extra_value, extra_delivered)
            send(key, str(seq), delivered)
            if self._mirror is not None:
                send(key, str(seq), delivered, self._mirror)
            producer.poll(0)
            self.sent = i + 1
        for extra_key, extra_value in self.extra_at.get(len(self.records), ()):
            send(extra_key, extra_value, extra_delivered)
        remaining = producer.flush(300)
        if remaining or failures:
            raise RuntimeError(f"producer: {remaining} unflushed, failures {failures[:3]}")


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=30)
    return sorted(metadata.topics[topic].partitions)


def _high_watermarks(consumer: Consumer, topic: str) -> dict[int, int]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        for p in _partitions(consumer, topic)
    }


@dataclass
class Drain:
    drained: bool
    lag: int
    output_records: int
    waited_s: float


def wait_drained(
    bootstrap: str,
    group_id: str,
    input_topic: str,
    output_topic: str,
    *more_outputs: str,
    timeout_s: float = 180.0,
    quiet_s: float = 4.0,
    on_tick: Callable[[], object] | None = None,
    more_inputs: Sequence[str] = (),
    job_name: str | None = None,
) -> Drain:
    """Until the group's lag on the inputs is 0, the job's downstream stages read their
    repartition topics past what was there then, and the output topics stopped growing, with
    no transaction left open on them (its last stable offset, what a ``read_committed`` reader
    may read up to, is its high watermark; a killed instance's open transaction holds it back
    until the broker aborts it).

    A shuffled job's stage past a repartition topic ``<job>-repartition-<n>`` (its group
    ``<group>-shuffle-<n>``) may still be rebalancing when the input is drained and the outputs
    are quiet: its lag is never 0 (markers keep coming each batch), so it must have committed
    beyond each partition's end as it stood once the input lag was 0.

    Never judges speed: the timeout only bounds a run that will not drain at all.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
    )
    # watermarks follow the consumer's isolation level: read_committed (librdkafka's default)
    # gives the last stable offset, read_uncommitted the high watermark
    uncommitted = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group_id}-watermarks",
            "isolation.level": "read_uncommitted",
        }
    )
    started = time.monotonic()
    lag, out_total = -1, -1
    quiet_since: float | None = None
    # per repartition topic partition, its end once the inputs were drained
    downstream_ends: dict[tuple[str, int], int] | None = None
    try:
        while time.monotonic() - started < timeout_s:
            if on_tick is not None:
                on_tick()
            try:
                highs = {
                    (topic, p): high
                    for topic in (input_topic, *more_inputs)
                    for p, high in _high_watermarks(consumer, topic).items()
                }
                committed = consumer.committed(
                    [TopicPartition(topic, p) for topic, p in highs], timeout=30
                )
                outputs = (output_topic, *more_outputs)
                out_now = sum(sum(_high_watermarks(consumer, t).values()) for t in outputs)
                out_written = sum(sum(_high_watermarks(uncommitted, t).values()) for t in outputs)
            except Exception:  # a broker restarting: ask again
                time.sleep(1.0)
                continue
            lag = sum(highs[tp.topic, tp.partition] - max(tp.offset, 0) for tp in committed)
            behind = 0
            if lag == 0 and job_name is not None:
                try:
                    if downstream_ends is None:
                        downstream_ends = _repartition_ends(consumer, job_name)
                    behind = _downstream_behind(bootstrap, group_id, job_name, downstream_ends)
                except Exception:
                    time.sleep(1.0)
                    continue
            lag += behind
            if out_now != out_total or lag != 0 or out_written != out_now:
                out_total, quiet_since = out_now, None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return Drain(True, 0, out_total, time.monotonic() - started)
            time.sleep(0.5)
        return Drain(False, lag, out_total, time.monotonic() - started)
    finally:
        consumer.close()
        uncommitted.close()


def _state_values(redis_url: str, job_name: str) -> list[tuple[str, Any]]:
    """Every ``(key, value)`` of every state map of the job (global or partition-scoped), the
    engine's ``(partition, seq, value)`` unwrapped to the job's value. A ``redis+cluster://``
    URL reads every master of the cluster."""
    client = connect(redis_url)
    found: list[tuple[str, Any]] = []
    try:
        for name in client.scan_iter(match=f"dstreams:*{job_name}*:s*:state", count=1000):
            fields: dict[bytes, bytes] = client.hgetall(name)  # type: ignore[assignment]
            for raw_key, raw_value in fields.items():
                key, value = loads(raw_key), loads(raw_value)
                if isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], tuple):
                    value = value[2]
                found.append((key, value))
    finally:
        client.close()
    return found


def _repartition_ends(consumer: Consumer, job_name: str) -> dict[tuple[str, int], int]:
    topics = consumer.list_topics(timeout=30).topics
    prefix = f"{job_name}-repartition-"
    return {
        (topic, p): high
        for topic in topics
        if topic.startswith(prefix)
        for p, high in _high_watermarks(consumer, topic).items()
    }


def _downstream_behind(
    bootstrap: str, group_id: str, job_name: str, ends: Mapping[tuple[str, int], int]
) -> int:
    """How many repartition partitions the downstream groups have not committed past
    ``ends`` on."""
    behind = 0
    for topic in sorted({t for t, _ in ends}):
        index = topic.rsplit("-", 1)[1]
        reader = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{group_id}-shuffle-{index}",
                "enable.auto.commit": False,
            }
        )
        try:
            partitions = [TopicPartition(topic, p) for t, p in ends if t == topic]
            for tp in reader.committed(partitions, timeout=30):
                behind += int(tp.offset < ends[topic, tp.partition])
        finally:
            reader.close()
    return behind


def read_state(redis_url: str, job_name: str) -> dict[str, tuple[int, int, int]]:
    """The job's per-key ``(count, sum, max)``; a key found in several maps is summed, so a
    copy left behind shows as doubled."""
    state: dict[str, tuple[int, int, int]] = {}
    for key, value in _state_values(redis_url, job_name):
        # the window's four sums (tests/e2e/support/windows.py) and the join's two totals
        # are other streams' states
        if len(value) != 3:
            continue
        count, total, top = value
        if key in state:
            c, s, m = state[key]
            state[key] = (c + count, s + total, max(m, top))
        else:
            state[key] = (int(count), int(total), int(top))
    return state


Totals = tuple[int, int]


def read_joined_state(redis_url: str, job_name: str) -> dict[str, tuple[Totals, Totals]]:
    """The cross-topic join's per-key totals of both sides (summed over maps, as above)."""
    state: dict[str, tuple[Totals, Totals]] = {}
    for key, value in _state_values(redis_url, job_name):
        if len(value) != 2:
            continue
        (n1, s1), (n2, s2) = value
        (m1, t1), (m2, t2) = state.get(key, ((0, 0), (0, 0)))
        state[key] = ((m1 + n1, t1 + s1), (m2 + n2, t2 + s2))
    return state


def verify_joined(
    plan: Mapping[str, int], joined: Mapping[str, tuple[Totals, Totals]]
) -> list[str]:
    """Every key's join state against the plan: both topics carry each record once, so both
    sides must total ``(n, n(n+1)/2)``; one line per key that does not."""
    wrong = []
    for key, n in sorted(plan.items()):
        expected = ((n, n * (n + 1) // 2),) * 2
        got = joined.get(key)
        if got != expected:
            wrong.append(f"{key}: join state {got}, expected {expected}")
    wrong += [
        f"{key}: join state for a key never produced" for key in sorted(set(joined) - set(plan))
    ]
    return wrong


def ledger_shards(redis_url: str, job_name: str) -> int:
    """How many partitions of the job have a commit ledger (0: the job commits without one)."""
    client = connect(redis_url)
    try:
        return sum(1 for _ in client.scan_iter(match=f"dstreams:*{job_name}*:ledger", count=1000))
    finally:
        client.close()


def read_output(
    bootstrap: str, topic: str, timeout_s: float = 120.0
) -> dict[str, list[dict[str, int]]]:
    """Every committed output record, per key in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-checker-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    out: dict[str, list[dict[str, int]]] = {}
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                missing = set(partitions) - at_end
                raise TimeoutError(f"output topic {topic}: no end reached on {missing}")
            for message in consumer.consume(500, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(int(message.partition() or 0))
                        continue
                    raise RuntimeError(str(error))
                at_end.discard(int(message.partition() or 0))
                key, value = message.key(), message.value()
                assert key is not None and value is not None, "the job writes keyed JSON"
                out.setdefault(key.decode(), []).append(json.loads(value))
    finally:
        consumer.close()
    return out


@dataclass
class Report:
    """The verdict of one scenario; ``lost`` and ``doubled_*`` count records, the rest keys."""

    scenario: str
    trials: int = 0
    records: int = 0
    keys: int = 0
    lost: int = 0
    doubled_state: int = 0
    doubled_output: int = 0
    lost_output: int = 0
    bad_keys: int = 0  # state differs from (n, n(n+1)/2, n) at all (sum/max too)
    output_mismatch: int = 0  # keys whose last output differs from the state, not below it
    window: WindowVerdict | None = None  # the sliding window's verdict, when the job has one
    joined_wrong: int | None = None  # keys whose cross-topic join state is wrong (None: no join)
    fenced: int | None = None  # from the service's logs; None: nothing there logs it yet
    duplicates_refused: int | None = None
    drained: bool = True
    notes: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return (
            self.drained
            and self.lost == 0
            and self.doubled_state == 0
            and self.doubled_output == 0
            and self.lost_output == 0
            and self.bad_keys == 0
            and self.output_mismatch == 0
            and (self.window is None or self.window.exact)
            and not self.joined_wrong
        )

    def summary(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in ("examples", "notes", "window")}
        text = "E2E " + " ".join(f"{k}={v}" for k, v in fields.items())
        if self.window is not None:
            text += "\n  " + self.window.summary()
            if self.window.examples:
                text += "\n  window e.g. " + "\n  window e.g. ".join(self.window.examples[:8])
        if self.notes:
            text += "\n  notes: " + "; ".join(self.notes)
        if self.examples:
            text += "\n  e.g. " + "\n  e.g. ".join(self.examples[:8])
        return text


def _shape(n: int, got: tuple[int, int, int]) -> str:
    """Names a loss that is exactly a key's first or last records: it points at the cause."""
    missing = n - got[0]
    if missing <= 0:
        return ""
    deficit = n * (n + 1) // 2 - got[1]
    if deficit == missing * (missing + 1) // 2:
        return f" (exactly its first {missing} records missing)"
    if got[2] == n - missing and deficit == missing * (2 * n - missing + 1) // 2:
        return f" (exactly its last {missing} records missing)"
    return ""


def verify(
    scenario: str,
    plan: Mapping[str, int],
    state: Mapping[str, tuple[int, int, int]],
    output: Mapping[str, list[dict[str, int]]],
    *,
    trials: int = 0,
    drained: bool = True,
) -> Report:
    report = Report(scenario, trials=trials, records=sum(plan.values()), keys=len(plan))
    report.drained = drained
    for key, n in sorted(plan.items()):
        expected = (n, n * (n + 1) // 2, n)
        got = state.get(key)
        if got is None:
            report.lost += n
            report.bad_keys += 1
            report.examples.append(f"{key}: no state (expected {expected})")
        else:
            count = got[0]
            report.lost += max(0, n - count)
            report.doubled_state += max(0, count - n)
            if got != expected:
                report.bad_keys += 1
                report.examples.append(f"{key}: state {got}, expected {expected}{_shape(n, got)}")
        outputs = output.get(key, [])
        counts = [o["count"] for o in outputs]
        repeats = sum(1 for a, b in itertools.pairwise(counts) if b <= a)
        report.doubled_output += repeats
        if repeats:
            report.examples.append(f"{key}: {repeats} repeated/decreasing output counts")
        final = (outputs[-1]["count"], outputs[-1]["sum"], outputs[-1]["max"]) if outputs else None
        if got is not None and (final is None or final[0] < got[0]):
            report.lost_output += 1
            report.examples.append(f"{key}: last output {final}, state {got}")
        elif got is not None and final is not None and final != got:
            report.output_mismatch += 1
            report.examples.append(f"{key}: last output {final} differs from state {got}")
    unexpected = set(state) - set(plan)
    if unexpected:
        report.bad_keys += len(unexpected)
        report.examples.append(f"keys never produced in state: {sorted(unexpected)[:5]}")
    return report
