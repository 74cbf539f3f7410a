"""The job's view of its StateStore: key names, pickling, and the writes of the batch in flight.

Key schema (see docs/state-schema.md): every job-scoped map of job ``J`` starts with
``dstreams:J:``; stream ``N`` (its index in graph construction order) owns ``dstreams:J:sN:*``.
Under Kafka inputs state is kept per task (Kafka partition): a task's maps are named by its
ledger ``Shard`` (``dstreams:{J:topic:partition}:sN:*``), so every key a batch writes for one
partition shares that partition's Redis Cluster hash tag and one script can apply them together.
"""

from __future__ import annotations

import pickle
from typing import Any

from service.commit.ledger import Shard
from service.state.base import StateStore, StateWrites
from service.streaming.rdd import Task

PICKLE_PROTOCOL = 5
SCHEMA_VERSION = 1


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class Scope:
    """Where one stream's state lives: the job (``task`` None) or one Kafka task."""

    def __init__(self, job: JobState, task: Task | None) -> None:
        self.job = job
        self.task = task

    def state_name(self, stream_id: int) -> str:
        return self.job.state_name(stream_id, self.task)

    def slice_name(self, stream_id: int, batch_ms: int) -> str:
        return self.job.slice_name(stream_id, batch_ms, self.task)

    def meta(self) -> dict[str, int]:
        """The scope's meta fields (the task's are read from the store the first time)."""
        return self.job.meta(self.task)

    def set_meta(self, field: str, value: int) -> None:
        self.job.set_meta(field, value, self.task)


class JobState:
    """Names the maps of one job and collects one batch's writes for a single commit."""

    def __init__(self, store: StateStore, job: str) -> None:
        self.store = store
        self.job = job
        self.writes = StateWrites()
        self._meta: dict[bytes, bytes] = {}
        # task -> its meta map's fields, read lazily, dropped by forget_task
        self._task_meta: dict[Task, dict[bytes, bytes]] = {}

    @property
    def prefix(self) -> str:
        """Every job-scoped map of this job, and no other job's, starts with this."""
        return f"dstreams:{self.job}:"

    @property
    def meta_name(self) -> str:
        return f"dstreams:{self.job}:meta"

    def shard(self, task: Task) -> Shard:
        return Shard(self.job, task[0], task[1])

    def task_meta_name(self, task: Task) -> str:
        return self.shard(task).key("meta")

    def slice_name(self, stream_id: int, batch_ms: int, task: Task | None = None) -> str:
        if task is not None:
            return self.shard(task).key(f"s{stream_id}", "slice", str(batch_ms))
        return f"dstreams:{self.job}:s{stream_id}:slice:{batch_ms}"

    def slice_index_name(self, stream_id: int, task: Task | None = None) -> str:
        """The batch times whose slices of stream ``stream_id`` are stored (one field each)."""
        if task is not None:
            return self.shard(task).key(f"s{stream_id}", "slices")
        return f"dstreams:{self.job}:s{stream_id}:slices"

    def state_name(self, stream_id: int, task: Task | None = None) -> str:
        if task is not None:
            return self.shard(task).key(f"s{stream_id}", "state")
        return f"dstreams:{self.job}:s{stream_id}:state"

    def scope(self, task: Task | None) -> Scope:
        return Scope(self, task)

    def load_meta(self) -> dict[str, int]:
        self._meta = self.store.load_map(self.meta_name)
        return {k.decode(): int(v) for k, v in self._meta.items()}

    def meta(self, task: Task | None = None) -> dict[str, int]:
        fields = self._meta if task is None else self._load_task_meta(task)
        return {k.decode(): int(v) for k, v in fields.items()}

    def _load_task_meta(self, task: Task) -> dict[bytes, bytes]:
        fields = self._task_meta.get(task)
        if fields is None:
            fields = self.store.load_map(self.task_meta_name(task))
            self._task_meta[task] = fields
        return fields

    def set_meta(self, field: str, value: int, task: Task | None = None) -> None:
        key = field.encode()
        encoded = str(value).encode()
        if task is None:
            fields, name = self._meta, self.meta_name
        else:
            fields, name = self._load_task_meta(task), self.task_meta_name(task)
        if fields.get(key) != encoded:
            fields[key] = encoded
            self.writes.set(name, key, encoded)

    def forget_task(self, task: Task) -> None:
        """Drop what is cached for ``task``: its next batch re-reads the store."""
        self._task_meta.pop(task, None)

    def commit(self) -> None:
        """Apply the batch's writes in one store transaction and start a fresh set."""
        writes, self.writes = self.writes, StateWrites()
        if not writes.is_empty():
            self.store.commit(writes)
