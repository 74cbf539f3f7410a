"""A ``foreachRDD`` output that writes each batch to a Kafka topic.

Two modes, chosen by the context when the job starts (``bind``):

- *Transactional*, for jobs that commit through the ledger (Kafka input, Redis checkpoint): the
  batch's records go into the batch's one Kafka transaction (``service.sinks.transaction``),
  shared by every ``KafkaSink`` of the job and committed with the batch's input offsets and the
  consumer's group metadata before the ledger step. A zombie (stale group generation, KIP-447)
  is refused there, so consumers with ``isolation.level=read_committed`` never see its records;
  an aborted batch is invisible too. A sink used on its own makes a transaction of its own.
- *Plain*, for every other job: an idempotent producer, and each call returns only once every
  record is acknowledged (``flush``), raising if one was not, so a returned call means the
  batch's output is durable in Kafka (at-least-once).

Every record carries headers ``dstreams.job`` and ``dstreams.batch`` (batch time, ms), and, when
its partition of the batch comes from one Kafka input partition, ``dstreams.input.topic`` and
``dstreams.input.partition``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from service.commit.batch import BatchParticipant, GroupOffsets
from service.sinks.transaction import (
    DEFAULT_PRODUCER_CONFIG,
    INSTANCE_ID_ENV,
    Headers,
    KafkaSinkError,
    OutputTransaction,
    Payload,
    ProducerStuckError,
    instance_id,
    is_fencing,
    transactional_id,
)

__all__ = [
    "INSTANCE_ID_ENV",
    "KafkaSink",
    "KafkaSinkError",
    "ProducerStuckError",
    "bind_outputs",
    "instance_id",
    "is_fencing",
    "pair_to_key_value",
    "record_headers",
    "transactional_id",
]

log = structlog.get_logger(__name__)

Task = tuple[str, int]


class _Batch(Protocol):
    @property
    def partitions(self) -> list[list[Any]]: ...

    @property
    def tasks(self) -> list[Task | None]: ...


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
        config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers}
        config.update(DEFAULT_PRODUCER_CONFIG)
        config.update(producer_config or {})
        self.topic = topic
        self._config = config
        self._serialize = serialize
        self._flush_timeout_s = flush_timeout_s
        self._instance = instance
        self._factory = producer_factory
        self._producer: Producer | None = None  # plain mode
        self._transaction: OutputTransaction | None = None  # transactional mode
        self._owns_transaction = False
        self._bound = False
        self._transactional = False  # kept after close, as is the id
        self._transactional_id: str | None = None
        self._job: str | None = None
        self._batch_ms: int | None = None
        self._failures: list[KafkaError] = []
        self._skipped: frozenset[Task] = frozenset()

    @property
    def producer_config(self) -> Mapping[str, Any]:
        """The producer settings this sink was given (a shared transaction takes the first's)."""
        return dict(self._config)

    # -- BatchParticipant --------------------------------------------------------------------
    def bind(
        self, job: str, transactional: bool, transaction: OutputTransaction | None = None
    ) -> None:
        """Called by the context at start. ``transaction``: the batch transaction this sink
        shares with the job's other outputs; without one a transactional sink makes its own."""
        if self._bound:
            raise RuntimeError("KafkaSink is already bound to a running job")
        self._bound = True
        self._job = job
        self._transactional = transactional
        if not transactional:
            self._producer = self._factory(dict(self._config))
            return
        if transaction is None:
            transaction = self.transaction_with([])
            transaction.bind(job)
            transaction.recover()
            transaction.settled()
            self._owns_transaction = True
        self._transaction = transaction
        self._transactional_id = transaction.transactional_id

    def transaction_with(self, others: Sequence[KafkaSink]) -> OutputTransaction:
        """One transaction for this sink's batches and ``others``', configured by this sink's
        settings; refused at start when they write to different clusters."""
        return OutputTransaction.shared_by(
            [(s.topic, s.producer_config) for s in (self, *others)],
            flush_timeout_s=self._flush_timeout_s,
            instance=self._instance,
            producer_factory=self._factory,
        )

    @property
    def transactional(self) -> bool:
        return self._transactional

    @property
    def transactional_id(self) -> str | None:
        return self._transactional_id

    def begin(self, batch_ms: int) -> None:
        """Remember the batch (for headers); the transaction begins at the first write."""
        self._batch_ms = batch_ms
        self._skipped = frozenset()
        if self._owns_transaction and self._transaction is not None:
            self._transaction.begin(batch_ms)

    def skip_tasks(self, tasks: Iterable[Task]) -> None:
        """This batch's records of ``tasks`` are a replay of what a crashed owner published
        (``KafkaSource.replaying``): not published again. Only transactional sinks skip."""
        self._skipped = frozenset(tasks) if self.transactional else frozenset()

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        """Commit the batch's transaction when it is this sink's own (a shared one is the
        context's to commit); raises as ``OutputTransaction.precommit``."""
        if self._owns_transaction and self._transaction is not None:
            self._transaction.precommit(batch_ms, groups)

    def abort(self, batch_ms: int) -> None:
        if self._owns_transaction and self._transaction is not None:
            self._transaction.abort(batch_ms)

    def close(self) -> None:
        self._bound = False
        transaction, self._transaction = self._transaction, None
        if transaction is not None and self._owns_transaction:
            transaction.close()
        producer, self._producer = self._producer, None
        if producer is not None:
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
        if self._transaction is None:
            self._flush_plain()

    def write(self, records: Iterable[Any]) -> None:
        """Produce ``records``; in plain mode, wait until Kafka acknowledged every one."""
        self._produce_all(records, record_headers(self._job, self._batch_ms, None))
        if self._transaction is None:
            self._flush_plain()

    def _produce_all(self, records: Iterable[Any], headers: Headers) -> None:
        transaction = self._transaction
        if transaction is not None:
            for record in records:
                key, value = self._serialize(record)
                transaction.produce(self.topic, key, value, headers)
            return
        producer = self._require_producer()
        failures = self._failures

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for record in records:
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

    def _require_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._factory(dict(self._config))
        return self._producer


def bind_outputs(
    job: str, participants: Sequence[BatchParticipant], transactional: bool
) -> list[BatchParticipant]:
    """Bind a job's outputs at start; the participants the context then drives, in order.

    In a ledger job (``transactional``) every ``KafkaSink`` writes into one shared
    ``OutputTransaction``, which comes last, after the sinks (whose own ``precommit`` and
    ``abort`` then do nothing): a batch's outputs commit together or not at all.
    """
    sinks = [p for p in participants if isinstance(p, KafkaSink)] if transactional else []
    shared: OutputTransaction | None = None
    if sinks:
        shared = sinks[0].transaction_with(sinks[1:])
        shared.bind(job)
    for participant in participants:
        if shared is not None and isinstance(participant, KafkaSink):
            participant.bind(job, True, shared)
        else:
            participant.bind(job, transactional)
    return [*participants, shared] if shared is not None else list(participants)
