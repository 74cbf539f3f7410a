"""The batch's one Kafka transaction, shared by every transactional output of a job instance.

A batch of a ledger job publishes through one transactional producer per instance
(``transactional.id`` = ``dstreams-<job>-<instance id>``), whatever the number of ``KafkaSink``
outputs: their records and the batch's input offsets (KIP-447) commit in one transaction or not
at all. Two producers per instance would share the id and fence each other (the second's
``init_transactions`` aborts the first's), and two ids would commit one after the other, so a
crash between them would publish part of a batch (issue 9, hole 1).

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
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from service.commit.batch import GroupOffsets, OutputFencedError
from service.runtime.crashpoints import CrashPoints
from service.runtime.deadline import DeadlineExceeded, call_with_deadline
from service.runtime.kafka_logs import kafka_logger

log = structlog.get_logger(__name__)

Payload = bytes | str | None
Headers = list[tuple[str, str | bytes | None]]

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
# How long a start waits for init_transactions before it pauses and tries again.
_START_INIT_TIMEOUT_S = 5.0
# How long past its own timeout a transactional call may block before the producer is abandoned.
_DEADLINE_GRACE_S = 5.0
# Settings that name the Kafka cluster a producer writes to: outputs sharing a transaction must
# agree on them.
_CLUSTER_PREFIXES = ("bootstrap.servers", "security.", "sasl.", "ssl.")

DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    # librdkafka's lines through the job's logging, repeats held back (kafka_logs.py)
    "logger": kafka_logger(),
    # acknowledged by all in-sync replicas, and no duplicates from the producer's retries
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    # see the module docstring: lets librdkafka find a restarted coordinator again
    "connections.max.idle.ms": 5000,
    # a transaction a crashed instance left open holds back read_committed readers of its
    # output partitions until the broker aborts it (or a restart with the same instance id
    # does); batches commit theirs within seconds
    "transaction.timeout.ms": 15000,
}


class KafkaSinkError(RuntimeError):
    """Some records of a batch were not acknowledged by Kafka, or its transaction failed."""


class ProducerStuckError(KafkaSinkError):
    """A transactional call did not return by its deadline (see the module docstring)."""

    outage = True  # the broker side is in trouble, not the batch (service.runtime.outage)


class AmbiguousCommitError(KafkaSinkError):
    """``commit_transaction`` did not say whether it committed (timed out, or stuck, after
    EndTxn may have been sent). The next ``init_transactions`` with our id completes or aborts
    it; until the group's offsets tell which (``recover``), the batch must not be published
    again as if it had not been."""

    outage = True


def instance_id(environ: Mapping[str, str] | None = None) -> str:
    """``DSTREAMS_INSTANCE_ID``, else ``<hostname>-<pid>`` (see the module docstring)."""
    env = environ if environ is not None else os.environ
    return env.get(INSTANCE_ID_ENV) or f"{socket.gethostname()}-{os.getpid()}"


def transactional_id(job: str, instance: str) -> str:
    return f"dstreams-{job}-{instance}"


def connection_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster settings and ``client.id``: what a further client of the same cluster (a
    dead-letter producer, a repartition writer, an admin client) copies from a consumer's."""
    return {k: v for k, v in config.items() if k.startswith((*_CLUSTER_PREFIXES, "client.id"))}


def is_fencing(error: KafkaError) -> bool:
    return error.code() in _FENCING_CODES


def cluster_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` that decide which cluster, and as whom, it writes to."""
    return {k: v for k, v in config.items() if k.startswith(_CLUSTER_PREFIXES)}


class OutputTransaction:
    """One transactional producer; a ``BatchParticipant`` whose batch is one Kafka transaction.

    Outputs call ``produce``; the transaction begins at the batch's first record and commits in
    ``precommit`` with the batch's input offsets. ``precommit`` raises ``OutputFencedError`` when
    the broker says this instance is a zombie, ``KafkaSinkError`` otherwise; either way nothing
    of the batch is visible.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        flush_timeout_s: float = 60.0,
        instance: str | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self._config = {**DEFAULT_PRODUCER_CONFIG, **config}
        self._flush_timeout_s = flush_timeout_s
        self._instance = instance
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._initialising: Producer | None = None
        self._job: str | None = None
        self._in_transaction = False
        self._failures: list[tuple[str, KafkaError]] = []
        self._topics: set[str] = set()
        # set by an ambiguous commit, cleared by ``recover``
        self.needs_recovery = False
        # the test-only fault point before commit_transaction (service/runtime/crashpoints.py)
        self._faults = CrashPoints()

    @classmethod
    def shared_by(
        cls,
        configs: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        flush_timeout_s: float = 60.0,
        instance: str | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> OutputTransaction:
        """The transaction of outputs ``(topic, producer settings)``; they must share a cluster.

        The first output's settings configure the producer. Outputs to different clusters
        cannot commit atomically, so they are refused here, at start.
        """
        topic, first = configs[0]
        for other_topic, other in configs[1:]:
            if cluster_settings(other) != cluster_settings(first):
                raise ValueError(
                    f"KafkaSinks to {topic!r} and {other_topic!r} name different Kafka clusters "
                    "(bootstrap.servers, security, sasl or ssl settings): a batch's outputs "
                    "commit in one Kafka transaction, so they must write to one cluster"
                )
        return cls(
            first,
            flush_timeout_s=flush_timeout_s,
            instance=instance,
            producer_factory=producer_factory,
        )

    @property
    def transactional_id(self) -> str | None:
        return self._producer_config().get("transactional.id")

    # -- BatchParticipant --------------------------------------------------------------------
    def bind(self, job: str, transactional: bool = True) -> None:
        """Name the transaction after the job; ``recover`` initialises the producer."""
        if self._producer is not None:
            raise RuntimeError("the output transaction is already bound to a running job")
        self._job = job
        # pinned now: a producer made again later keeps the id whatever the environment says
        self._instance = self._instance or instance_id()
        self.needs_recovery = True

    def begin(self, batch_ms: int) -> None:
        if not self._in_transaction:
            self._failures = []

    def precommit(self, batch_ms: int, groups: Sequence[GroupOffsets]) -> None:
        if not self._in_transaction:
            return
        producer = self._require_producer()
        topics = ", ".join(sorted(self._topics))
        try:
            for group in groups:
                offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(group.offsets.items())]
                if offsets:
                    self._send_offsets(producer, offsets, group.group_metadata)
            if self._failures:
                topic, first = self._failures[0]
                raise KafkaSinkError(
                    f"{len(self._failures)} records to {topics} failed ({topic}: {first})"
                ) from KafkaException(first)
            self._faults.reached("commit_transaction")
            self._commit(producer, batch_ms, topics)
        except AmbiguousCommitError:
            self._abandon_producer("the outcome of commit_transaction is unknown")
            self.needs_recovery = True
            raise
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            self._abort_after(error)
            if error is not None and is_fencing(error):
                raise OutputFencedError(
                    f"batch {batch_ms}: transaction to {topics} refused, this instance is "
                    f"fenced ({error})"
                ) from exc
            raise KafkaSinkError(
                f"batch {batch_ms}: transaction to {topics} failed: {exc}"
            ) from exc
        except ProducerStuckError as exc:
            self._abandon_producer(str(exc))
            raise KafkaSinkError(f"batch {batch_ms}: transaction to {topics}: {exc}") from exc
        except KafkaSinkError:
            self._abort_after(None)
            raise
        self._in_transaction = False
        self._topics = set()
        log.debug("kafka_transaction_committed", topics=topics, batch=batch_ms)

    def abort(self, batch_ms: int) -> None:
        if self._in_transaction:
            self._abort_after(None)
            log.info("kafka_transaction_aborted", batch=batch_ms)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._in_transaction:
            try:
                producer.abort_transaction(self._flush_timeout_s)
            except KafkaException as exc:
                log.warning("kafka_transaction_abort_failed", error=str(exc))
            self._in_transaction = False
        producer.flush(self._flush_timeout_s)

    # -- writing -----------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        key: Payload,
        value: Payload,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        """One record of the batch; the transaction begins with the batch's first one.
        ``partition`` None: the producer's partitioner chooses."""
        producer = self._require_producer()
        if not self._in_transaction:
            producer.begin_transaction()
            self._in_transaction = True
            self._topics = set()
        self._topics.add(topic)
        failures = self._failures

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append((topic, err))

        while True:
            try:
                if partition is None:
                    producer.produce(
                        topic, value=value, key=key, headers=headers, on_delivery=delivered
                    )
                else:
                    producer.produce(
                        topic,
                        value=value,
                        key=key,
                        headers=headers,
                        partition=partition,
                        on_delivery=delivered,
                    )
                return
            except BufferError:
                # the local queue is full: let deliveries drain it, then retry this record
                producer.poll(0.1)

    # -- producer ----------------------------------------------------------------------------
    def _producer_config(self) -> dict[str, Any]:
        config = dict(self._config)
        if self._job is not None:
            config.setdefault(
                "transactional.id", transactional_id(self._job, self._instance or instance_id())
            )
        return config

    def _new_producer(self, timeout_s: float | None = None) -> Producer:
        # a producer whose init timed out is initialised again, as librdkafka allows
        producer = self._initialising or self._factory(self._producer_config())
        self._initialising = producer
        timeout = self._flush_timeout_s if timeout_s is None else timeout_s
        try:
            # fences an earlier producer with our id, aborting what it left open (or
            # completing the commit it had sent)
            self._bounded("init_transactions", lambda: producer.init_transactions(timeout))
        except ProducerStuckError:
            self._initialising = None
            raise
        self._initialising = None
        return producer

    def _require_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._new_producer()
        return self._producer

    def _commit(self, producer: Producer, batch_ms: int, topics: str) -> None:
        """``commit_transaction``, retried while librdkafka says a retry may finish it.

        An abortable or fatal error means the transaction did not commit. A timeout that
        outlasts the retries, or a call stuck past its deadline, leaves it unknown:
        ``AmbiguousCommitError``.
        """
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                self._bounded(
                    "commit_transaction",
                    lambda: producer.commit_transaction(self._flush_timeout_s),
                )
                self._failures = []
                return
            except ProducerStuckError as exc:
                raise AmbiguousCommitError(
                    f"batch {batch_ms}: transaction to {topics}: {exc}"
                ) from exc
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and error.retriable()
                if retriable and attempt == _COMMIT_ATTEMPTS:
                    raise AmbiguousCommitError(
                        f"batch {batch_ms}: commit of the transaction to {topics} timed out "
                        f"{attempt} times ({error}): outcome unknown"
                    ) from exc
                if not retriable:
                    raise
                log.warning("kafka_transaction_commit_retry", error=str(error))

    def recover(self) -> None:
        """Initialise a producer if there is none: at start, and after an
        ``AmbiguousCommitError``. Its ``init_transactions`` aborts what a predecessor with our
        id left open, or completes the commit it had sent (the group's offsets then tell which).

        A broker that does not answer within a few seconds raises a retriable timeout (an
        outage): the caller takes ``recover`` again after a pause, on the same producer, so a
        stop is never held up for long by a broker that is down."""
        if self._producer is None:
            self._producer = self._new_producer(min(self._flush_timeout_s, _START_INIT_TIMEOUT_S))

    def settled(self) -> None:
        """The group's offsets were read after ``recover``: batches go on as usual."""
        self.needs_recovery = False

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
        log.warning("kafka_producer_abandoned", reason=why)
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
            log.warning("kafka_producer_fatal", error=str(error))
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
            log.warning("kafka_transaction_abort_failed", error=str(exc))
            self._producer = None
