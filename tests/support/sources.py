"""The parts of an ``InputSource`` that in-memory test sources share: the no-op lifecycle, and
``take_batch`` as the flattening of ``take_tasks`` (the engine's per-partition entry point)."""

from __future__ import annotations

from typing import Any


class InMemoryTaskSource:
    def start(self) -> None:
        return None

    def fill(self, deadline: float) -> None:
        return None

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]:
        raise NotImplementedError

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        return [x for _, part in self.take_tasks(batch_time_ms) for x in part]

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        return None

    def stop(self) -> None:
        return None
