"""The job's view of its StateStore: key names, pickling, and the writes of the batch in flight.

Key schema (see docs/state-schema.md): every map of job ``J`` starts with ``dstreams:J:``;
stream ``N`` (its index in graph construction order) owns ``dstreams:J:sN:*``.
"""

from __future__ import annotations

import pickle
from typing import Any

from service.state.base import StateStore, StateWrites

PICKLE_PROTOCOL = 5
SCHEMA_VERSION = 1


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class JobState:
    """Names the maps of one job and collects one batch's writes for a single commit."""

    def __init__(self, store: StateStore, job: str) -> None:
        self.store = store
        self.job = job
        self.writes = StateWrites()
        self._meta: dict[bytes, bytes] = {}

    @property
    def prefix(self) -> str:
        """Every map of this job, and no other job's, starts with this."""
        return f"dstreams:{self.job}:"

    @property
    def meta_name(self) -> str:
        return f"dstreams:{self.job}:meta"

    def slice_name(self, stream_id: int, batch_ms: int) -> str:
        return f"dstreams:{self.job}:s{stream_id}:slice:{batch_ms}"

    def state_name(self, stream_id: int) -> str:
        return f"dstreams:{self.job}:s{stream_id}:state"

    def load_meta(self) -> dict[str, int]:
        self._meta = self.store.load_map(self.meta_name)
        return {k.decode(): int(v) for k, v in self._meta.items()}

    def set_meta(self, field: str, value: int) -> None:
        key = field.encode()
        encoded = str(value).encode()
        if self._meta.get(key) != encoded:
            self._meta[key] = encoded
            self.writes.set(self.meta_name, key, encoded)

    def commit(self) -> None:
        """Apply the batch's writes in one store transaction and start a fresh set."""
        writes, self.writes = self.writes, StateWrites()
        if not writes.is_empty():
            self.store.commit(writes)
