"""The input every system reads: N keyed word records on one topic, and the counts they imply.

Words follow a Zipf-like law (weight 1/rank^s) from a fixed seed, so a few keys are hot and most
are cold, as in a real word count, and every run of the same N, seed and vocabulary is the same
input. Records are keyed by their word and partitioned with murmur2 (the Java client's
partitioner, which Faust and quixstreams also use), so all the systems see one key in one
partition.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic


@dataclass(frozen=True)
class Workload:
    records: int
    vocabulary: int = 1000
    zipf_s: float = 1.1
    seed: int = 20240601

    def words(self) -> list[str]:
        """The record keys in produce order."""
        vocab = [f"word{i:04d}" for i in range(self.vocabulary)]
        weights = [1.0 / (rank + 1) ** self.zipf_s for rank in range(self.vocabulary)]
        return random.Random(self.seed).choices(vocab, weights=weights, k=self.records)

    def expected(self, words: list[str]) -> dict[str, int]:
        return dict(Counter(words))


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Best effort: a leftover topic costs disk, not correctness (every run has its own)."""
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone, or never created
            future.result(timeout=60)


def produce(bootstrap: str, topic: str, words: list[str]) -> None:
    """Write every record and return once the broker acknowledged all of them."""
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "enable.idempotence": True,
        }
    )
    for word in words:
        data = word.encode()
        while True:
            try:
                producer.produce(topic, key=data, value=data, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"producing the input failed: {remaining} unsent, {failures[:3]}")
