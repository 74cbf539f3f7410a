"""The benchmark's job on Faust: an agent counting per word in a Table (changelog in Kafka).

Run as ``python bench/jobs/faust_wordcount.py worker``; settings come from the environment
(set by bench/run.py): BENCH_APP_ID (also the consumer group), KAFKA_BOOTSTRAP_SERVERS,
BENCH_INPUT, BENCH_OUTPUT, BENCH_PARTITIONS and BENCH_GUARANTEE (``exactly_once`` or
``at_least_once``). Each record updates the table and sends the word's new count to the output
topic, Faust's idiomatic one-event-at-a-time form; the table keeps Faust's default in-memory
store, backed by its changelog topic.
"""

from __future__ import annotations

import os
from typing import Any

import faust

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="memory://",
    processing_guarantee=os.environ.get("BENCH_GUARANTEE", "exactly_once"),
    consumer_auto_offset_reset="earliest",
    topic_partitions=int(os.environ["BENCH_PARTITIONS"]),
    topic_replication_factor=1,
    web_enabled=False,
)
source = app.topic(os.environ["BENCH_INPUT"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["BENCH_OUTPUT"], key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=int(os.environ["BENCH_PARTITIONS"]))


@app.agent(source)
async def count(stream: Any) -> None:
    async for event in stream.events():
        word = event.key.decode()
        counts[word] += 1
        await sink.send(key=event.key, value=str(counts[word]).encode())


if __name__ == "__main__":
    app.main()
