"""A Kafka job for the transactional sink tests: per key, the running count of its records,
each batch's changed keys written as ``(key, count)`` through a ``KafkaSink``.
Usage: counter_job.py <input topic> <output topic>

Brokers, Redis, job name, group and batch interval come from the runner's settings; the
per-partition rate (``DSTREAMS_MAX_RATE_PER_PARTITION``) bounds each batch.
"""

import sys
from collections.abc import Iterable

from service.config import settings
from service.sinks.kafka import KafkaSink
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils


def update(values: Iterable[int], last: int | None) -> int:
    return (last or 0) + sum(values)


if __name__ == "__main__":
    input_topic, output_topic = sys.argv[1], sys.argv[2]
    conf = settings()

    def create() -> StreamingContext:
        ssc = StreamingContext(conf.batch_interval_seconds, jobName=conf.job_name or "counter")
        ssc.checkpoint(conf.redis_url)
        records = KafkaUtils.createDirectStream(ssc, [input_topic], {})
        ones = records.mapValues(lambda _: 1)  # keyed by the Kafka key: in-partition
        counts = ones.updateStateByKey(update)
        changed = counts.join(ones.reduceByKey(lambda a, b: a)).map(lambda kv: (kv[0], kv[1][0]))
        changed.foreachRDD(KafkaSink(conf.kafka_bootstrap_servers, output_topic))
        return ssc

    ssc = StreamingContext.getOrCreate(conf.redis_url, create)
    ssc.start()
    ssc.awaitTermination()
