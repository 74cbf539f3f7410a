"""Poison records among good ones (issue 5, scenario 6): the service as real processes.

Three instances of the keyed counter job (tests/e2e/jobs/keyed_counter.py) read a 6-partition
topic carrying ~10k good numbered records and, at random places among them and on the same
keys, poison records of the three kinds docs/dead-letters.md names: a value the job function
cannot parse (``int()`` raises), a key or value that is not UTF-8 (the stream's default decoder
raises), and a record over ``DSTREAMS_MAX_RECORD_BYTES``. Four times, the instance that has
just failed a record's first attempt is SIGKILLed and restarted, so the attempts counted in Redis
must outlive the process that counted them. The verdict: every good record counted exactly (the
checker's report), and every poison record in the dead-letter topic, with the headers naming it
and its failure, and nothing else.

A dead letter may be sent twice by design (docs/dead-letters.md, "Durability": a crash between
the dead-letter flush and the ledger step, or a batch abandoned after its dead letters were
sent, reads the record again). So the dead-letter topic is checked at least once: deduplicated
by (topic, partition, offset) it equals the poison set, and the duplicates are printed.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from service.commit.ledger import Shard
from service.sinks.dead_letter import RecordTooLarge
from tests.e2e.support.checker import Producing, make_plan
from tests.e2e.support.fleet import Fleet, Instance
from tests.e2e.support.scenario import INSTANCES, KEYS, Run, assert_exact, seeded

RECORDS = 10_000
RATE = 800.0
KILLS = 4
MAX_ATTEMPTS = 3
MAX_RECORD_BYTES = 1024
# how many poison records of each kind
FUNCTION_RAISES = 30
UNDECODABLE_VALUES = 8
UNDECODABLE_KEYS = 4
OVERSIZE = 10

Identity = tuple[str, int, int]  # (topic, partition, offset): what a consumer deduplicates on


@dataclass(frozen=True)
class Poison:
    """One poison record and the failure its dead letter must name."""

    kind: str
    key: bytes
    value: bytes
    exception_class: str
    message: str | None  # the exact exception message, when the test can derive it itself


def raised(call: Callable[..., object], *args: object) -> tuple[str, str]:
    """The qualified class name and message of what ``call(*args)`` raises (it must raise)."""
    try:
        call(*args)
    except Exception as exc:
        kind = type(exc)
        return f"{kind.__module__}.{kind.__qualname__}", str(exc)
    raise AssertionError("a poison record that does not fail")


def make_poison(keys: list[str], rng: random.Random) -> list[Poison]:
    """Poison records on the plan's keys, so they share partitions with good ones.

    None carries a sequence number: had one been counted, the checker would see a wrong state.
    Expected failures come from running the job's own steps (``int``, UTF-8 decoding) here.
    """
    out: list[Poison] = []
    for i in range(FUNCTION_RAISES):
        value = f"not-a-number-{i}".encode()
        out.append(
            Poison(
                "function",
                rng.choice(keys).encode(),
                value,
                *raised(int, value.decode()),
            )
        )
    for i in range(UNDECODABLE_VALUES):
        value = b"\xff\xfe" + f"-undecodable-value-{i}".encode()
        out.append(
            Poison(
                "undecodable",
                rng.choice(keys).encode(),
                value,
                *raised(bytes.decode, value, "utf-8"),
            )
        )
    for i in range(UNDECODABLE_KEYS):
        key = rng.choice(keys).encode() + b"\xc3\x28"  # a truncated 2-byte sequence
        value = f"undecodable-key-{i}".encode()
        out.append(Poison("undecodable", key, value, *raised(bytes.decode, key, "utf-8")))
    too_large = f"{RecordTooLarge.__module__}.{RecordTooLarge.__qualname__}"
    for i in range(OVERSIZE):
        key = rng.choice(keys).encode()
        # the first one is one byte over the limit
        size = MAX_RECORD_BYTES + 1 if i == 0 else rng.randint(MAX_RECORD_BYTES + 2, 4096)
        head = f"oversize-{i}-".encode()
        value = head + b"x" * (size - len(key) - len(head))
        out.append(Poison("oversize", key, value, too_large, None))
    return out


@dataclass
class DeadLetter:
    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def identity(self) -> Identity | None:
        try:
            return (
                self.headers["__connect.errors.topic"].decode(),
                int(self.headers["__connect.errors.partition"]),
                int(self.headers["__connect.errors.offset"]),
            )
        except (KeyError, ValueError):
            return None


def read_dead_letters(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list[DeadLetter]:
    """Every record of the dead-letter topic, up to the end offsets seen now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-dlq-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    letters: list[DeadLetter] = []
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in metadata.topics[topic].partitions
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(todo)])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dead-letter topic {topic}: end not reached on {todo}")
            for message in consumer.consume(500, timeout=1.0):
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
                partition, offset = int(message.partition() or 0), int(message.offset() or 0)
                raw = message.headers() or []
                pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
                headers = {k: v if isinstance(v, bytes) else (v or "").encode() for k, v in pairs}
                letters.append(
                    DeadLetter(partition, offset, message.key(), message.value(), headers)
                )
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
    finally:
        consumer.close()
    return letters


def read_attempts(redis_url: str, job: str, topic: str, partitions: int) -> dict[Identity, int]:
    """The failure counts the service keeps in Redis, per record (docs/dead-letters.md)."""
    client = redis.Redis.from_url(redis_url)
    counts: dict[Identity, int] = {}
    try:
        for p in range(partitions):
            fields: dict[bytes, bytes] = client.hgetall(  # type: ignore[assignment]
                Shard(job, topic, p).key("attempts")
            )
            for offset, count in fields.items():
                counts[(topic, p, int(offset))] = int(count)
    finally:
        client.close()
    return counts


ATTEMPT_LINE = re.compile(r"record (\S+)/(\d+)/(\d+) failed \(attempt (\d+) of (\d+)\)")


def logged_attempts(fleet: Fleet) -> dict[Identity, list[tuple[str, int]]]:
    """Per record, the (log file, attempt number) of each failure the instances logged."""
    out: dict[Identity, list[tuple[str, int]]] = {}
    for log_file in sorted(fleet.log_dir.glob("instance-*.log")):
        for match in ATTEMPT_LINE.finditer(log_file.read_text(errors="replace")):
            topic, partition, offset, attempt, _ = match.groups()
            identity = (topic, int(partition), int(offset))
            out.setdefault(identity, []).append((log_file.name, int(attempt)))
    return out


def first_attempts(instance: Instance) -> int:
    """Failures at attempt 1 its current process logged: each leaves a record between retries."""
    if not instance.log_file.exists():
        return 0
    text = instance.log_file.read_text(errors="replace")
    return sum(1 for m in ATTEMPT_LINE.finditer(text) if m.group(4) == "1")


def kill_between_retries(
    run: Run, rng: random.Random, kills: int, gap_s: tuple[float, float], wait_s: float = 10.0
) -> int:
    """SIGKILL, ``kills`` times, the instance that has just failed a record's first attempt,
    and restart it: the record's later attempts are then counted by another process.

    A random running instance is killed when no first attempt shows within ``wait_s``.
    """
    done = 0
    while done < kills:
        run.while_producing(rng.uniform(*gap_s))
        seen = {i.index: first_attempts(i) for i in run.fleet.running()}
        victim: Instance | None = None
        deadline = time.monotonic() + wait_s
        while victim is None and time.monotonic() < deadline:
            run.fleet.revive()
            for instance in run.fleet.running():
                if first_attempts(instance) > seen.get(instance.index, 0):
                    victim = instance
                    break
            else:
                time.sleep(0.02)
        if victim is None:
            running = run.fleet.running()
            if not running:
                continue
            victim = rng.choice(running)
        victim.kill()
        victim.start()
        done += 1
    return done


@dataclass
class DlqVerdict:
    poison: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    letters: int = 0
    duplicates: int = 0
    duplicate_details: list[str] = field(default_factory=list)
    missing: int = 0
    unexpected: int = 0
    wrong: int = 0  # dead letters of a poison record whose key, value or headers are wrong
    logged_failing: int = 0  # records whose failures below the max were logged
    attempts_across_processes: int = 0  # records whose failures were logged by >1 process
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def summary(self) -> str:
        text = (
            f"E2E-DLQ poison={self.poison} by_kind={self.by_kind} letters={self.letters} "
            f"duplicates={self.duplicates} missing={self.missing} unexpected={self.unexpected} "
            f"wrong={self.wrong} logged_failing={self.logged_failing} "
            f"attempts_across_processes={self.attempts_across_processes}"
        )
        if self.duplicate_details:
            text += "\n  duplicates: " + "; ".join(self.duplicate_details)
        if self.problems:
            text += "\n  e.g. " + "\n  e.g. ".join(self.problems[:12])
        return text


def check_letter(
    letter: DeadLetter, poison: Poison, job: str, window_ms: tuple[int, int]
) -> list[str]:
    """What is wrong with one dead letter of ``poison`` (nothing: an empty list)."""
    h = letter.headers
    wrong = []
    if (letter.key, letter.value) != (poison.key, poison.value):
        wrong.append("key or value differ from the poison record's")
    if h.get("__connect.errors.exception.class.name", b"").decode() != poison.exception_class:
        wrong.append(f"class {h.get('__connect.errors.exception.class.name')!r}")
    message = h.get("__connect.errors.exception.message", b"").decode()
    if poison.message is not None and message != poison.message:
        wrong.append(f"message {message!r}, expected {poison.message!r}")
    if poison.kind == "oversize":
        size = len(poison.key) + len(poison.value)
        if str(size) not in message or str(MAX_RECORD_BYTES) not in message:
            wrong.append(f"message {message!r} names neither size {size} nor the limit")
    trace = h.get("__connect.errors.exception.stacktrace", b"").decode().rstrip()
    short = poison.exception_class.rsplit(".", 1)[-1]
    if not trace or short not in trace.splitlines()[-1]:
        wrong.append(f"stack trace does not end with {short}")
    attempts = h.get("dstreams.errors.attempts", b"")
    if not attempts.isdigit() or int(attempts) < MAX_ATTEMPTS:
        wrong.append(f"attempts {attempts!r}, expected >= {MAX_ATTEMPTS}")
    stamp = h.get("dstreams.errors.timestamp", b"")
    if not stamp.isdigit() or not window_ms[0] <= int(stamp) <= window_ms[1]:
        wrong.append(f"timestamp {stamp!r} outside the run {window_ms}")
    if h.get("dstreams.errors.job") != job.encode():
        wrong.append(f"job {h.get('dstreams.errors.job')!r}")
    return wrong


def judge_dead_letters(
    poison: dict[Identity, Poison],
    letters: list[DeadLetter],
    attempts: dict[Identity, int],
    logged: dict[Identity, list[tuple[str, int]]],
    job: str,
    window_ms: tuple[int, int],
) -> DlqVerdict:
    verdict = DlqVerdict(poison=len(poison), letters=len(letters))
    verdict.by_kind = dict(Counter(p.kind for p in poison.values()))
    copies: dict[Identity, list[DeadLetter]] = {}
    for letter in letters:
        identity = letter.identity
        if identity is None or identity not in poison:
            verdict.unexpected += 1
            verdict.problem(f"dead letter of no poison record: {identity}, key {letter.key!r}")
            continue
        copies.setdefault(identity, []).append(letter)
        wrong = check_letter(letter, poison[identity], job, window_ms)
        if wrong:
            verdict.wrong += 1
            verdict.problem(f"{identity} ({poison[identity].kind}): {'; '.join(wrong)}")
    verdict.duplicates = sum(len(c) - 1 for c in copies.values())
    for identity, record in sorted(poison.items()):
        sent = copies.get(identity, [])
        if not sent:
            verdict.missing += 1
            verdict.problem(f"{identity} ({record.kind}) not in the dead-letter topic")
            continue
        numbers = [int(c.headers.get("dstreams.errors.attempts", b"0") or 0) for c in sent]
        if len(sent) > 1:
            verdict.duplicate_details.append(f"{identity} {record.kind} attempts {numbers}")
        # every failure is one HINCRBY: a copy sent again carries a higher count, unless the
        # count was reset (kept in memory, or lost with a restart)
        if len(set(numbers)) != len(numbers):
            verdict.problem(f"{identity}: copies with the same attempt count {numbers}")
        if attempts.get(identity, 0) < max(numbers):
            verdict.problem(f"{identity}: Redis counts {attempts.get(identity)} < sent {numbers}")
    for identity in sorted(set(attempts) - set(poison)):
        verdict.problem(f"a good record was charged attempts: {identity} {attempts[identity]}")
    verdict.logged_failing = len(logged)
    for identity, record in sorted(poison.items()):
        # attempts 1..max-1 of a job-function failure rewind the partition and are logged
        if record.kind == "function" and identity not in logged:
            verdict.problem(f"{identity}: dead-lettered without a logged retry")
    for identity, lines in sorted(logged.items()):
        numbers = [n for _, n in lines]
        if identity not in poison or poison[identity].kind != "function":
            verdict.problem(f"{identity} logged as failing ({numbers}), not a job-function poison")
        elif len(set(numbers)) != len(numbers) or max(numbers) >= MAX_ATTEMPTS:
            verdict.problem(f"{identity}: attempts logged {numbers} (repeated or over the max)")
        if len({name for name, _ in lines}) > 1:
            verdict.attempts_across_processes += 1
    return verdict


@pytest.mark.faults
@pytest.mark.timeout(900)
def test_poison_records_all_dead_lettered_good_ones_exact(
    make_fleet: Callable[..., Fleet],
    topics: tuple[str, str],
    create_topic: Callable[..., str],
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    """Good records counted exactly; poison ones dead-lettered with their headers, at least once."""
    rng = seeded("poison records")
    started_ms = int(time.time() * 1000)
    input_topic, output_topic = topics
    dlq_topic = create_topic(partitions=3)
    fleet = make_fleet(
        input_topic,
        output_topic,
        extra_env={
            "DSTREAMS_DLQ_TOPIC": dlq_topic,
            "DSTREAMS_DLQ_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "DSTREAMS_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES),
        },
    )
    for _ in range(INSTANCES):
        fleet.add()
    plan = make_plan(KEYS, RECORDS, rng)
    poison = make_poison(sorted(plan), rng)
    producing = Producing(
        kafka_bootstrap, input_topic, plan, rng, rate=RATE, extra=[(p.key, p.value) for p in poison]
    ).start()
    run = Run(
        "poison", fleet, plan, producing, input_topic, output_topic, kafka_bootstrap, redis_url
    )
    kills = kill_between_retries(run, rng, KILLS, (1.5, 3.0))
    report = run.finish(trials=kills)

    by_content = {(p.key, p.value): p for p in poison}
    placed = {
        (input_topic, partition, offset): by_content[(key or b"", value or b"")]
        for partition, offset, key, value in producing.extra_delivered
    }
    assert len(placed) == len(poison), "every poison record was produced once"
    verdict = judge_dead_letters(
        placed,
        read_dead_letters(kafka_bootstrap, dlq_topic),
        read_attempts(redis_url, fleet.job_name, input_topic, partitions=6),
        logged_attempts(fleet),
        fleet.job_name,
        (started_ms, int(time.time() * 1000)),
    )
    print(verdict.summary())
    assert_exact(report)
    assert not verdict.problems, verdict.summary()
    # the kills hit records between retries: their count went on in another process
    assert verdict.attempts_across_processes > 0, verdict.summary()
