"""Feeds text lines to a Kafka topic, for kafka_wordcount.py.

Usage: produce_lines.py <topic> [<file>]
  Sends each line of <file> (or of stdin) as one record; KAFKA_BOOTSTRAP_SERVERS names the
  brokers (default localhost:9092). With no file and a terminal on stdin, type lines.
"""

import os
import sys
from collections.abc import Iterable

from confluent_kafka import Producer


def produce_lines(bootstrap_servers: str, topic: str, lines: Iterable[str]) -> int:
    """Send every non-empty line and wait until all are acknowledged; returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all"})
    count = 0
    for line in lines:
        text = line.rstrip("\r\n")
        if not text:
            continue
        producer.produce(topic, value=text.encode("utf-8"))
        producer.poll(0)
        count += 1
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} lines were not acknowledged by Kafka")
    return count


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("Usage: produce_lines.py <topic> [<file>]", file=sys.stderr)
        sys.exit(-1)
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    if len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as f:
            sent = produce_lines(servers, sys.argv[1], f)
    else:
        sent = produce_lines(servers, sys.argv[1], sys.stdin)
    print(f"sent {sent} lines to {sys.argv[1]}", file=sys.stderr)
