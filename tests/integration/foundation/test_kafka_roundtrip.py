"""The broker is real: records survive the round trip exactly once, also across a broker restart."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.support.services import ServiceHandle


def _produce(bootstrap: str, topic: str, count: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for i in range(start, start + count):
        producer.produce(topic, key=str(i % 97).encode(), value=str(i).encode())
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )


def _consume_into(
    consumer: Consumer, seen: list[int], stop: threading.Event, failures: list[BaseException]
) -> None:
    """Consume until ``stop``; a failure is kept in ``failures`` (the test reports it) rather
    than ending the thread unseen while the test waits for records that cannot come."""
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            for message in messages:
                error = message.error()
                if error is not None:
                    # transient conditions (all brokers down, a transport error) are reported
                    # as errors too; librdkafka recovers from every one that is not fatal
                    assert not error.fatal(), error
                    continue
                seen.append(int(message.value()))
            if messages:
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as exc:
                    # After a broker restart the commit can meet COORDINATOR_LOAD_IN_PROGRESS,
                    # or UNKNOWN_MEMBER_ID when the member was expelled meanwhile and rejoins.
                    # A commit not made only means records are read again (the restart test
                    # compares sets; the group test's count check would see any repeat).
                    if exc.args[0].fatal():
                        raise
    except BaseException as exc:  # reported by the test, not lost with the thread
        failures.append(exc)


def _wait_for(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.2)


def test_hundred_thousand_records_each_consumed_once_by_a_group_of_two(
    kafka_bootstrap: str, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=6)
    total = 100_000

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumers = [_consumer(kafka_bootstrap, group) for _ in range(2)]
    seen: list[list[int]] = [[], []]
    failures: list[BaseException] = []
    stop = threading.Event()
    # assignment() would block behind the other thread's consume(): learn it from the callbacks
    assigned = [threading.Event() for _ in consumers]

    def on_assign_of(event: threading.Event) -> Callable[[Consumer, list[TopicPartition]], None]:
        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if partitions:
                event.set()

        return on_assign

    for consumer, event in zip(consumers, assigned, strict=True):
        consumer.subscribe([topic], on_assign=on_assign_of(event))
    threads = [
        threading.Thread(target=_consume_into, args=(c, s, stop, failures), daemon=True)
        for c, s in zip(consumers, seen, strict=True)
    ]
    for thread in threads:
        thread.start()
    # produce once the group is stable, so neither member can take it all before the other joins
    _wait_for(lambda: all(e.is_set() for e in assigned), timeout=60)
    assert all(e.is_set() for e in assigned), "the group did not settle"
    _produce(kafka_bootstrap, topic, total)
    _wait_for(lambda: failures or sum(map(len, seen)) >= total, timeout=120)
    assert not failures, failures
    time.sleep(1)  # anything extra (a duplicate) would arrive now
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    for consumer in consumers:
        consumer.close()

    counts = Counter(seen[0] + seen[1])
    assert len(counts) == total
    assert set(counts) == set(range(total))
    assert max(counts.values()) == 1
    assert seen[0] and seen[1], "both group members should have had partitions"


def test_broker_restart_mid_consume_loses_nothing(
    kafka_broker: ServiceHandle, create_topic: Callable[..., str]
) -> None:
    topic = create_topic(partitions=3)
    first, second = 20_000, 20_000
    _produce(kafka_broker.address, topic, first)

    consumer = _consumer(kafka_broker.address, f"g-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    seen: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=_consume_into, args=(consumer, seen, stop, failures), daemon=True
    )
    thread.start()
    _wait_for(lambda: failures or len(seen) >= 5_000, timeout=60)
    assert not failures, failures
    assert len(seen) >= 5_000

    kafka_broker.restart()  # same data dir and ports: the consumer reconnects by itself
    _produce(kafka_broker.address, topic, second, start=first)
    _wait_for(lambda: failures or len(set(seen)) >= first + second, timeout=120)
    assert not failures, failures
    stop.set()
    thread.join(timeout=30)
    consumer.close()

    assert set(seen) == set(range(first + second))
