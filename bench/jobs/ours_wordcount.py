"""The benchmark's job on kafka-dstreams: a running count per word, kept in Redis.

Run by ``python -m service run bench/jobs/ours_wordcount.py <input> <output>``; the runner
supplies the context (batch interval ``DSTREAMS_BATCH_INTERVAL_SECONDS``, Redis checkpoint,
consumer group). Records are keyed by their word. The shape is examples/kafka_wordcount.py's:
``updateStateByKey`` folds the batch's (word, 1) pairs into the running counts (committed with
the batch's offsets through the ledger), and the new count of every word seen in the batch goes
to the output topic in the batch's Kafka transaction (KafkaSink).

The pairs reach ``updateStateByKey`` unreduced, as in examples/kafka_wordcount.py. Records
are keyed by their word, so grouping by the Kafka key needs no shuffle; ``BENCH_SHUFFLE=1``
(the ``*-shuffle`` rows) declares the input not partitioned by key, so it goes through a
repartition topic: the cost of a shuffle on the same job and input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from operator import add

from service.config import settings
from service.sinks.kafka import KafkaSink
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils


def _running_count(new_values: Iterable[int], last: int | None) -> int:
    return sum(new_values) + (last or 0)


def setup(ssc: StreamingContext) -> None:
    input_topic, output_topic = sys.argv[1], sys.argv[2]
    servers = settings().kafka_bootstrap_servers
    params: dict[str, object] = {"metadata.broker.list": servers}
    if os.environ.get("BENCH_SHUFFLE") == "1":
        # the shuffled rows: the pairs go through a repartition topic as if the input were not
        # partitioned by its key (docs/semantics.md, "No needless shuffle")
        params["dstreams.partitioned.by.key"] = False
    records = KafkaUtils.createDirectStream(ssc, [input_topic], params)
    pairs = records.mapValues(lambda _: 1)
    running = pairs.updateStateByKey(_running_count)
    batch_counts = pairs.reduceByKey(add)
    updated = running.join(batch_counts).mapValues(lambda counts: counts[0])
    updated.foreachRDD(KafkaSink(servers, output_topic))
