"""The job's DStream graph: stream ids, output operations, the batch-time grid, one batch's run.

A job with a Kafka input (a source offering ``take_tasks``) is *task-scoped*: its state lives
per Kafka partition, is read lazily when a partition first appears in a batch, and is forgotten
with ``forget_task`` when the partition leaves this instance (docs/semantics.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.streaming import isolation
from service.streaming.listener import OutputOperationInfo, StreamInputInfo
from service.streaming.persistence import SCHEMA_VERSION, JobState

if TYPE_CHECKING:
    from service.streaming.dstream import BatchTime, DStream, InputDStream, _OutputOp
    from service.streaming.rdd import Task

log = logging.getLogger(__name__)


class DStreamGraph:
    """Streams in construction order (their index is their stable id in the store)."""

    def __init__(self, batch_ms: int) -> None:
        self.batch_ms = batch_ms
        self.streams: list[DStream] = []
        self.inputs: list[InputDStream] = []
        self.outputs: list[_OutputOp] = []
        self.remember_ms = 0
        self._zero_ms: int | None = None
        self._job: JobState | None = None
        self.last_num_records = 0  # every input's records, repartition topics' too
        self.last_input_records = 0  # the job's own inputs'
        # fixed at start(): some input hands out Kafka partitions (tasks)
        self.task_scoped = False
        # the tasks of the batch run last, in input order (the lead's commit groups by them)
        self.batch_tasks: list[Task] = []
        # set at start() for Kafka jobs with dead letters
        self._isolation: isolation.BatchIsolation | None = None
        # per batch, for each upstream batch time a later stage computed: how far behind
        self.stage_delays_ms: list[int] = []
        # per batch, what the listener events report (Spark's StreamInputInfo and
        # OutputOperationInfo): each input that reports by stream id; each output op's run
        self.last_input_infos: dict[int, StreamInputInfo] = {}
        self.last_output_runs: dict[int, tuple[int, int, str | None]] = {}
        self._fed_by_cache: dict[int, set[int]] = {}

    def _check_open(self) -> None:
        if self._zero_ms is not None:
            raise ValueError(
                "Adding new inputs, transformations, and output operations after starting a "
                "context is not supported"
            )

    def register(self, stream: DStream) -> int:
        self._check_open()
        self.streams.append(stream)
        return len(self.streams) - 1

    def add_input(self, stream: InputDStream) -> None:
        self.inputs.append(stream)

    def add_output(self, op: _OutputOp) -> None:
        self._check_open()
        self.outputs.append(op)

    def zero(self) -> int:
        if self._zero_ms is None:
            raise RuntimeError("the StreamingContext has not been started")
        return self._zero_ms

    def job_state(self) -> JobState:
        if self._job is None:
            raise RuntimeError("the StreamingContext has not been started")
        return self._job

    def _signature(self) -> int:
        import zlib

        kinds = ",".join(type(s).__name__ for s in self.streams)
        return zlib.crc32(kinds.encode())

    def start(self, job: JobState, now_ms: int) -> int:
        """Fix the time grid (restored from the store when the job ran before); first batch time."""
        self._job = job
        self._fed_by_cache = {}  # the graph is fixed from here on
        self.task_scoped = any(inp.offers_tasks for inp in self.inputs)
        if isolation.applies(self):
            self._isolation = isolation.BatchIsolation(self)
        meta = job.load_meta()
        if "zero_ms" in meta:
            if meta.get("batch_ms") != self.batch_ms:
                raise ValueError(
                    f"job {job.job!r} was checkpointed with batch duration "
                    f"{meta.get('batch_ms')} ms, not {self.batch_ms} ms"
                )
            if meta.get("graph") != self._signature():
                log.warning("job %s: DStream graph differs from the checkpointed one", job.job)
            self._zero_ms = meta["zero_ms"]
            if self.task_scoped:
                # Tasks load their state when they appear; records of the downtime are still
                # in Kafka, so the grid resumes at the next batch time rather than replaying.
                elapsed = max(0, now_ms - self._zero_ms)
                start = self._zero_ms + (elapsed // self.batch_ms + 1) * self.batch_ms
                log.info("job %s: zero %d ms, next batch %d ms", job.job, self._zero_ms, start)
                return start
            last = meta.get("last_batch_ms")
            for stream in self.streams:
                stream._restore(last, meta)
            start = (last if last is not None else self._zero_ms) + self.batch_ms
            log.info("job %s restored: zero %d ms, next batch %d ms", job.job, self._zero_ms, start)
            return start
        # Spark's JobGenerator: first batch at the next multiple of the interval.
        self._zero_ms = (now_ms // self.batch_ms) * self.batch_ms
        job.set_meta("schema", SCHEMA_VERSION)
        job.set_meta("zero_ms", self._zero_ms)
        job.set_meta("batch_ms", self.batch_ms)
        job.set_meta("graph", self._signature())
        job.commit()
        return self._zero_ms + self.batch_ms

    def run_batch(
        self, bt: BatchTime, after_take: Callable[[], None] | None = None
    ) -> list[BaseException]:
        """Compute one batch and run the output ops in order; errors are returned, not raised.

        ``after_take`` runs once the inputs handed out the batch's records (a crash point).
        """
        errors: list[BaseException] = []

        def record(exc: BaseException) -> None:
            if not any(exc is e for e in errors):
                errors.append(exc)

        self.last_num_records = 0
        self.last_input_records = 0
        self.last_input_infos = {}
        self.last_output_runs = {}
        tasks: list[Task] = []
        for inp in self.inputs:
            try:
                taken = inp._take(bt.ms)
            except Exception as exc:
                record(exc)
                taken = 0
            self.last_num_records += taken
            if inp._stage == 0:  # not a repartition topic read back: the job's own input
                self.last_input_records += taken
            described = inp.input_info(taken)
            if described is not None:
                self.last_input_infos[inp._id] = described
            tasks.extend(inp.last_tasks)
        self.batch_tasks = list(dict.fromkeys(tasks))
        if after_take is not None:
            after_take()
        job = self.job_state()
        if self._isolation is not None:
            # Kafka jobs: a failing record is retried, then dead-lettered (isolation.py)
            for error in self._isolation.run(bt):
                record(error)
        else:
            self._compute_and_output(bt, record, 0)
        for stream in self.stage_streams(0):
            stream._end_batch(bt.ms)
        self._run_later_stages(bt.ms, record)
        if self.task_scoped:
            # per task, with the task's other keys: no batch writes a job-scoped key
            for task in self.batch_tasks:
                job.set_meta("last_batch_ms", bt.ms, task)
        else:
            job.set_meta("last_batch_ms", bt.ms)
        return errors

    def output_infos(self, batch_ms: int, ran: bool) -> dict[int, OutputOperationInfo]:
        """The job's own output operations (not the engine's shuffle writers), by id, with
        what they did in the batch run last when ``ran``."""
        infos: dict[int, OutputOperationInfo] = {}
        for index, op in enumerate(o for o in self.outputs if not o.internal):
            info = OutputOperationInfo(batch_ms, index, op.name)
            run = self.last_output_runs.get(id(op)) if ran else None
            if run is not None:
                info._start_ms, info._end_ms, info._failure = run
            infos[index] = info
        return infos

    def stage_streams(self, stage: int) -> list[DStream]:
        """The streams stage ``stage`` computes (every stream, when nothing is shuffled)."""
        return [s for s in self.streams if s._stage == stage]

    def stage_outputs(self, stage: int) -> list[_OutputOp]:
        return [op for op in self.outputs if op.parent._stage == stage]

    def _run_later_stages(self, now_ms: int, record: Callable[[BaseException], None]) -> None:
        """Past a shuffle through Kafka, a stage runs the upstream batches its inputs released
        (service/streaming/shuffle.py), each at its own batch time and in order: what upstream
        batch t produced meets in downstream batch t, as in Spark. How many batch times later
        than t this batch ``now_ms`` computes it is the shuffle's added latency
        (``stage_delays_ms``)."""
        from service.streaming.dstream import BatchTime

        self.stage_delays_ms = []
        for stage in sorted({s._stage for s in self.streams} - {0}):
            inputs = [i for i in self.inputs if i._stage == stage]
            for t in sorted({t for i in inputs for t in i.released_times()}):
                ready = {id(i) for i in inputs if t in i.released_times()}
                # a stream of another shuffle topic has not released t (yet): not run at t
                streams = [s for s in self.stage_streams(stage) if self._fed_by(s) <= ready]
                self.stage_delays_ms.append(now_ms - t)
                at = BatchTime.at(t)
                self._compute_and_output(at, record, stage, streams)
                for stream in streams:
                    stream._end_batch(t)
                    # a later batch of this instance may run time t again for other tasks
                    stream._generated.pop(t, None)

    def _fed_by(self, stream: DStream) -> set[int]:
        """The inputs of later stages ``stream``'s batches come from (their ids)."""
        cached = self._fed_by_cache.get(id(stream))
        if cached is not None:
            return cached
        found: set[int] = set()
        todo, seen = [stream], set()
        while todo:
            s = todo.pop()
            if id(s) in seen:
                continue
            seen.add(id(s))
            if not s._parents and s._stage > 0:
                found.add(id(s))
            todo.extend(s._parents)
        self._fed_by_cache[id(stream)] = found
        return found

    def _compute_and_output(
        self,
        bt: BatchTime,
        record: Callable[[BaseException], None],
        stage: int,
        streams: list[DStream] | None = None,
    ) -> None:
        """``streams``: those of the stage to run (default: all of them), and their outputs."""
        chosen = self.stage_streams(stage) if streams is None else streams
        # Stateful streams and window parents advance every batch, needed by an output or not.
        for stream in chosen:
            if stream._forced and stream._is_valid(bt.ms):
                try:
                    stream._get_or_compute(bt)
                except Exception as exc:
                    record(exc)
        ids = {id(s) for s in chosen}
        for op in self.stage_outputs(stage):
            if id(op.parent) not in ids:
                continue
            started = round(time.time() * 1000)
            try:
                op.run(bt)
                failure = None
            except Exception as exc:
                record(exc)
                failure = f"{type(exc).__name__}: {exc}"
            self.last_output_runs[id(op)] = (started, round(time.time() * 1000), failure)

    def forget_task(self, task: Task) -> None:
        """Drop every in-process cache of ``task`` (revoked, or its commit was fenced).

        Its next appearance re-reads its state from the store, so the writes of whoever owned
        it in between are seen. Call between batches, from the batch thread.
        """
        for stream in self.streams:
            stream._forget_task(task)
        self.job_state().forget_task(task)
