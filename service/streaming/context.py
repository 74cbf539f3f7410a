"""StreamingContext: pyspark.streaming.StreamingContext without Spark.

It owns the graph, the state store chosen by ``checkpoint`` and the batch scheduler. Batch times
live on a grid ``zero + k * interval`` in integer ms; a job restarted against the same
checkpoint store and job name keeps its grid and state (see docs/semantics.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from numbers import Real
from typing import Any, TypeVar

from service.commit.batch import BatchParticipant
from service.commit.protocol import BatchProtocol
from service.runtime.clock import Clock, SystemClock
from service.runtime.crashpoints import CrashPoints
from service.runtime.outage import Backoff, is_outage
from service.runtime.scheduler import BatchScheduler
from service.sinks.kafka import bind_outputs
from service.sources.base import InputSource, fill_all
from service.state.base import StateStore, StateWrites
from service.state.memory_store import MemoryStateStore
from service.state.redis_store import RedisStateStore, is_redis_url
from service.state.sqlite_store import SQLiteStateStore
from service.streaming.dstream import (
    BatchTime,
    DStream,
    InputDStream,
    MultiTransformedDStream,
    UnionDStream,
    duration_ms,
)
from service.streaming.graph import DStreamGraph
from service.streaming.isolation import RetryBatch
from service.streaming.listener import BatchEvent, BatchInfo, StreamingStartedEvent
from service.streaming.persistence import JobState
from service.streaming.rdd import DEFAULT_PARALLELISM, BatchRDD, LocalContext

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _StartInterrupted(Exception):
    """``stop()`` came while ``start()`` waited for a dependency."""


# ``ssc.checkpoint(MEMORY_CHECKPOINT)``: state in this process only (tests, experiments)
MEMORY_CHECKPOINT = "memory://"

INITIALIZED = "INITIALIZED"
ACTIVE = "ACTIVE"
STOPPED = "STOPPED"


def ledger_durability() -> dict[str, Any]:
    """``WAIT``/``WAITAOF`` options of the ledger, from the runner's settings (or the env)."""
    from service.config import settings

    conf = settings()
    return {
        "wait_replicas": conf.redis_wait_replicas,
        "wait_aof": conf.redis_wait_aof,
        "wait_timeout_ms": conf.redis_wait_timeout_ms,
    }


class StreamingContext:
    """``StreamingContext(batchDuration)`` or ``StreamingContext(sc, batchDuration)``.

    As in Spark, a context built directly starts afresh (its job's old state in the checkpoint
    store is dropped at ``start()``); one built by ``getOrCreate`` carries on from it. A job that
    reads Kafka always carries on: its positions come from the checkpoint store, and state must
    resume with them (``python -m service reset`` starts it afresh, whole).
    """

    # PySpark's API keeps the active context on the class (getActive); so do we.
    _activeContext: StreamingContext | None = None
    # the context whose start() is waiting for Kafka or Redis, so that a stop can end the wait
    _startingContext: StreamingContext | None = None

    def __init__(
        self,
        sparkContext: Any = None,
        batchDuration: float | None = None,
        jssc: Any = None,
        *,
        clock: Clock | None = None,
        jobName: str = "default",
        defaultParallelism: int | None = None,
        stateStore: StateStore | None = None,
    ) -> None:
        if batchDuration is None and isinstance(sparkContext, Real):
            sparkContext, batchDuration = None, float(sparkContext)
        if batchDuration is None:
            raise ValueError("batchDuration is required")
        self._batch_ms = duration_ms(batchDuration)
        if self._batch_ms <= 0:
            raise ValueError(f"batchDuration must be positive, got {batchDuration}")
        if isinstance(sparkContext, LocalContext) and defaultParallelism is None:
            # ssc.sparkContext is the very SparkContext the job built, as in PySpark
            self._local_context = sparkContext
        else:
            parallelism = defaultParallelism
            if parallelism is None:
                sc_parallelism = getattr(sparkContext, "defaultParallelism", None)
                parallelism = (
                    sc_parallelism if isinstance(sc_parallelism, int) else DEFAULT_PARALLELISM
                )
            self._local_context = LocalContext(parallelism)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._job_name = jobName
        self._graph = DStreamGraph(self._batch_ms)
        self._store: StateStore | None = stateStore
        self._owns_store = stateStore is None
        self._checkpoint_url: str | None = None
        self._listeners: list[Any] = []
        self._sources: list[InputSource] = []
        self._state = INITIALIZED
        self._scheduler: BatchScheduler | None = None
        self._next_batch_ms: int | None = None
        self._errors: list[BaseException] = []
        self._cond = threading.Condition()
        self._batch_lock = threading.RLock()
        self._batch_thread: int | None = None
        self._stop_requested = False
        # set by stop(): ends the waits of an outage (ledger retries, pauses between batches)
        self._stopping = threading.Event()
        self._outage_backoff = Backoff()
        self._recover = False
        self._crash = CrashPoints()
        # outputs whose batch commits with the ledger step (transactional Kafka sinks)
        self._participants: list[BatchParticipant] = []
        # every commit step of a batch (service/commit/protocol.py); built at start
        self._protocol: BatchProtocol | None = None

    # -- properties --------------------------------------------------------------------------
    @property
    def sparkContext(self) -> LocalContext:
        """A stand-in with ``parallelize``/``emptyRDD``/``union``, enough for ported jobs."""
        return self._local_context

    @property
    def jobName(self) -> str:
        return self._job_name

    @property
    def batchDurationMs(self) -> int:
        return self._batch_ms

    def getState(self) -> str:
        return self._state

    @property
    def input_sources(self) -> list[InputSource]:
        """The sources of the input streams, for metrics (not PySpark API)."""
        return list(self._sources)

    # -- setup -------------------------------------------------------------------------------
    def checkpoint(self, directory: str) -> None:
        """A Redis URL makes Redis the state store; a directory keeps the state in a SQLite
        file there (``SQLiteStateStore``), so a local ``python job.py`` recovers as Spark's
        does. Under ``python -m service run`` the service's Redis (``REDIS_URL``) wins over a
        directory: the operator's store, not a pod's disk."""
        if not is_redis_url(directory) and directory != MEMORY_CHECKPOINT:
            from service.config import active_settings

            operated = active_settings()
            if operated is not None:
                log.info(
                    "checkpoint %r: under python -m service run the state goes to the "
                    "service's Redis (REDIS_URL)",
                    directory,
                )
                directory = operated.redis_url
        self._checkpoint_url = directory

    def remember(self, duration: float) -> None:
        self._graph.remember_ms = duration_ms(duration)

    def addStreamingListener(self, streamingListener: Any) -> None:
        self._listeners.append(streamingListener)

    @classmethod
    def getOrCreate(
        cls, checkpointPath: str, setupFunc: Callable[[], StreamingContext]
    ) -> StreamingContext:
        """Always builds the graph with ``setupFunc`` (closures cannot be restored); state and the
        batch grid are restored from the checkpoint store at ``start()`` when the job ran before."""
        ssc = setupFunc()
        if not isinstance(ssc, StreamingContext):
            raise TypeError("setupFunc should return a StreamingContext")
        if ssc._checkpoint_url is None:
            ssc.checkpoint(checkpointPath)
        ssc._recover = True
        return ssc

    @classmethod
    def current(cls) -> StreamingContext | None:
        """The active context, or one whose ``start()`` waits for Kafka or Redis (not PySpark
        API: what a graceful stop of the service must stop)."""
        return cls._activeContext or cls._startingContext

    @classmethod
    def getActive(cls) -> StreamingContext | None:
        """The context that was started and not yet stopped, if any."""
        return cls._activeContext

    @classmethod
    def getActiveOrCreate(
        cls, checkpointPath: str | None, setupFunc: Callable[[], StreamingContext]
    ) -> StreamingContext:
        active = cls.getActive()
        if active is not None:
            return active
        if checkpointPath is not None:
            return cls.getOrCreate(checkpointPath, setupFunc)
        return setupFunc()

    # -- input streams -----------------------------------------------------------------------
    def _check_not_started(self) -> None:
        if self._state != INITIALIZED:
            raise ValueError("cannot add streams or outputs after the context has started")

    def _addBatchParticipant(self, participant: BatchParticipant) -> None:
        """An output registered by ``foreachRDD`` whose writes commit with the batch."""
        self._check_not_started()
        if not any(p is participant for p in self._participants):
            self._participants.append(participant)

    def _sourceStream(self, source: InputSource) -> DStream:
        """Register an input source; the scheduler drives it (see service/sources/base.py)."""
        self._check_not_started()
        stream = InputDStream(self, source)
        self._graph.add_input(stream)
        self._sources.append(source)
        return stream

    def queueStream(
        self, rdds: Iterable[Any], oneAtATime: bool = True, default: Any = None
    ) -> DStream:
        from service.sources.queue import QueueSource

        ctx = self._local_context
        items = list(rdds)
        default_rdd: BatchRDD | None = None
        if default is not None and not isinstance(default, BatchRDD):
            default_rdd = ctx.parallelize(list(default)) if default else None
        elif isinstance(default, BatchRDD):
            default_rdd = default
        if not items and default_rdd is not None:
            items = [[]]
        batches = [r if isinstance(r, BatchRDD) else ctx.parallelize(list(r)) for r in items]
        return self._sourceStream(
            QueueSource([b.partitions for b in batches], oneAtATime, default_rdd)
        )

    def socketTextStream(self, hostname: str, port: int, storageLevel: Any = None) -> DStream:
        from service.sources.socket import SocketTextSource

        return self._sourceStream(SocketTextSource(hostname, port))

    def textFileStream(self, directory: str) -> DStream:
        from service.sources.textfile import TextFileSource

        return self._sourceStream(TextFileSource(directory))

    def binaryRecordsStream(self, directory: str, recordLength: int) -> DStream:
        """Records of ``recordLength`` bytes from the files new in ``directory`` (``bytes``)."""
        from service.sources.textfile import TextFileSource, fixed_length_records

        return self._sourceStream(TextFileSource(directory, fixed_length_records(recordLength)))

    def union(self, *dstreams: DStream) -> DStream:
        if not dstreams:
            raise ValueError("should have at least one DStream to union")
        if len(dstreams) == 1:
            return dstreams[0]
        return UnionDStream(list(dstreams))

    def transform(self, dstreams: Iterable[DStream], transformFunc: Callable[..., Any]) -> DStream:
        """``transformFunc(rdds)`` (a list, one batch per stream) returns the new batch."""
        streams = list(dstreams)
        if not streams:
            raise ValueError("should have at least one DStream to transform")
        stream = MultiTransformedDStream(streams, transformFunc)
        stream._user_rdd_function = True
        return stream

    # -- lifecycle ---------------------------------------------------------------------------
    def _open_store(self) -> StateStore:
        if self._store is None:
            url = self._checkpoint_url
            if url is not None and is_redis_url(url):
                self._store = RedisStateStore.from_url(url)
            elif url is not None and url != MEMORY_CHECKPOINT:
                self._store = SQLiteStateStore(url)
                log.info("job %s keeps its state in %s", self._job_name, self._store.path)
            else:
                self._store = MemoryStateStore()
        return self._store

    def _prepare(self) -> None:
        """Everything ``start`` does except the thread: restore state, start sources.

        Kafka or Redis down at start is waited for, as an outage is later (one log line, a
        growing pause): the service never exits because a dependency is not up yet, and a stop
        meanwhile ends the wait (``_StartInterrupted``)."""
        if self._state != INITIALIZED:
            raise ValueError(f"StreamingContext is {self._state}, it cannot be started")
        if not self._graph.outputs:
            raise ValueError("No output operations registered, so nothing to execute")
        StreamingContext._startingContext = self
        try:
            self._plan_shuffles()
            self._next_batch_ms = self._while_unavailable("Redis", self._restore)
            protocol = self._commit
            protocol.participants = bind_outputs(
                self._job_name, protocol.participants, transactional=protocol.transactional
            )
            # transactional producers initialise now (aborting what a predecessor left open)
            self._while_unavailable("Kafka", protocol.initialise_outputs)
            with self._cond:
                if self._stopping.is_set():
                    raise _StartInterrupted
                for source in self._sources:
                    source.start()
                self._state = ACTIVE
                StreamingContext._activeContext = self
        finally:
            if StreamingContext._startingContext is self:
                StreamingContext._startingContext = None
        self._notify("onStreamingStarted", StreamingStartedEvent(self._clock.now_ms()))

    def _plan_shuffles(self) -> None:
        """Keyed shuffles of a Kafka job through repartition topics, or a warning that they
        group within each input partition (``DSTREAMS_SHUFFLE``; service/streaming/shuffle.py)."""
        if not self._offers_tasks():
            return
        from service.config import settings
        from service.streaming import shuffle

        if settings().shuffle != "kafka":
            shuffle.warn_partition_scoped(self)
        elif shuffle.plan_needed(self):
            admin = shuffle.admin_for(self)
            self._while_unavailable("Kafka", lambda: shuffle.plan(self, admin))
        shuffle.rely_on_kafka_keys(self)
        shuffle.warn_functions_on_tasks(self)

    def _while_unavailable(self, dependency: str, step: Callable[[], _T]) -> _T:
        """``step()``, taken again after a growing pause while ``dependency`` is unavailable."""
        backoff = Backoff(first=0.5, ceiling=5.0)
        while True:
            if self._stopping.is_set():
                raise _StartInterrupted
            try:
                return step()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if backoff.failures == 0:
                    log.warning(
                        "job %s waits for %s to answer before it starts: %s",
                        self._job_name,
                        dependency,
                        exc,
                    )
                if backoff.wait(self._stopping):
                    raise _StartInterrupted from exc

    def _restore(self) -> int:
        """The job's state and time grid from the store; the first batch time."""
        job = JobState(self._open_store(), self._job_name)
        if self._offers_tasks():
            # State and positions resume together, whatever built the context: Kafka jobs start
            # afresh only through ``python -m service reset`` (docs/semantics.md, "Recovery").
            if not self._recover and "zero_ms" in job.load_meta():
                log.warning(
                    "job %s resumes its state and Kafka positions from the checkpoint store; "
                    "`python -m service reset %s --yes` starts it afresh",
                    self._job_name,
                    self._job_name,
                )
        elif not self._recover:
            # As Spark: a context not built by getOrCreate ignores what an earlier run left.
            job.store.drop_prefix(job.prefix)
        next_batch_ms = self._graph.start(job, self._clock.now_ms())
        self._protocol = BatchProtocol(
            self._job_name,
            self._sources,
            self._participants,
            forget_task=self._graph.forget_task,
            report_error=self._record_error,
            fatal=self._fatal,
            stopping=self._stopping,
        )
        self._protocol.attach(
            job.store, task_scoped=self._graph.task_scoped, durability=ledger_durability()
        )
        return next_batch_ms

    @property
    def _commit(self) -> BatchProtocol:
        if self._protocol is None:
            raise RuntimeError("the StreamingContext has not been started")
        return self._protocol

    def _offers_tasks(self) -> bool:
        """Some input hands out Kafka partitions: state is per partition, positions in Redis."""
        return any(inp.offers_tasks for inp in self._graph.inputs)

    def start(self) -> None:
        try:
            self._prepare()
        except _StartInterrupted:
            log.info("job %s stopped while waiting to start", self._job_name)
            self._shutdown()
            return
        assert self._next_batch_ms is not None
        fill = self._fill_sources if self._sources else None
        self._scheduler = BatchScheduler(
            self._clock,
            self._batch_ms,
            self._next_batch_ms,
            self._run_batch,
            fill,
            self._fatal,
            name=f"dstreams-{self._job_name}",
        )
        self._scheduler.start()

    def _fill_sources(self, deadline: float) -> None:
        fill_all(self._sources, deadline)

    def _notify(self, method: str, event: Any) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, method)(event)
            except Exception:
                log.exception("streaming listener %s.%s failed", listener, method)

    def _record_error(self, exc: BaseException) -> None:
        with self._cond:
            self._errors.append(exc)
            self._cond.notify_all()

    def _fatal(self, exc: BaseException) -> None:
        self._record_error(exc)
        self._shutdown()

    def _run_batch(self, t: int) -> None:
        """One batch: compute and output, commit state once, then tell sources it is durable."""
        with self._batch_lock:
            if self._state != ACTIVE:
                return
            self._batch_thread = threading.get_ident()
            try:
                self._run_batch_locked(t)
            finally:
                self._batch_thread = None
            if self._stop_requested:
                self._shutdown()

    def _run_batch_locked(self, t: int) -> None:
        if not self._settle_unknown_commits(t):
            return
        info = BatchInfo(t, self._clock.now_ms())
        info._outputs = self._graph.output_infos(t, ran=False)
        self._notify("onBatchSubmitted", BatchEvent(info.snapshot()))
        info._start_ms = self._clock.now_ms()
        self._notify("onBatchStarted", BatchEvent(info.snapshot()))
        protocol = self._commit
        protocol.begin(t)
        errors = self._graph.run_batch(BatchTime.at(t), after_take=self._after_take)
        info._inputs = dict(self._graph.last_input_infos)
        info._num_records = sum(i.numRecords() for i in info._inputs.values())
        info._input_records = self._graph.last_input_records
        info._outputs = self._graph.output_infos(t, ran=True)
        info._stage_delays_ms = list(self._graph.stage_delays_ms)
        errors.extend(protocol.flush_dead_letters())
        outage = protocol.transactional and any(is_outage(e) for e in errors)
        for exc in errors:
            if isinstance(exc, RetryBatch):
                log.warning("batch %d ms not committed, read again: %s", t, exc)
                continue
            if outage and is_outage(exc):
                log.warning("batch %d ms not committed, Kafka or Redis unavailable: %s", t, exc)
                continue
            log.error("batch %d ms failed", t, exc_info=exc)
            self._record_error(exc)
        if errors:
            info._failure = f"{type(errors[0]).__name__}: {errors[0]}"
        reason = protocol.commit_outputs(t, errors, self._graph.batch_tasks)
        if reason is not None:
            self._graph.job_state().writes = StateWrites()
            if outage:
                reason = "outage"
            elif reason == "error" and all(isinstance(e, RetryBatch) for e in errors):
                reason = "outputs"
            info._retry_reason = None if reason == "error" else reason
            info._end_ms = self._clock.now_ms()
            self._notify("onBatchCompleted", BatchEvent(info.snapshot()))
            if reason == "outage":
                self._pause_for_outage(t)
            return
        self._crash_point("outputs_done")
        commit_started = time.perf_counter()
        if not self._persist(t, protocol):
            info._retry_reason = "outage"
            info._end_ms = self._clock.now_ms()
            self._notify("onBatchCompleted", BatchEvent(info.snapshot()))
            return
        info._state_commit_s = time.perf_counter() - commit_started
        self._crash_point("state_persisted")
        protocol.acknowledge(t)
        self._crash_point("offsets_committed")
        self._next_batch_ms = t + self._batch_ms
        self._outage_backoff.reset()
        info._end_ms = self._clock.now_ms()
        self._notify("onBatchCompleted", BatchEvent(info.snapshot()))

    def _settle_unknown_commits(self, t: int) -> bool:
        """Step 1 of the protocol; False (the batch waits) while Kafka cannot tell whether the
        last transaction published."""
        try:
            settled = self._commit.settle()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("batch %d ms: cannot tell yet whether the last batch was published", t)
            self._pause_for_outage(t)
            return False
        if settled:
            log.info("batch %d ms: the outcome of the unknown commit is settled", t)
        return True

    def _pause_for_outage(self, t: int) -> None:
        """Kafka or Redis is down: wait a growing while before the batch is taken again."""
        backoff = self._outage_backoff
        if backoff.failures == 0:
            log.warning("batch %d ms: pausing until Kafka and Redis answer", t)
        backoff.wait(self._stopping)

    def _after_take(self) -> None:
        self._crash_point("batch_taken")
        self._commit.after_take()

    def _crash_point(self, step: str) -> None:
        """Test crash points count batches that took records (an empty one proves little)."""
        if self._graph.last_num_records > 0:
            self._crash.reached(step)

    def _outputFailed(self, t: int) -> None:
        """An output op raised: discard what outputs wrote in this batch so far."""
        self._commit.abort_outputs(t)

    def _persist(self, t: int, protocol: BatchProtocol) -> bool:
        """The batch's state (and, for Kafka jobs, its offsets) reach the store, or nothing."""
        job = self._graph.job_state()
        writes, job.writes = job.writes, StateWrites()
        return protocol.persist(t, self._graph.batch_tasks, writes, job.store)

    def _shutdown(self) -> None:
        with self._cond:
            if self._state == STOPPED:
                return
            was_active = self._state == ACTIVE
            self._state = STOPPED
            self._stopping.set()
            if StreamingContext._activeContext is self:
                StreamingContext._activeContext = None
        if was_active:
            for source in self._sources:
                try:
                    source.stop()
                except Exception:
                    log.exception("source %s failed to stop", source)
        if self._protocol is not None:
            self._protocol.close()
        else:
            for participant in self._participants:
                try:
                    participant.close()
                except Exception:
                    log.exception("output %s failed to close", participant)
        if self._store is not None and self._owns_store:
            self._store.close()
        with self._cond:
            self._cond.notify_all()

    def stop(self, stopSparkContext: bool = True, stopGraceFully: bool = False) -> None:
        """Finish the batch in flight (graceful or not: a batch is never cut), then stop."""
        self._stopping.set()
        if StreamingContext._startingContext is self:
            return  # start() is waiting for a dependency: it sees the stop and shuts down
        if self._batch_thread == threading.get_ident():
            # Called by an output function: stop once this batch is committed.
            self._stop_requested = True
            if self._scheduler is not None:
                self._scheduler.stop(wait=False)
            return
        if self._scheduler is not None:
            self._scheduler.stop(wait=True)
        with self._batch_lock:
            self._shutdown()

    def awaitTermination(self, timeout: float | None = None) -> None:
        self.awaitTerminationOrTimeout(timeout)

    def awaitTerminationOrTimeout(self, timeout: float | None) -> bool:
        """True once stopped; re-raises the first error of any batch as soon as there is one."""
        with self._cond:
            self._cond.wait_for(lambda: self._errors or self._state == STOPPED, timeout)
            if self._errors:
                raise self._errors[0]
            return self._state == STOPPED
