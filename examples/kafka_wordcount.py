r"""
Counts words in UTF8 encoded, '\n' delimited text read from a Kafka topic, keeps the running
count of every word in Redis and writes the new count of each word seen in a batch to an output
topic (key: the word, value: its count as text).
Usage: kafka_wordcount.py [<input topic> [<output topic>]]
  (defaults: wordcount-input and wordcount-output)

Brokers, Redis, the consumer group and the batch interval come from the environment
(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, DSTREAMS_GROUP_ID, DSTREAMS_BATCH_INTERVAL_SECONDS):
   `$ python -m service run examples/kafka_wordcount.py`
and feed it with
   `$ python examples/produce_lines.py wordcount-input`
   `$ kafka-console-consumer.sh --topic wordcount-output --property print.key=true ...`

The PySpark original (direct_kafka_wordcount.py) prints per-batch counts; this one keeps them
with updateStateByKey and, like recoverable_network_wordcount.py, builds its context with
StreamingContext.getOrCreate so a restarted job carries on with the counts kept in Redis.
Kafka offsets are committed only after a batch's counts are in Redis and in the output topic.
"""

import sys
from collections.abc import Iterable

from service.config import settings
from service.sinks.kafka import KafkaSink
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils

if __name__ == "__main__":
    if len(sys.argv) > 3:
        print("Usage: kafka_wordcount.py [<input topic> [<output topic>]]", file=sys.stderr)
        sys.exit(-1)
    topic = sys.argv[1] if len(sys.argv) > 1 else "wordcount-input"
    output_topic = sys.argv[2] if len(sys.argv) > 2 else "wordcount-output"
    conf = settings()

    def updateFunc(new_values: Iterable[int], last_sum: int | None) -> int:
        return sum(new_values) + (last_sum or 0)

    def createContext() -> StreamingContext:
        # Built afresh only the first time; getOrCreate then restores the counts from Redis.
        ssc = StreamingContext(
            conf.batch_interval_seconds, jobName=conf.job_name or "kafka_wordcount"
        )
        ssc.checkpoint(conf.redis_url)
        kvs = KafkaUtils.createDirectStream(
            ssc, [topic], {"metadata.broker.list": conf.kafka_bootstrap_servers}
        )
        lines = kvs.map(lambda x: x[1])
        words = lines.flatMap(lambda line: line.split(" ")).map(lambda word: (word, 1))
        running_counts = words.updateStateByKey(updateFunc)
        # only the words of this batch, with their running counts
        updated = running_counts.join(words.reduceByKey(lambda a, b: a + b)).mapValues(
            lambda counts: counts[0]
        )
        updated.pprint()
        updated.foreachRDD(KafkaSink(conf.kafka_bootstrap_servers, output_topic))
        return ssc

    ssc = StreamingContext.getOrCreate(conf.redis_url, createContext)
    ssc.start()
    ssc.awaitTermination()
