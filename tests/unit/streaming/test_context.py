"""Lifecycle: errors and awaitTermination, listeners, real-time runs, the bundled sources."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.runtime.clock import ManualClock, SystemClock
from service.streaming import StreamingContext, StreamingListener
from service.streaming.rdd import BatchRDD
from service.streaming.testing import run_batches
from tests.unit.streaming.util import Collector, make_ssc


def test_failed_batch_is_reraised_while_later_batches_run() -> None:
    ssc = make_ssc()
    stream = ssc.queueStream([[0], [1], [2], [3]])

    def fail_on_one(i: int) -> int:
        if i == 1:
            raise ValueError("This is a special error")
        return i

    collector = Collector()
    stream.map(fail_on_one).foreachRDD(collector)
    times = run_batches(ssc, 4)
    assert collector.per_batch(times) == [[0], None, [2], [3]]
    with pytest.raises(ValueError, match="special error"):
        ssc.awaitTerminationOrTimeout(0.01)
    with pytest.raises(ValueError, match="special error"):
        ssc.awaitTermination(0.01)
    ssc.stop()


def test_failure_in_one_output_does_not_stop_the_next_output() -> None:
    ssc = make_ssc()
    stream = ssc.queueStream([[1], [2]])

    def boom(t: datetime, rdd: BatchRDD) -> None:
        raise RuntimeError("first output failed")

    after = Collector()
    stream.foreachRDD(boom)
    stream.foreachRDD(after)
    times = run_batches(ssc, 2)
    assert after.per_batch(times) == [[1], [2]]
    with pytest.raises(RuntimeError, match="first output failed"):
        ssc.awaitTerminationOrTimeout(0)


def test_failed_state_batch_keeps_previous_state() -> None:
    ssc = make_ssc()

    def update(values: list[int], state: int | None) -> int:
        if 99 in values:
            raise KeyError("bad value")
        return sum(values, state or 0)

    out = Collector(sort=True)
    ssc.queueStream([[("a", 1)], [("a", 99)], [("a", 2)]]).updateStateByKey(update).foreachRDD(out)
    times = run_batches(ssc, 3)
    assert out.per_batch(times) == [[("a", 1)], None, [("a", 3)]]


def test_await_termination_times_out_and_returns_after_stop() -> None:
    ssc = make_ssc()
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: None)
    ssc.start()
    assert ssc.awaitTerminationOrTimeout(0.05) is False
    ssc.stop()
    assert ssc.awaitTerminationOrTimeout(0.05) is True
    ssc.awaitTermination()


def test_real_time_run_matches_run_batches() -> None:
    inputs = [[("a", 1)], [("b", 2), ("a", 3)], [], [("a", 1)]]

    def build(ssc: StreamingContext, collector: Collector) -> None:
        ssc.queueStream([list(b) for b in inputs]).updateStateByKey(
            lambda vs, s: sum(vs, s or 0)
        ).window(0.1, 0.1).foreachRDD(collector)

    expected = Collector(sort=True)
    manual = make_ssc(0.05)
    build(manual, expected)
    run_batches(manual, 8)

    actual = Collector(sort=True)
    done = threading.Event()

    class Counter(StreamingListener):
        def __init__(self) -> None:
            self.batches: list[int] = []

        def onBatchCompleted(self, batchCompleted: Any) -> None:
            self.batches.append(batchCompleted.batchInfo().batchTime().milliseconds())
            if len(self.batches) == 8:
                done.set()

    counter = Counter()
    real = StreamingContext(0.05, clock=SystemClock(), defaultParallelism=1)
    real.addStreamingListener(counter)
    build(real, actual)
    real.start()
    assert done.wait(30)
    real.stop()
    first = counter.batches[0]
    assert counter.batches[:8] == [first + 50 * i for i in range(8)]
    assert list(actual.by_time.values())[:4] == list(expected.by_time.values())[:4]


def test_threaded_scheduler_with_manual_clock_runs_each_batch_time() -> None:
    clock = ManualClock(0)
    ssc = StreamingContext(1.0, clock=clock, defaultParallelism=1)
    seen: list[datetime] = []
    ssc.queueStream([[1], [2], [3]]).foreachRDD(lambda t, rdd: seen.append(t))
    ssc.start()
    clock.set_time(3000)  # three batch times passed at once: all three run, in order
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    ssc.stop()
    assert [round(t.timestamp() * 1000) for t in seen] == [1000, 2000, 3000]


def test_listener_events() -> None:
    """As PySpark's test_listener checks: each event's own BatchInfo, -1 for delays not known
    yet, every output operation listed with -1 times until it ran, and no input info (nor
    records) for a queue stream, which Spark's does not report."""
    infos: dict[str, list[Any]] = {"submitted": [], "started": [], "completed": []}

    class Listener(StreamingListener):
        def onBatchSubmitted(self, batchSubmitted: Any) -> None:
            infos["submitted"].append(batchSubmitted.batchInfo())

        def onBatchStarted(self, batchStarted: Any) -> None:
            infos["started"].append(batchStarted.batchInfo())

        def onBatchCompleted(self, batchCompleted: Any) -> None:
            infos["completed"].append(batchCompleted.batchInfo())

    ssc = make_ssc()
    ssc.addStreamingListener(Listener())
    stream = ssc.queueStream([[1, 2, 3]])
    stream.foreachRDD(lambda rdd: None)
    stream.map(str).foreachRDD(lambda rdd: None)
    run_batches(ssc, 2)
    assert [i.batchTime().milliseconds() for i in infos["completed"]] == [500, 1000]
    for submitted in infos["submitted"]:
        assert (submitted.schedulingDelay(), submitted.processingDelay()) == (-1, -1)
        assert submitted.totalDelay() == -1
        outputs = submitted.outputOperationInfos()
        assert sorted(outputs) == [0, 1]
        assert all(o.startTime() == o.endTime() == -1 for o in outputs.values())
    for started in infos["started"]:
        assert started.schedulingDelay() >= 0 and started.processingDelay() == -1
    for completed in infos["completed"]:
        assert completed.schedulingDelay() >= 0 and completed.processingDelay() >= 0
        assert completed.totalDelay() >= 0
        assert completed.numRecords() == 0 and completed.streamIdToInputInfo() == {}
        assert completed.input_records() in (0, 3)
        for output in completed.outputOperationInfos().values():
            assert output.startTime() >= 0 and output.endTime() >= output.startTime()
            assert output.failureReason() is None and output.name() == "foreachRDD"
    # a fresh snapshot per event: the submitted one was not completed behind its back
    assert infos["submitted"][0] is not infos["completed"][0]
    assert infos["submitted"][0].processingDelay() == -1


def test_stop_from_inside_an_output_function() -> None:
    ssc = StreamingContext(0.02, defaultParallelism=1)
    ran: list[int] = []

    def stop_after_two(rdd: BatchRDD) -> None:
        ran.append(1)
        if len(ran) == 2:
            ssc.stop(False, True)

    ssc.queueStream([[1], [2], [3]]).foreachRDD(stop_after_two)
    ssc.start()
    assert ssc.awaitTerminationOrTimeout(30) is True
    assert len(ran) == 2
    assert ssc.getState() == "STOPPED"


def test_checkpoint_directory_falls_back_to_memory(tmp_path: Path) -> None:
    built: list[StreamingContext] = []

    def setup() -> StreamingContext:
        ssc = make_ssc()
        ssc.queueStream([[("a", 1)]]).updateStateByKey(lambda vs, s: sum(vs, s or 0)).pprint()
        built.append(ssc)
        return ssc

    ssc = StreamingContext.getOrCreate(str(tmp_path), setup)
    assert built == [ssc]
    run_batches(ssc, 2)
    ssc.stop()


def test_text_file_stream_reads_new_files_only(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old\n")
    ssc = make_ssc()
    collector = Collector(sort=True)
    ssc.textFileStream(str(tmp_path)).foreachRDD(collector)
    run_batches(ssc, 1)
    (tmp_path / "new.txt").write_text("x\ny\n")
    (tmp_path / ".hidden").write_text("no\n")
    times = run_batches(ssc, 2)
    assert collector.per_batch(times) == [["x", "y"], []]


def test_binary_records_stream_cuts_new_files_into_fixed_length_records(tmp_path: Path) -> None:
    """As PySpark's test_binary_records_stream: each new file's bytes in records of the given
    length; a file with a partial record at its end fails its batch."""
    (tmp_path / "old.bin").write_bytes(b"ignored!")
    ssc = make_ssc()
    collector = Collector()
    ssc.binaryRecordsStream(str(tmp_path), 4).foreachRDD(collector)
    run_batches(ssc, 1)
    (tmp_path / "new.bin").write_bytes(bytes(range(12)))
    times = run_batches(ssc, 1)
    assert collector.per_batch(times) == [
        [bytes(range(4)), bytes(range(4, 8)), bytes(range(8, 12))]
    ]
    (tmp_path / "partial.bin").write_bytes(b"abcdef")
    run_batches(ssc, 1)
    with pytest.raises(ValueError, match="partial record"):
        ssc.awaitTerminationOrTimeout(0)
    ssc.stop()
    with pytest.raises(ValueError, match="recordLength must be > 0"):
        make_ssc().binaryRecordsStream(str(tmp_path), 0)


def test_socket_text_stream_reads_lines() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"hello world\nsecond line\n")
            time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    ssc = make_ssc()
    lines: list[str] = []
    ssc.socketTextStream("127.0.0.1", port).foreachRDD(lambda rdd: lines.extend(rdd.collect()))
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        run_batches(ssc, 1)
        time.sleep(0.02)
    ssc.stop()
    server.close()
    assert lines == ["hello world", "second line"]
