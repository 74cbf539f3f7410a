"""``python -m service reset JOB``: start a job afresh, whole.

A job's state, its ledger (positions, owner epochs), the attempt counts of failing records and
its consumer group's offsets describe one point of its input together. Dropping some of them and
keeping the others is how results go wrong (state from zero but positions kept loses counts;
positions gone but a group offset kept replays outputs as already published), so a reset takes
all of them or nothing: it refuses while the group has members, i.e. while an instance runs.

A job that shuffles through Kafka (``DSTREAMS_SHUFFLE=kafka``) also has consumer groups
``<group>-shuffle-<n>`` and internal topics ``J-repartition-<n>`` holding records of batches the
old state has seen: both are deleted too (the topics are made again at the next start), or the
downstream tasks would read old batches into new state.

Keys of job ``J`` (docs/state-schema.md): ``dstreams:J:meta`` and ``dstreams:J:s<N>:*`` (job
scope), and every key tagged ``{J:<topic>:<partition>}`` (per Kafka partition: state, windows,
meta, ledger, epoch, attempts). Keys of a job whose name merely starts with ``J`` are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from redis.cluster import RedisCluster

from service.commit.ledger import KEY_PREFIX
from service.state.redis_client import AnyRedis, hash_tag

_UNLINK_CHUNK = 500
_ADMIN_TIMEOUT_S = 30.0


class ResetError(RuntimeError):
    """The reset cannot be done (the job is running, or a dependency refused)."""


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def is_job_key(key: str, job: str) -> bool:
    """Whether ``key`` belongs to ``job`` and to no other job (``a`` is not ``a:b``)."""
    tag = hash_tag(key)
    if tag is not None:
        # the tag is job:topic:partition; topics hold no ':', jobs may
        parts = tag.rsplit(":", 2)
        return key.startswith(f"{KEY_PREFIX}:{{") and len(parts) == 3 and parts[0] == job
    rest = key.removeprefix(f"{KEY_PREFIX}:{job}:")
    return rest != key and re.match(r"(meta$|s\d+:)", rest) is not None


def _scan(client: AnyRedis, pattern: str) -> Iterator[bytes]:
    if isinstance(client, RedisCluster):
        # redis-py scans every master of the cluster, each with its own cursor
        cluster: Any = client
        yield from cluster.scan_iter(match=pattern, count=1000)
    else:
        yield from client.scan_iter(match=pattern, count=1000)


def job_keys(client: AnyRedis, job: str) -> list[str]:
    """Every Redis key of ``job``: job scope and per-partition scope."""
    escaped = _glob_escape(job)
    patterns = (f"{KEY_PREFIX}:{escaped}:*", f"{KEY_PREFIX}:{{{escaped}:*")
    found: set[str] = set()
    for pattern in patterns:
        for raw in _scan(client, pattern):
            key = raw.decode()
            if is_job_key(key, job):
                found.add(key)
    return sorted(found)


def _unlink(client: AnyRedis, keys: Iterable[str]) -> None:
    chunk: list[str] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= _UNLINK_CHUNK:
            _unlink_chunk(client, chunk)
            chunk = []
    if chunk:
        _unlink_chunk(client, chunk)


def _unlink_chunk(client: AnyRedis, keys: list[str]) -> None:
    if isinstance(client, RedisCluster):
        for key in keys:  # keys of many slots: one command each
            client.unlink(key)
    else:
        client.unlink(*keys)


@dataclass(frozen=True)
class ResetPlan:
    """What a reset of ``job`` removes; ``group_active`` makes it refuse."""

    job: str
    group: str
    keys: list[str]
    group_exists: bool
    group_active: bool
    # a shuffling job's downstream groups (those that exist) and internal topics
    shuffle_groups: tuple[str, ...] = ()
    shuffle_groups_active: tuple[str, ...] = ()
    internal_topics: tuple[str, ...] = ()

    def check(self) -> None:
        """Refuse while an instance of the job runs: it would write old state back."""
        for group in (self.group, *self.shuffle_groups_active):
            if group == self.group and not self.group_active:
                continue
            raise ResetError(
                f"consumer group {group} has active members: stop every instance of job "
                f"{self.job} before resetting it"
            )

    def describe(self) -> str:
        group = (
            f"consumer group {self.group} and its offsets"
            if self.group_exists
            else f"no consumer group {self.group} (nothing to delete in Kafka)"
        )
        keys = f"{len(self.keys)} Redis keys (state, ledger, epochs, attempts)"
        shuffles = ""
        if self.shuffle_groups or self.internal_topics:
            shuffles = (
                f"; shuffle groups {', '.join(self.shuffle_groups) or '(none)'} and internal "
                f"topics {', '.join(self.internal_topics) or '(none)'}"
            )
        return f"job {self.job}: {keys}; {group}{shuffles}"


def _describe_group(admin: AdminClient, group: str) -> tuple[bool, bool]:
    """(exists, has members) of a consumer group."""
    future = admin.describe_consumer_groups([group], request_timeout=_ADMIN_TIMEOUT_S)[group]
    try:
        description = future.result(timeout=_ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return False, False
        raise ResetError(f"cannot describe consumer group {group}: {exc}") from exc
    state = str(getattr(description.state, "name", description.state)).upper()
    if state == "DEAD":
        return False, False
    return True, bool(description.members)


def _shuffle_parts(admin: AdminClient, job: str, group: str) -> tuple[list[str], list[str]]:
    """The job's downstream consumer groups and repartition topics (service/shuffle/)."""
    internal = re.compile(re.escape(f"{job}-repartition-") + r"\d+")
    downstream = re.compile(re.escape(f"{group}-shuffle-") + r"\d+")
    try:
        topics = admin.list_topics(timeout=_ADMIN_TIMEOUT_S).topics
        listed = admin.list_consumer_groups(request_timeout=_ADMIN_TIMEOUT_S).result(
            timeout=_ADMIN_TIMEOUT_S
        )
    except KafkaException as exc:
        raise ResetError(f"cannot list the job's shuffle groups and topics: {exc}") from exc
    groups = sorted(g.group_id for g in listed.valid if downstream.fullmatch(g.group_id))
    return groups, sorted(t for t in topics if internal.fullmatch(t))


def plan_reset(client: AnyRedis, admin: AdminClient, job: str, group: str) -> ResetPlan:
    exists, active = _describe_group(admin, group)
    groups, topics = _shuffle_parts(admin, job, group)
    described = {g: _describe_group(admin, g) for g in groups}
    return ResetPlan(
        job,
        group,
        job_keys(client, job),
        exists,
        active,
        shuffle_groups=tuple(g for g in groups if described[g][0]),
        shuffle_groups_active=tuple(g for g in groups if described[g][1]),
        internal_topics=tuple(topics),
    )


def _delete_group(admin: AdminClient, group: str) -> None:
    future = admin.delete_consumer_groups([group], request_timeout=_ADMIN_TIMEOUT_S)
    try:
        future[group].result(timeout=_ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not (isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND):
            raise ResetError(f"cannot delete consumer group {group}: {exc}") from exc


def _delete_topics(admin: AdminClient, topics: Iterable[str]) -> None:
    names = list(topics)
    if not names:
        return
    for name, future in admin.delete_topics(names, operation_timeout=_ADMIN_TIMEOUT_S).items():
        try:
            future.result(timeout=_ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not (
                isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            ):
                raise ResetError(f"cannot delete internal topic {name}: {exc}") from exc


def reset_job(client: AnyRedis, admin: AdminClient, plan: ResetPlan) -> None:
    """Delete everything of ``plan``: the group first, so a job started meanwhile cannot mix
    new offsets with old state, then the Redis keys (found anew, in case a batch landed)."""
    plan.check()
    for group in ((plan.group,) if plan.group_exists else ()) + plan.shuffle_groups:
        _delete_group(admin, group)
    _delete_topics(admin, plan.internal_topics)
    _unlink(client, job_keys(client, plan.job))
