"""A ``foreachRDD`` output that writes each batch to a Kafka topic.

Two modes, chosen by the context when the job starts (``bind``):

- *Transactional*, for jobs that commit through the ledger (Kafka input, Redis checkpoint): the
  batch's records go into one Kafka transaction (``transactional.id`` =
  ``dstreams-<job>-<instance id>``), begun at the batch's first write and committed by
  ``precommit`` with the batch's input offsets and the consumer's group metadata, before the
  ledger step. A zombie (stale group generation, KIP-447) is refused there, so consumers with
  ``isolation.level=read_committed`` never see its records; an aborted batch is invisible too.
- *Plain*, for every other job (or a sink used on its own): an idempotent producer, and each call
  returns only once every record is acknowledged (``flush``), raising if one was not, so a
  returned call means the batch's output is durable in Kafka (at-least-once).

The instance id is ``DSTREAMS_INSTANCE_ID``, else ``<hostname>-<pid>``: stable on Kubernetes
with a StatefulSet (pod name, pid 1), so a restarted pod's ``init_transactions`` aborts the
transaction its predecessor left open at once instead of after ``transaction.timeout.ms``, and
distinct for several processes on one host, which would otherwise fence each other's producer.
Correctness never depends on it: fencing of zombies comes from the group metadata.

A broker restart must not wedge the batch thread. librdkafka (<= 2.16 at least) can block in
``send_offsets_to_transaction`` past its timeout when the group coordinator it cached went away
(librdkafka #5456, #5511; reproduced here with one broker restarted). Two defences: idle
connections close after ``connections.max.idle.ms`` (5 s), whose state change makes librdkafka
look the coordinator up again, which unblocks the call; and every blocking transactional call
runs under a deadline, past which the producer is abandoned (its transaction is aborted when the
next producer with the same ``transactional.id`` initialises) and the batch is taken again.

Every record carries headers ``dstreams.job`` and ``dstreams.batch`` (batch time, ms), and, when
its partition of the batch comes from one Kafka input partition, ``dstreams.input.topic`` and
``dstreams.input.partition``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from service.commit.batch import GroupOffsets, OutputFencedError
from service.runtime.deadline import DeadlineExceeded, call_with_deadline

log = structlog.get_logger(__name__)

Payload = bytes | str | None
Headers = list[tuple[str, str | bytes | None]]
Task = tuple[str, int]

INSTANCE_ID_ENV = "DSTREAMS_INSTANCE_ID"
# Group errors by which the broker refuses a zombie's offsets in a transaction (KIP-447).
_FENCING_CODES = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    }
)
_COMMIT_ATTEMPTS = 3
# How long past its own timeout a transactional call may block before the producer is abandoned.
_DEADLINE_GRACE_S = 5.0


class _Batch(Protocol):
    @property
    def partitions(self) -> list[list[Any]]: ...

    @property
    def tasks(self) -> list[Task | None]: ...


class KafkaSinkError(RuntimeError):
    """Some records of a batch were not acknowledged by Kafka, or its transaction failed."""


class ProducerStuckError(KafkaSinkError):
    """A transactional call did not return by its deadline (see the module docstring)."""

    outage = True  # the broker side is in trouble, not the batch (service.runtime.outage)


def pair_to_key_value(record: Any) -> tuple[Payload, Payload]:
    """``(key, value)`` pairs become the record key and value; anything else is a value."""
    if isinstance(record, tuple) and len(record) == 2:
        key, value = record
        return _payload(key), _payload(value)
    return None, _payload(record)


def _payload(x: Any) -> Payload:
    if x is None or isinstance(x, bytes | str):
        return x
    return str(x)


def instance_id(environ: Mapping[str, str] | None = None) -> str:
    """``DSTREAMS_INSTANCE_ID``, else ``<hostname>-<pid>`` (see the module docstring)."""
    env = environ if environ is not None else os.environ
    return env.get(INSTANCE_ID_ENV) or f"{socket.gethostname()}-{os.getpid()}"


def transactional_id(job: str, instance: str) -> str:
    return f"dstreams-{job}-{instance}"


def record_headers(job: str | None, batch_ms: int | None, task: Task | None) -> Headers:
    headers: Headers = []
    if job is not None:
        headers.append(("dstreams.job", job.encode()))
    if batch_ms is not None:
        headers.append(("dstreams.batch", str(batch_ms).encode()))
    if task is not None:
        headers.append(("dstreams.input.topic", task[0].encode()))
        headers.append(("dstreams.input.partition", str(task[1]).encode()))
    return headers


def is_fencing(error: KafkaError) -> bool:
    return error.code() in _FENCING_CODES


class KafkaSink:
    """``dstream.foreachRDD(KafkaSink(servers, topic))``; a ``BatchParticipant``."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        serialize: Callable[[Any], tuple[Payload, Payload]] = pair_to_key_value,
        producer_config: Mapping[str, Any] | None = None,
        flush_timeout_s: float = 60.0,
        instance: str | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            # acknowledged by all in-sync replicas, and no duplicates from the producer's retries
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            # see the module docstring: lets librdkafka find a restarted coordinator again
            "connections.max.idle.ms": 5000,
            # a transaction a crashed instance left open holds back read_committed readers of
            # its output partitions until the broker aborts it (or a restart with the same
            # instance id does); batches commit theirs within seconds
            "transaction.timeout.ms": 15000,
        }
        config.update(producer_config or {})
        self.topic = topic
        self._config = config
        self._serialize = serialize
        self._flush_timeout_s = flush_timeout_s
        self._instance = instance
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._job: str | None = None
        self._transactional = False
        self._batch_ms: int | None = None
        self._in_transaction = False
        self._failures: list[KafkaError] = []
        self._skipped: frozenset[Task] = frozenset()

    # -- BatchParticipant --------------------------------------------------------------------
    def bind(self, job: str, transactional: bool) -> None:
        """Called by the context at start; the producer is built then (or at first use)."""
        if self._producer is not None:
            raise RuntimeError("KafkaSink is already bound to a running job")
        self._job = job
        self._transactional = transactional
        self._producer = self._new_producer()

    @property
    def transactional(self) -> bool:
        return self._transactional

    @property
    def transactional_id(self) -> str | None:
        return self._config_for_producer().get("transactional.id")

    def begin(self, batch_ms: int) -> None:
        """Remember the batch (for headers); the transaction begins at the first write."""
        self._batch_ms = batch_ms
        self._skipped = frozenset()
        if not self._in_transaction:
            self._failures = []

    def skip_tasks(self, tasks: Iterable[Task]) -> None:
        """This batch's records of ``tasks`` are a replay of what a crashed owner published
        (``KafkaSource.replaying``): not published again. Only transactional sinks skip."""
        self._skipped = frozenset(tasks) if self._transactional else frozenset()

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        """Commit the batch's transaction with its input offsets; raise if it cannot commit.

        ``OutputFencedError`` when the broker says this instance is a zombie (its group generation
        is stale, or another producer took its transactional id); ``KafkaSinkError`` otherwise.
        The transaction is aborted before raising, so nothing of the batch is visible.
        """
        if not self._transactional or not self._in_transaction:
            return
        producer = self._require_producer()
        try:
            for group in groups:
                offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(group.offsets.items())]
                if offsets:
                    self._send_offsets(producer, offsets, group.group_metadata)
            if self._failures:
                raise KafkaSinkError(
                    f"{len(self._failures)} records to {self.topic} failed ({self._failures[0]})"
                ) from KafkaException(self._failures[0])
            self._commit(producer)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            self._abort_after(error)
            if error is not None and is_fencing(error):
                raise OutputFencedError(
                    f"batch {batch_ms}: transaction to {self.topic} refused, this instance is "
                    f"fenced ({error})"
                ) from exc
            raise KafkaSinkError(
                f"batch {batch_ms}: transaction to {self.topic} failed: {exc}"
            ) from exc
        except ProducerStuckError as exc:
            self._abandon_producer(str(exc))
            raise KafkaSinkError(f"batch {batch_ms}: transaction to {self.topic}: {exc}") from exc
        except KafkaSinkError:
            self._abort_after(None)
            raise
        self._in_transaction = False
        log.debug("kafka_sink_committed", topic=self.topic, batch=batch_ms)

    def abort(self, batch_ms: int) -> None:
        if self._transactional and self._in_transaction:
            self._abort_after(None)
            log.info("kafka_sink_aborted", topic=self.topic, batch=batch_ms)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._in_transaction:
            try:
                producer.abort_transaction(self._flush_timeout_s)
            except KafkaException as exc:
                log.warning("kafka_sink_abort_failed", topic=self.topic, error=str(exc))
            self._in_transaction = False
        producer.flush(self._flush_timeout_s)

    # -- writing -----------------------------------------------------------------------------
    def __call__(self, rdd: _Batch) -> None:
        for task, part in zip(rdd.tasks, rdd.partitions, strict=True):
            if task in self._skipped:
                log.debug(
                    "kafka_sink_replay_skipped", topic=self.topic, task=task, records=len(part)
                )
                continue
            self._produce_all(part, record_headers(self._job, self._batch_ms, task))
        if not self._transactional:
            self._flush_plain()

    def write(self, records: Iterable[Any]) -> None:
        """Produce ``records``; in plain mode, wait until Kafka acknowledged every one."""
        self._produce_all(records, record_headers(self._job, self._batch_ms, None))
        if not self._transactional:
            self._flush_plain()

    def _produce_all(self, records: Iterable[Any], headers: Headers) -> None:
        producer = self._require_producer()
        failures = self._failures

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for record in records:
            if self._transactional and not self._in_transaction:
                producer.begin_transaction()
                self._in_transaction = True
            key, value = self._serialize(record)
            while True:
                try:
                    producer.produce(
                        self.topic, value=value, key=key, headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:
                    # the local queue is full: let deliveries drain it, then retry this record
                    producer.poll(0.1)

    def _flush_plain(self) -> None:
        remaining = self._require_producer().flush(self._flush_timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            first = failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT)
            raise KafkaSinkError(
                f"{len(failures) + remaining} records to {self.topic} not acknowledged ({first})"
            ) from KafkaException(first)

    # -- producer ----------------------------------------------------------------------------
    def _config_for_producer(self) -> dict[str, Any]:
        config = dict(self._config)
        if self._transactional and self._job is not None:
            config.setdefault(
                "transactional.id", transactional_id(self._job, self._instance or instance_id())
            )
        return config

    def _new_producer(self) -> Producer:
        producer = self._factory(self._config_for_producer())
        if self._transactional:
            # fences an earlier producer with our id, aborting what it left open
            producer.init_transactions(self._flush_timeout_s)
        return producer

    def _require_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._new_producer()
        return self._producer

    def _commit(self, producer: Producer) -> None:
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                self._bounded(
                    "commit_transaction",
                    lambda: producer.commit_transaction(self._flush_timeout_s),
                )
                self._failures = []
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (isinstance(error, KafkaError) and error.retriable()) or (
                    attempt == _COMMIT_ATTEMPTS
                ):
                    raise
                log.warning("kafka_sink_commit_retry", topic=self.topic, error=str(error))

    def _send_offsets(
        self, producer: Producer, offsets: list[TopicPartition], group_metadata: Any
    ) -> None:
        self._bounded(
            "send_offsets_to_transaction",
            lambda: producer.send_offsets_to_transaction(
                offsets, group_metadata, self._flush_timeout_s
            ),
        )

    def _bounded(self, what: str, call: Callable[[], None]) -> None:
        try:
            call_with_deadline(what, self._flush_timeout_s + _DEADLINE_GRACE_S, call)
        except DeadlineExceeded as exc:
            raise ProducerStuckError(str(exc)) from exc

    def _abandon_producer(self, why: str) -> None:
        """Drop a producer stuck in a call; the next one's ``init_transactions`` fences it."""
        log.warning("kafka_sink_producer_abandoned", topic=self.topic, reason=why)
        self._in_transaction = False
        self._failures = []
        self._producer = None

    def _abort_after(self, error: KafkaError | None) -> None:
        """Abort the open transaction; a producer in a fatal state is replaced at next use."""
        self._in_transaction = False
        self._failures = []
        producer = self._producer
        if producer is None:
            return
        if error is not None and error.fatal():
            log.warning("kafka_sink_producer_fatal", topic=self.topic, error=str(error))
            self._producer = None
            return
        try:
            self._bounded(
                "abort_transaction", lambda: producer.abort_transaction(self._flush_timeout_s)
            )
        except ProducerStuckError as exc:
            self._abandon_producer(str(exc))
        except KafkaException as exc:
            # e.g. fenced by a newer producer with our id: start over with a fresh one
            log.warning("kafka_sink_abort_failed", topic=self.topic, error=str(exc))
            self._producer = None
