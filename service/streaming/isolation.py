"""Failure isolation for Kafka jobs: a record that makes a job function raise cannot stall its
partition.

A batch is computed first without its output operations. If that raises, each task (Kafka
partition) is recomputed alone, and within a failing task the records that make it fail are
found by bisection over prefixes of its records (the shortest failing prefix ends with a
culprit; it is set aside and the search repeats). Every search step starts from the state the
batch started with: the batch's writes are discarded and the tasks' in-process state is
forgotten, so it is re-read from the store, where nothing of the batch has landed.

Each culprit gets one more attempt counted (in Redis). A culprit at the maximum is dead-lettered
and the batch runs without it; a task with a culprit below the maximum is *rewound*: its records
go back to the source, nothing of it is committed, and the next batch reads them again, so a
transient error is retried. The output operations then run once, on the batch that remains.

What cannot be attributed to single records (the records of several partitions only fail
together, e.g. in a global ``reduce``, or an output function raises) counts an attempt for
every record of the batch; records at the maximum are dead-lettered, the rest are rewound. A
failure with no record at all (e.g. a task fails with its records removed) is the job's, not a
record's: its tasks are rewound and the error is returned to the context, as in PySpark.

An outage of Kafka or Redis (``service.runtime.outage``) is nobody's fault: the search stops at
once, no attempt is counted, the whole batch is rewound and ``DependencyUnavailable`` returned.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from service.runtime.outage import DependencyUnavailable, is_outage
from service.state.redis_client import hash_tag

if TYPE_CHECKING:
    from service.sinks.dead_letter import DeadLetterQueue
    from service.streaming.dstream import BatchTime
    from service.streaming.graph import DStreamGraph
    from service.streaming.rdd import Task

log = logging.getLogger(__name__)

# A slot is one input's partition of the batch: (input index, partition index).
Slot = tuple[int, int]
Selection = dict[Slot, list[int]]

# Rounds of whole-batch failures before the batch's remaining records are all rewound.
_MAX_WHOLE_ROUNDS = 3


class RetryBatch(RuntimeError):
    """The batch's outputs failed and its records are handed out again: commit nothing of it,
    and do not fail the job (the records' attempts are counted)."""


@runtime_checkable
class IsolatingSource(Protocol):
    """What isolation needs of ``service.sources.kafka.KafkaSource``."""

    dead_letters: DeadLetterQueue | None

    def raw_records(self, tp: Task) -> list[Any]: ...

    def rewind_partition(self, tp: Task, batch_time_ms: int, keep: Sequence[Any]) -> None: ...


def _dead_letters(source: Any) -> DeadLetterQueue | None:
    return source.dead_letters if isinstance(source, IsolatingSource) else None


def applies(graph: DStreamGraph) -> bool:
    """Isolation is for task-scoped (Kafka) jobs whose sources have dead letters."""
    return graph.task_scoped and any(_dead_letters(i.source) for i in graph.inputs)


class _SlotRecords:
    def __init__(self, source: IsolatingSource, task: Task, elements: list[Any]) -> None:
        self.source = source
        self.task = task
        self.elements = elements
        self.raw = source.raw_records(task)
        if len(self.raw) != len(elements):
            raise RuntimeError(f"{task}: {len(elements)} elements for {len(self.raw)} records")
        self.excluded: set[int] = set()

    @property
    def dlq(self) -> DeadLetterQueue:
        dlq = self.source.dead_letters
        assert dlq is not None
        return dlq

    def kept(self) -> list[int]:
        return [i for i in range(len(self.elements)) if i not in self.excluded]

    def restore_all(self) -> None:
        """Hand every record out again, dead-lettered ones too: the batch that sent them is not
        committed, so they are judged again (the dead-letter topic is at least once)."""
        self.excluded.clear()

    def attempt(self, index: int, exc: BaseException) -> bool:
        """Count an attempt; True when the record is dead-lettered (and left out) now."""
        record = self.raw[index]
        attempts = self.dlq.count_attempt(record)
        if not self.dlq.exhausted(attempts):
            log.warning(
                "record %s/%d/%d failed (attempt %d of %d): %s: %s",
                record.topic,
                record.partition,
                record.offset,
                attempts,
                self.dlq.max_attempts,
                type(exc).__name__,
                exc,
            )
            return False
        self.dlq.send(record, exc, attempts)
        self.excluded.add(index)
        return True


class BatchIsolation:
    """Runs one batch's computation and outputs for ``DStreamGraph.run_batch``."""

    def __init__(self, graph: DStreamGraph) -> None:
        self.graph = graph
        # evaluations of the batch run last (for tests and logs: 1 when nothing failed)
        self.evaluations = 0

    def run(self, bt: BatchTime) -> list[BaseException]:
        """Compute and output the batch; the errors that are the job's, not a record's."""
        graph = self.graph
        job = graph.job_state()
        self.evaluations = 0
        self._bt = bt
        self._base_writes = copy.deepcopy(job.writes)
        self._all_tasks = list(graph.batch_tasks)
        self._taken = {i: inp._taken.get(bt.ms) for i, inp in enumerate(graph.inputs)}
        self._slots: dict[Slot, _SlotRecords] = {}
        for i, inp in enumerate(graph.inputs):
            taken = self._taken[i]
            source = inp.source
            if taken is None or taken[1] is None or _dead_letters(source) is None:
                continue
            for j, (part, task) in enumerate(zip(taken[0], taken[1], strict=True)):
                if task is not None:
                    self._slots[(i, j)] = _SlotRecords(source, task, part)

        try:
            error = self._evaluate(None, reset=False)
            if error is None:
                return self._run_outputs(self._everything(), set(), [])
            rewound, errors = self._search()
            return self._finish(rewound, errors)
        except Exception as exc:
            if not is_outage(exc):
                raise
            return [self._outage(exc)]

    def _outage(self, exc: BaseException) -> DependencyUnavailable:
        """Every record of the batch goes back, none blamed (see the module docstring)."""
        log.warning("batch %d ms: Kafka or Redis unavailable (%s): batch rewound", self._bt.ms, exc)
        for rec in self._slots.values():
            rec.restore_all()
        self._rewind(set(self._slots))
        outage = DependencyUnavailable(f"batch {self._bt.ms} ms: {type(exc).__name__}: {exc}")
        outage.__cause__ = exc
        return outage

    # -- search ------------------------------------------------------------------------------
    def _everything(self) -> Selection:
        return {slot: rec.kept() for slot, rec in self._slots.items()}

    def _search(self) -> tuple[set[Slot], list[BaseException]]:
        failing = [
            slot
            for slot, rec in self._slots.items()
            if rec.elements and self._evaluate({slot: rec.kept()}) is not None
        ]
        if not failing:
            return set(), []  # only the partitions together fail: handled as a whole batch
        rewound: set[Slot] = set()
        errors: list[BaseException] = []
        for slot in failing:
            rec = self._slots[slot]
            empty_error = self._evaluate({slot: []})
            if empty_error is not None:
                log.error("partition %s fails without any of its records", rec.task)
                rewound.add(slot)
                errors.append(empty_error)
                continue
            pending = False
            for index, exc in self._culprits(slot):
                if not rec.attempt(index, exc):
                    pending = True
            if pending:
                rewound.add(slot)
        return rewound, errors

    def _culprits(self, slot: Slot) -> list[tuple[int, BaseException]]:
        """Records of ``slot`` that make it fail, each with the error it caused."""
        remaining = self._slots[slot].kept()
        found: list[tuple[int, BaseException]] = []
        error = self._evaluate({slot: remaining})
        while error is not None:
            # invariant: remaining[:lo] computes, remaining[:hi] fails with ``error``
            lo, hi = 0, len(remaining)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                mid_error = self._evaluate({slot: remaining[:mid]})
                if mid_error is None:
                    lo = mid
                else:
                    hi, error = mid, mid_error
            found.append((remaining.pop(hi - 1), error))
            error = self._evaluate({slot: remaining})
        return found

    def _finish(self, rewound: set[Slot], errors: list[BaseException]) -> list[BaseException]:
        selection = {slot: rec.kept() for slot, rec in self._slots.items() if slot not in rewound}
        error = self._evaluate(selection)
        if error is None:
            return self._run_outputs(selection, rewound, errors)
        return self._whole_batch(error, selection, rewound, errors)

    def _whole_batch(
        self,
        error: BaseException,
        selection: Selection,
        rewound: set[Slot] | None = None,
        errors: list[BaseException] | None = None,
    ) -> list[BaseException]:
        """The failure is not one record's: every record of ``selection`` is a suspect."""
        rewound = set(rewound or ())
        errors = list(errors or ())
        for _ in range(_MAX_WHOLE_ROUNDS):
            if not any(selection.values()):
                # no record left to blame: the job fails, nothing of the batch is committed
                if not errors:
                    errors.append(error)
                rewound.update(selection)
                break
            log.warning(
                "batch %d ms failed on records of several partitions together (%s: %s)",
                self._bt.ms,
                type(error).__name__,
                error,
            )
            for slot, indexes in selection.items():
                rec = self._slots[slot]
                if not all([rec.attempt(i, error) for i in indexes]):
                    rewound.add(slot)
            selection = {
                slot: rec.kept() for slot, rec in self._slots.items() if slot not in rewound
            }
            next_error = self._evaluate(selection)
            if next_error is None:
                return self._run_outputs(selection, rewound, errors)
            error = next_error
        else:
            if not errors:
                errors.append(error)
            rewound.update(selection)
        self._rewind(rewound)
        return errors

    # -- evaluation --------------------------------------------------------------------------
    def _reset(self) -> None:
        """Back to the state the batch started from (nothing of it is in the store yet)."""
        graph = self.graph
        job = graph.job_state()
        job.writes = copy.deepcopy(self._base_writes)
        for stream in graph.streams:
            stream._generated.pop(self._bt.ms, None)
        for task in self._all_tasks:
            graph.forget_task(task)

    def _evaluate(self, selection: Selection | None, *, reset: bool = True) -> BaseException | None:
        """Compute every stream an output needs, without running outputs; the first error.

        ``selection`` keeps, per slot, the indexes of its records; slots not in it are left out
        of the batch (``None``: the batch as taken).
        """
        if reset:
            self._reset()
        self.evaluations += 1
        graph, bt = self.graph, self._bt
        for i, inp in enumerate(graph.inputs):
            taken = self._taken[i]
            if taken is None:
                continue
            parts, tasks = taken
            if (
                selection is None
                or tasks is None
                or not any((i, j) in self._slots for j in range(len(parts)))
            ):
                inp._taken[bt.ms] = ([list(p) for p in parts], tasks)
                continue
            new_parts: list[list[Any]] = []
            new_tasks: list[Task | None] = []
            for j, (part, task) in enumerate(zip(parts, tasks, strict=True)):
                if (i, j) not in self._slots:
                    new_parts.append(list(part))
                    new_tasks.append(task)
                elif (i, j) in selection:
                    new_parts.append([part[k] for k in selection[(i, j)]])
                    new_tasks.append(task)
            inp._taken[bt.ms] = (new_parts, new_tasks)
        try:
            for stream in graph.stage_streams(0):
                if stream._forced and stream._is_valid(bt.ms):
                    stream._get_or_compute(bt)
            for op in graph.stage_outputs(0):
                op.parent._get_or_compute(bt)
        except Exception as exc:
            if is_outage(exc):
                raise  # not the selection's fault: ends the search (``run``)
            return exc
        return None

    def _run_outputs(
        self, selection: Selection, rewound: set[Slot], errors: list[BaseException]
    ) -> list[BaseException]:
        """Run the output operations once on the computed batch.

        An output that raises may have had effects (records in an open transaction): they are
        not repeated in this batch. Every record of the batch gets an attempt, and the whole
        batch is rewound; ``RetryBatch`` tells the context to commit nothing of it.
        """
        for op in self.graph.stage_outputs(0):
            try:
                op.run(self._bt)
            except Exception as exc:
                if is_outage(exc):
                    raise
                log.warning(
                    "batch %d ms: an output failed (%s: %s); every record is retried",
                    self._bt.ms,
                    type(exc).__name__,
                    exc,
                )
                for slot, indexes in selection.items():
                    rec = self._slots[slot]
                    for i in indexes:
                        rec.attempt(i, exc)
                self._rewind(set(self._slots))
                retry = RetryBatch(f"output failed, batch read again: {exc}")
                retry.__cause__ = exc
                return [*errors, retry]
        self._rewind(rewound)
        return errors

    def _rewind(self, rewound: set[Slot]) -> None:
        """Rewound tasks leave the batch: not committed, their records handed out again."""
        graph = self.graph
        tasks: set[Task] = set()
        for slot in sorted(rewound):
            rec = self._slots[slot]
            rec.source.rewind_partition(rec.task, self._bt.ms, [rec.raw[i] for i in rec.kept()])
            tasks.add(rec.task)
        if tasks:
            self._drop_writes(tasks)
            graph.batch_tasks = [t for t in graph.batch_tasks if t not in tasks]
            for task in tasks:
                graph.forget_task(task)
            log.warning("batch %d ms: partitions %s rewound", self._bt.ms, sorted(tasks))

    def _drop_writes(self, tasks: set[Task]) -> None:
        """Writes a failed evaluation left for rewound tasks must not reach the store."""
        job = self.graph.job_state()
        tags = {job.shard(task).tag for task in tasks}
        writes = job.writes

        def ours(name: str) -> bool:
            return hash_tag(name) not in tags

        writes.map_sets = {n: v for n, v in writes.map_sets.items() if ours(n)}
        writes.map_deletes = {n: v for n, v in writes.map_deletes.items() if ours(n)}
        writes.map_drops = {n for n in writes.map_drops if ours(n)}
        writes.map_ttls_ms = {n: v for n, v in writes.map_ttls_ms.items() if ours(n)}
