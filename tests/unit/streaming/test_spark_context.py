"""Ported set-up code: SparkContext/SparkConf lines keep working, and mean what they meant."""

from __future__ import annotations

import os

import pytest

from service.runtime.clock import ManualClock
from service.streaming import SparkConf, SparkContext, StreamingContext
from service.streaming.testing import run_batches


@pytest.mark.parametrize(
    ("master", "parallelism"),
    [("local", 1), ("local[3]", 3), ("local[*]", os.cpu_count() or 1), ("local[2, 4]", 2)],
)
def test_master_sets_default_parallelism(master: str, parallelism: int) -> None:
    assert SparkContext(master, "app").defaultParallelism == parallelism


def test_conf_parallelism_wins_and_builder_methods_chain() -> None:
    conf = SparkConf().setAppName("t").setMaster("local[4]").set("spark.default.parallelism", 1)
    sc = SparkContext(conf=conf)
    assert (sc.appName, sc.master, sc.defaultParallelism) == ("t", "local[4]", 1)
    assert SparkContext.getOrCreate() is sc
    sc.stop()


def test_streaming_context_uses_the_jobs_spark_context() -> None:
    sc = SparkContext(appName="PythonStreamingQueueStream", master="local[3]")
    ssc = StreamingContext(sc, 0.2, clock=ManualClock())
    assert ssc.sparkContext is sc
    seen: list[list[list[int]]] = []
    ssc.queueStream([sc.parallelize(range(6))]).glom().foreachRDD(
        lambda rdd: seen.append(rdd.collect())
    )
    run_batches(ssc, 1)
    ssc.stop()
    assert seen == [[[0, 1], [2, 3], [4, 5]]]
    sc.stop()
