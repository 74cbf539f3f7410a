"""Listener events of a Kafka job (issue 11): the direct stream reports what each batch took in
``streamIdToInputInfo`` and ``numRecords``, as Spark's does, and the job's output operations are
listed with their times; the engine's shuffle writers are not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from service.streaming import StreamingContext, StreamingListener
from service.streaming.kafka import KafkaUtils
from tests.support.kafka import produce

WAIT_SECONDS = 60.0


def test_a_kafka_batch_reports_its_input_and_its_outputs(
    kafka_bootstrap: str, redis_url: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=1)
    produce(kafka_bootstrap, topic, 0, [f"w{i % 3}".encode() for i in range(12)])
    completed: list[Any] = []

    class Collector(StreamingListener):
        def onBatchCompleted(self, batchCompleted: Any) -> None:
            completed.append(batchCompleted.batchInfo())

    ssc = StreamingContext(0.3, jobName=f"listened-{uuid.uuid4().hex[:8]}")
    ssc.checkpoint(redis_url)
    ssc.addStreamingListener(Collector())
    lines = KafkaUtils.createDirectStream(ssc, [topic], {"metadata.broker.list": kafka_bootstrap})
    # re-keyed: a shuffle through a repartition topic, whose records are not the job's input
    lines.map(lambda kv: (kv[1], 1)).reduceByKey(lambda a, b: a + b).foreachRDD(lambda r: None)
    ssc.start()
    try:
        give_up = time.monotonic() + WAIT_SECONDS
        while sum(i.numRecords() for i in completed) < 12 or not any(
            o.startTime() >= 0 for i in completed for o in i.outputOperationInfos().values()
        ):
            assert time.monotonic() < give_up, [i.numRecords() for i in completed]
            time.sleep(0.1)
    finally:
        ssc.stop(stopSparkContext=False, stopGraceFully=False)
    assert sum(i.numRecords() for i in completed) == 12  # each input record counted once
    busy = next(i for i in completed if i.numRecords() > 0)
    [(stream_id, described)] = busy.streamIdToInputInfo().items()
    assert described.inputStreamId() == stream_id and described.numRecords() == busy.numRecords()
    assert topic in (described.metadataDescription() or "")
    # one output (the shuffle's writer is the engine's); past the shuffle it runs for batch t
    # in a later batch of the instance, once t is released, and reports its run there
    outputs = [o for i in completed for o in i.outputOperationInfos().values()]
    assert {(o.id(), o.name()) for o in outputs} == {(0, "foreachRDD")}
    ran = [o for o in outputs if o.startTime() >= 0]
    assert ran and all(o.endTime() >= o.startTime() and o.failureReason() is None for o in ran)
