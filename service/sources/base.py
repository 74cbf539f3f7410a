"""The contract between an input source and the batch scheduler.

A source buffers what arrives between batch times and hands one bounded batch per interval to the
scheduler. It learns that a batch is durable (results and state persisted) only through
``on_batch_persisted``; sources with offsets commit them there and nowhere else.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class InputSource(Protocol):
    """One input DStream's feed of records, cut into batches by the scheduler."""

    def start(self) -> None:
        """Connect and begin buffering; called once when the StreamingContext starts."""

    def fill(self, deadline: float) -> None:
        """Buffer records until ``time.monotonic()`` reaches ``deadline``; may return early.

        Sources fed by a background thread (sockets) or by memory (queues) return at once.
        """

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        """Remove and return the records of the batch that ends at ``batch_time_ms``."""

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        """The batch's outputs and state are persisted: offsets up to it may be committed."""

    def stop(self) -> None:
        """Release connections and threads; buffered but unpersisted records are re-read later."""


@runtime_checkable
class PartitionedSource(Protocol):
    """A source whose batch comes already split into partitions (used instead of
    ``take_batch``)."""

    def take_partitions(self, batch_time_ms: int) -> list[list[Any]]: ...


@runtime_checkable
class TaskSource(Protocol):
    """A source that hands out one entry per *task*: ``((topic, partition), records)`` for every
    assigned Kafka partition, also those with no records this batch. A source offering it makes
    the job task-scoped: keyed shuffles group within each task and state is kept per task under
    the task's shard keys (docs/semantics.md, "Kafka inputs: state per partition"). Takes
    precedence over ``take_partitions``; its commit side is ``service.commit.protocol``'s
    ``CommittedSource``."""

    def take_tasks(self, batch_time_ms: int) -> list[tuple[tuple[str, int], list[Any]]]: ...
