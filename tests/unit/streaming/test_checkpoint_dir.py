"""A directory checkpoint is durable (issue 11): ``ssc.checkpoint("/some/dir")`` keeps the state
in a SQLite file there, so a second run of a local job goes on from the first's state, as
Spark's does; under ``python -m service run`` the service's Redis wins over the directory."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings, running_with
from service.runtime.clock import ManualClock
from service.state.sqlite_store import FILE_NAME, SQLiteStateStore
from service.streaming import StreamingContext
from service.streaming.testing import run_batches

Counts = list[list[tuple[str, int]]]


def run_counts(directory: Path, batches: Counts) -> Counts:
    """One run of a local word count checkpointed to ``directory``: each batch's counts."""
    seen: list[list[tuple[str, int]]] = []

    def create() -> StreamingContext:
        ssc = StreamingContext(0.5, clock=ManualClock(), defaultParallelism=1, jobName="local")
        ssc.checkpoint(str(directory))
        counts = ssc.queueStream(batches).updateStateByKey(lambda new, old: sum(new, old or 0))
        counts.foreachRDD(lambda rdd: seen.append(sorted(rdd.collect())))
        return ssc

    ssc = StreamingContext.getOrCreate(str(directory), create)
    run_batches(ssc, len(batches))
    ssc.stop(stopSparkContext=False, stopGraceFully=False)
    return seen


def test_a_second_run_goes_on_from_the_first_runs_state(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoint"
    assert run_counts(directory, [[("a", 1)], [("a", 2), ("b", 1)]]) == [
        [("a", 1)],
        [("a", 3), ("b", 1)],
    ]
    assert (directory / FILE_NAME).is_file()
    assert run_counts(directory, [[("a", 10)]]) == [[("a", 13), ("b", 1)]]


def test_the_store_behind_a_directory_is_sqlite(tmp_path: Path) -> None:
    ssc = StreamingContext(0.5, clock=ManualClock(), jobName="local")
    ssc.checkpoint(str(tmp_path))
    assert isinstance(ssc._open_store(), SQLiteStateStore)
    ssc._open_store().close()


def test_under_the_runner_the_services_redis_wins_over_a_directory(tmp_path: Path) -> None:
    conf = Settings(redis_url="redis://redis.example:6379/3")
    with running_with(conf):
        ssc = StreamingContext(0.5, clock=ManualClock(), jobName="operated")
        ssc.checkpoint(str(tmp_path / "ckpt"))
    assert ssc._checkpoint_url == "redis://redis.example:6379/3"
    assert not (tmp_path / "ckpt").exists()
