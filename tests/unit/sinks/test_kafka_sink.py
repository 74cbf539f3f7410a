"""KafkaSink's transaction handling against a recording stand-in for librdkafka's Producer (the
broker's side is covered by tests/integration/sinks)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from service.commit.batch import (
    BatchParticipant,
    GroupOffsets,
    OutputFencedError,
    participant_of,
    precommit_all,
)
from service.sinks.kafka import (
    KafkaSink,
    KafkaSinkError,
    bind_outputs,
    instance_id,
    record_headers,
    transactional_id,
)
from service.sinks.transaction import OutputTransaction
from service.streaming import StreamingContext
from service.streaming.rdd import BatchRDD


class RecordingProducer:
    def __init__(self, config: dict[str, Any], log: list[tuple[Any, ...]]) -> None:
        self.config = config
        self.log = log
        self.fail: dict[str, KafkaError] = {}
        self.delivery_error: KafkaError | None = None
        self.hang: dict[str, threading.Event] = {}

    def _call(self, name: str, *args: Any) -> None:
        self.log.append((name, *args))
        release = self.hang.pop(name, None)
        if release is not None:
            release.wait()
        error = self.fail.pop(name, None)
        if error is not None:
            raise KafkaException(error)

    def init_transactions(self, timeout: float) -> None:
        self._call("init", self.config["transactional.id"])

    def begin_transaction(self) -> None:
        self._call("begin")

    def produce(self, topic: str, **kw: Any) -> None:
        self._call("produce", topic, kw["key"], kw["value"], tuple(kw["headers"]))
        kw["on_delivery"](self.delivery_error, None)

    def send_offsets_to_transaction(self, offsets: list[Any], meta: Any, timeout: float) -> None:
        self._call("offsets", [(o.topic, o.partition, o.offset) for o in offsets], meta)

    def commit_transaction(self, timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._call("abort")

    def flush(self, timeout: float) -> int:
        self._call("flush")
        return 0

    def poll(self, timeout: float) -> int:
        return 0


Factory = Callable[[dict[str, Any]], Any]


@pytest.fixture
def calls() -> list[tuple[Any, ...]]:
    return []


@pytest.fixture
def producers(calls: list[tuple[Any, ...]]) -> list[RecordingProducer]:
    return []


def sink_with(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer], flush_timeout_s: float = 60.0
) -> KafkaSink:
    def factory(config: dict[str, Any]) -> Any:
        producer = RecordingProducer(config, calls)
        producers.append(producer)
        return producer

    return KafkaSink(
        "broker:9092",
        "out",
        instance="pod-0",
        producer_factory=factory,
        flush_timeout_s=flush_timeout_s,
    )


def rdd(parts: list[list[Any]], tasks: list[tuple[str, int] | None]) -> BatchRDD:
    return BatchRDD(parts, tasks=tasks)


def fenced(code: int = KafkaError.ILLEGAL_GENERATION, **kw: bool) -> KafkaError:
    return KafkaError(code, "refused", **kw)


def test_transaction_begins_at_first_write_and_commits_with_the_offsets(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    assert sink.transactional_id == "dstreams-wc-pod-0"
    sink.begin(1000)
    sink.precommit(1000, [])  # no records: no transaction at all
    sink.begin(2000)
    sink(rdd([[("a", 1)], [("b", 2)]], [("in", 0), ("in", 1)]))
    group = GroupOffsets({("in", 1): 7, ("in", 0): 5}, "meta")
    sink.precommit(2000, [group])
    headers = record_headers("wc", 2000, ("in", 0))
    assert calls == [
        ("init", "dstreams-wc-pod-0"),
        ("begin",),
        ("produce", "out", "a", "1", tuple(headers)),
        ("produce", "out", "b", "2", tuple(record_headers("wc", 2000, ("in", 1)))),
        ("offsets", [("in", 0, 5), ("in", 1, 7)], "meta"),
        ("commit",),
    ]
    assert dict(headers) == {
        "dstreams.job": b"wc",
        "dstreams.batch": b"2000",
        "dstreams.input.topic": b"in",
        "dstreams.input.partition": b"0",
    }


def test_zombie_offsets_refused_aborts_and_raises_fenced(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    sink.begin(1000)
    sink.write(["x"])
    producers[0].fail["offsets"] = fenced(txn_requires_abort=True)
    with pytest.raises(OutputFencedError):
        sink.precommit(1000, [GroupOffsets({("in", 0): 1}, "stale")])
    assert [c[0] for c in calls][-2:] == ["offsets", "abort"]
    assert ("commit",) not in calls
    # the next batch starts a new transaction on the same producer
    sink.begin(2000)
    sink.write(["y"])
    sink.precommit(2000, [])
    assert [c[0] for c in calls][-3:] == ["begin", "produce", "commit"]
    assert len(producers) == 1


def test_fatal_error_replaces_the_producer(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    sink.begin(1000)
    sink.write(["x"])
    producers[0].fail["commit"] = fenced(KafkaError._FENCED, fatal=True)
    with pytest.raises(OutputFencedError):
        sink.precommit(1000, [])
    sink.begin(2000)
    sink.write(["y"])
    assert len(producers) == 2  # a new producer, whose init_transactions fences the old id
    assert calls[-3:] == [("init", "dstreams-wc-pod-0"), ("begin",), calls[-1]]


def test_failed_delivery_fails_the_commit(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    sink.begin(1000)
    producers[0].delivery_error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    sink.write(["x"])
    with pytest.raises(KafkaSinkError):
        sink.precommit(1000, [])
    assert calls[-1] == ("abort",)
    assert ("commit",) not in calls


def test_abort_discards_the_open_transaction_only(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    sink.begin(1000)
    sink.abort(1000)
    assert ("abort",) not in calls
    sink.write(["x"])
    sink.abort(1000)
    assert calls[-1] == ("abort",)
    sink.write(["y"])  # writing after an abort opens a new transaction
    assert [c[0] for c in calls][-2:] == ["begin", "produce"]


def test_plain_mode_flushes_every_call_without_transactions(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("files", transactional=False)
    sink.begin(1000)
    sink(rdd([[1, 2]], [None]))
    sink.precommit(1000, [GroupOffsets({("in", 0): 1}, "meta")])
    assert [c[0] for c in calls] == ["produce", "produce", "flush"]
    assert "transactional.id" not in producers[0].config
    assert sink.transactional_id is None
    producers[0].delivery_error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    with pytest.raises(KafkaSinkError, match="1 records to out not acknowledged"):
        sink.write(["big"])


def test_instance_id_from_the_environment_or_host_and_pid() -> None:
    assert instance_id({"DSTREAMS_INSTANCE_ID": "pod-3"}) == "pod-3"
    assert instance_id({}).endswith(f"-{__import__('os').getpid()}")
    assert transactional_id("wc", "pod-3") == "dstreams-wc-pod-3"


class Recorder:
    """A participant that logs its calls and may refuse to commit."""

    def __init__(self, name: str, log: list[str], refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def __call__(self, rdd: Any) -> None:
        pass

    def bind(self, job: str, transactional: bool) -> None:
        self.log.append(f"{self.name}.bind({transactional})")

    def begin(self, batch_ms: int) -> None:
        pass

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        self.log.append(f"{self.name}.precommit")
        if self.refuse:
            raise RuntimeError("refused")

    def abort(self, batch_ms: int) -> None:
        self.log.append(f"{self.name}.abort")

    def close(self) -> None:
        pass


def test_precommit_all_aborts_the_failing_one_and_those_after_it() -> None:
    log: list[str] = []
    parts = [Recorder("a", log), Recorder("b", log, refuse=True), Recorder("c", log)]
    failure = precommit_all(parts, 1000, [])
    assert isinstance(failure, RuntimeError)
    assert log == ["a.precommit", "b.precommit", "b.abort", "c.abort"]
    assert precommit_all(parts[:1], 1000, []) is None


def test_foreach_rdd_registers_participants_and_wrappers() -> None:
    log: list[str] = []
    direct = Recorder("direct", log)

    class Wrapper:
        batch_participant = Recorder("wrapped", log)

        def __call__(self, rdd: Any) -> None:
            pass

    wrapper = Wrapper()
    ssc = StreamingContext(1.0)
    stream = ssc.queueStream([[1]])
    stream.foreachRDD(direct)
    stream.foreachRDD(wrapper)
    stream.foreachRDD(direct)  # registered once
    stream.foreachRDD(lambda rdd: None)
    assert isinstance(direct, BatchParticipant)
    assert participant_of(wrapper) is Wrapper.batch_participant
    assert participant_of(lambda rdd: None) is None
    ssc.start()
    try:
        # a job without a ledger keeps plain outputs
        assert log == ["direct.bind(False)", "wrapped.bind(False)"]
    finally:
        ssc.stop()


def test_a_stuck_send_offsets_abandons_the_producer_and_the_next_batch_uses_a_new_one(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer], monkeypatch: Any
) -> None:
    """librdkafka #5456: send_offsets_to_transaction can block past its timeout after the group
    coordinator restarted. The batch must fail (and be taken again), not wedge the job."""
    monkeypatch.setattr("service.sinks.transaction._DEADLINE_GRACE_S", 0.0)
    sink = sink_with(calls, producers, flush_timeout_s=0.2)
    sink.bind("wc", transactional=True)
    release = threading.Event()
    producers[0].hang["offsets"] = release
    sink.begin(1000)
    sink(rdd([[("a", 1)]], [("in", 0)]))
    with pytest.raises(KafkaSinkError, match="send_offsets_to_transaction did not return"):
        sink.precommit(1000, [GroupOffsets({("in", 0): 1}, "meta")])
    assert ("commit",) not in calls
    sink.begin(2000)
    sink(rdd([[("a", 1)]], [("in", 0)]))
    sink.precommit(2000, [GroupOffsets({("in", 0): 1}, "meta")])
    assert len(producers) == 2, "the stuck producer was replaced"
    # the new producer fenced the stuck one's id before its own transaction
    assert calls[-5:] == [
        ("init", "dstreams-wc-pod-0"),
        ("begin",),
        ("produce", "out", "a", "1", tuple(record_headers("wc", 2000, ("in", 0)))),
        ("offsets", [("in", 0, 1)], "meta"),
        ("commit",),
    ]
    release.set()


def test_replayed_tasks_are_not_published_again_by_a_transactional_sink(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    """A crashed owner published these records (KafkaSource.replaying): state is rebuilt, the
    records are not sent twice; the next batch publishes everything again."""
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=True)
    sink.begin(1000)
    sink.skip_tasks({("in", 0)})
    sink(rdd([[("a", 1)], [("b", 2)]], [("in", 0), ("in", 1)]))
    sink.precommit(1000, [])
    produced = [c for c in calls if c[0] == "produce"]
    assert [(c[2], c[3]) for c in produced] == [("b", "2")]
    sink.begin(2000)
    sink(rdd([[("a", 3)]], [("in", 0)]))
    assert [c[2] for c in calls if c[0] == "produce"][-1] == "a"


def test_a_plain_sink_does_not_skip(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    sink = sink_with(calls, producers)
    sink.bind("wc", transactional=False)
    sink.begin(1000)
    sink.skip_tasks({("in", 0)})
    sink(rdd([[("a", 1)]], [("in", 0)]))
    assert [c[2] for c in calls if c[0] == "produce"] == ["a"]


def test_a_jobs_sinks_share_one_transaction_per_batch(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    """Issue 9, hole 1: one producer, one init, one commit for every sink of the batch."""
    first, second = sink_with(calls, producers), sink_with(calls, producers)
    second.topic = "out-b"
    driven = bind_outputs("wc", [first, second], transactional=True)
    assert driven[:2] == [first, second] and isinstance(driven[2], OutputTransaction)
    assert producers == []  # the context initialises it at start (``recover``)
    driven[2].recover()
    assert len(producers) == 1
    for participant in driven:
        participant.begin(1000)
    first(rdd([[("a", 1)]], [("in", 0)]))
    second(rdd([[("a", 1)]], [("in", 0)]))
    failure = precommit_all(driven, 1000, [GroupOffsets({("in", 0): 1}, "meta")])
    assert failure is None
    assert [c[0] for c in calls] == ["init", "begin", "produce", "produce", "offsets", "commit"]
    assert [c[1] for c in calls if c[0] == "produce"] == ["out", "out-b"]
    assert first.transactional_id == second.transactional_id == "dstreams-wc-pod-0"


def test_sinks_to_different_clusters_are_refused_at_start(
    calls: list[tuple[Any, ...]], producers: list[RecordingProducer]
) -> None:
    first = sink_with(calls, producers)
    other = KafkaSink("elsewhere:9092", "out-b", producer_factory=lambda c: None)
    with pytest.raises(ValueError, match="'out' and 'out-b' name different Kafka clusters"):
        bind_outputs("wc", [first, other], transactional=True)
    # plain outputs (no ledger) keep a producer each
    assert len(bind_outputs("wc2", [sink_with(calls, producers), other], transactional=False)) == 2
