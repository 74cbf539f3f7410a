"""The repartition topics a job's shuffles write and read: names, creation, purging.

As Kafka Streams does: the service creates them, keeps them with ``retention.ms=-1`` (nothing
may expire before the downstream task read it, however long the job was down) and deletes
what every downstream task has committed past with DeleteRecords, so they do not grow.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

log = structlog.get_logger(__name__)

_LEGAL = re.compile(r"[A-Za-z0-9._-]+")
_TIMEOUT_S = 30.0
TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}


def repartition_topic(job: str, shuffle: int) -> str:
    """``<job>-repartition-<n>``; refused when the job name is no legal topic name part."""
    name = f"{job}-repartition-{shuffle}"
    if not _LEGAL.fullmatch(name) or len(name) > 249:
        raise ValueError(
            f"job name {job!r} (DSTREAMS_JOB_NAME) cannot name its repartition topic: Kafka "
            "topic names take letters, digits, '.', '_' and '-' only, 249 at most"
        )
    return name


def ensure_topic(
    admin: AdminClient, name: str, partitions: int, replication_factor: int = -1
) -> None:
    """Create ``name`` with ``partitions``, or check that it has them.

    A different partition count is refused: records already there were partitioned for the old
    count, so the keys' state would split. ``replication_factor`` -1: the broker's default.
    """
    topic = NewTopic(
        name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(TOPIC_CONFIG),
    )
    future = admin.create_topics([topic], operation_timeout=_TIMEOUT_S)[name]
    try:
        future.result(timeout=_TIMEOUT_S)
        log.info("repartition_topic_created", topic=name, partitions=partitions)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    found = _visible_partitions(admin, name)
    if found != partitions:
        raise ValueError(
            f"repartition topic {name!r} has {found} partitions, the job needs {partitions} "
            "(numPartitions, or the input's partition count, changed): the keys already in it "
            "were partitioned for the old count; `python -m service reset` starts the job afresh"
        )


def _visible_partitions(admin: AdminClient, name: str) -> int:
    """The topic's partition count once the broker's metadata shows it: a topic just created
    (here or by another instance starting at the same moment) is not visible at once, and
    producing to it meanwhile fails."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        metadata = admin.list_topics(name, timeout=_TIMEOUT_S).topics.get(name)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return len(metadata.partitions)
        if time.monotonic() >= deadline:
            error = metadata.error if metadata is not None else None
            raise KafkaException(error or KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        time.sleep(0.2)


class Purger:
    """Deletes what the downstream tasks persisted past, at most once per ``interval_s`` (Kafka
    Streams' ``repartition.purge.interval.ms`` is 30 s): one DeleteRecords for all partitions,
    sent without waiting for its answer, so a batch never waits on it."""

    def __init__(
        self,
        admin: AdminClient,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._interval_s = interval_s
        self._clock = clock
        self._below: dict[tuple[str, int], int] = {}
        self._last = clock()

    def persisted(self, below: Mapping[tuple[str, int], int]) -> None:
        for tp, offset in below.items():
            self._below[tp] = max(offset, self._below.get(tp, 0))
        now = self._clock()
        if now - self._last < self._interval_s:
            return
        self._last = now
        wanted, self._below = self._below, {}
        purge(self._admin, wanted, wait=False)


def purge(admin: AdminClient, below: Mapping[tuple[str, int], int], *, wait: bool = True) -> None:
    """Delete the records below each offset (what the downstream tasks committed past)."""
    wanted = [TopicPartition(t, p, o) for (t, p), o in below.items() if o > 0]
    if not wanted:
        return
    futures = admin.delete_records(wanted, request_timeout=_TIMEOUT_S)
    for tp, future in futures.items():
        if not wait:
            future.add_done_callback(functools.partial(_purged, tp))
            continue
        try:
            future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            _purge_failed(tp, exc)


def _purged(tp: TopicPartition, future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        _purge_failed(tp, exc)


def _purge_failed(tp: TopicPartition, exc: BaseException) -> None:
    # nothing is lost by purging later: the next purge covers these offsets
    log.warning("repartition_purge_failed", partition=f"{tp.topic}[{tp.partition}]", error=str(exc))
