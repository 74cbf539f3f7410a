"""One marker per upstream task and repartition partition per batch, however many parents share
the topic (no broker: sinks are built, not bound)."""

from __future__ import annotations

from service.sources.kafka import KafkaSource
from service.streaming.rdd import Task
from service.streaming.shuffle import RepartitionSink, _mark_once


def sink(tag: int, tasks: list[Task]) -> RepartitionSink:
    template = KafkaSource(
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "g"}, ["in"], batch_interval_s=1.0
    )
    return RepartitionSink(template, "job-repartition-0", 3, tag, lambda batch_ms: tasks)


def test_the_first_writer_of_a_topic_marks_every_upstream_task_once() -> None:
    """A join of two topics tags both sides into one repartition topic: each side's sink used
    to mark its own upstream tasks and, when both read one topic, the same tasks twice."""
    orders, users = [("orders", 0), ("orders", 1)], [("users", 0), ("orders", 1)]
    first, second = sink(0, orders), sink(1, users)
    _mark_once([first, second])
    assert first.marked is not None and second.marked is None
    assert first.marked(500) == {500: [("orders", 0), ("orders", 1), ("users", 0)]}


def test_a_topic_with_one_writer_marks_its_tasks() -> None:
    only = sink(0, [("in", 0)])
    _mark_once([only])
    assert only.marked is not None and only.marked(500) == {500: [("in", 0)]}


def test_a_later_stage_marks_the_batch_times_it_wrote_by_the_tasks_that_released_them() -> None:
    """Past a first shuffle, a writer computes released upstream batches, several or none per
    batch of the instance: it marks each of those times, not the instance's batch."""
    template = KafkaSource(
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "g"}, ["in"], batch_interval_s=1.0
    )
    released = {
        200: [("job-repartition-0", 1)],
        300: [("job-repartition-0", 1), ("job-repartition-0", 2)],
    }
    later = RepartitionSink(
        template, "job-repartition-1", 1, 0, lambda t: released[t], first_stage=False
    )
    _mark_once([later])
    assert later.marked is not None and later.marked(500) == {}
    later._written = {t: released[t] for t in (200, 300)}  # what write_batch records
    assert later.marked(500) == released
    later.begin(600)
    assert later.marked(600) == {}
