r"""
The job under test of the exactly-once harness (tests/e2e): per key, the count, the sum and the
largest of the sequence numbers read, kept with updateStateByKey, and each batch's changed keys
written with their new state to an output topic; and per key a sliding window of the last ten
batches kept by reduceByKeyAndWindow with an inverse function, written every batch.
Usage: keyed_counter.py <input topic> <output topic> [<second output topic> [<window topic>
[<join input topic>]]]

Input records are keyed ``k<N>`` with the per-key sequence number as text for value; the
checker (tests/e2e/support/checker.py) knows that key ``k`` with ``n`` records must end at
``(n, n(n+1)/2, n)``, so any record lost or counted twice shows in the state. Output values are
JSON ``{"count": .., "sum": .., "max": ..}``.

The window holds, per key, the count and the sums of ``seq``, ``seq**2`` and ``seq**3`` of the
records in it: a key's records arrive in order, so a window without loss or double count holds a
run ``a..b`` of its sequence numbers, and the four sums name ``a`` and ``b`` or show that they
are no run (tests/e2e/support/windows.py). It slides every batch, so every committed record is
in the window written with its own batch. Output values are JSON
``{"t": <batch ms>, "count": .., "s1": .., "s2": .., "s3": ..}``.

With a join input topic (to which the producer writes a copy of every input record), each
side's records per key and batch are summed as ``(count, sum of seq)`` by ``reduceByKey``, the
two sides meet in a ``fullOuterJoin`` across the two topics, and ``updateStateByKey`` keeps per
key the totals of both sides, ``((n, n(n+1)/2), (n, n(n+1)/2))`` when nothing was lost or
counted twice on either topic: the shuffled scenarios' cross-topic join (issue 10).

The same job in the two other forms a job takes (docs/jobs.md): keyed_counter_setup.py
(``setup(ssc)``) and keyed_counter_main.py (``main()``); all three share ``build_counter``.

Brokers, Redis, job name, consumer group and batch interval come from the runner's settings.
``E2E_SHUFFLE_INPUT=1`` (test-only) declares the input not partitioned by key, so every keyed
operation shuffles through a repartition topic (tests/e2e/test_shuffle_exactly_once.py).
``session.timeout.ms`` is 6 s so that a killed instance's partitions move on quickly;
``DSTREAMS_MAX_POLL_INTERVAL_MS`` (test-only, optional) lowers ``max.poll.interval.ms`` so that a
stopped instance is evicted from the group within a test; ``E2E_FLUSH_TIMEOUT_S`` (test-only,
optional) lowers the sinks' transaction timeouts, so that a commit the broker does not answer
becomes unknown within a test.
"""

import json
import os
import sys
from collections.abc import Iterable
from datetime import datetime

from service.config import settings
from service.sinks.kafka import KafkaSink
from service.streaming import StreamingContext
from service.streaming.kafka import KafkaUtils

State = tuple[int, int, int]
Sums = tuple[int, int, int, int]  # count, and the sums of seq, seq**2, seq**3
Totals = tuple[int, int]  # count, and the sum of seq
Joined = tuple[Totals, Totals]  # the input topic's totals, the join input topic's
WINDOW_BATCHES = 10  # window length in batches; >= 5 slides, so the window is kept incremental


def update(seqs: Iterable[int], last: State | None) -> State:
    count, total, top = last or (0, 0, 0)
    for seq in seqs:
        count += 1
        total += seq
        top = max(top, seq)
    return (count, total, top)


def to_json(state: State) -> str:
    count, total, top = state
    return json.dumps({"count": count, "sum": total, "max": top}, separators=(",", ":"))


def powers(seq: int) -> Sums:
    return (1, seq, seq * seq, seq * seq * seq)


def add(a: Sums, b: Sums) -> Sums:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def subtract(a: Sums, b: Sums) -> Sums:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


def totals(seq: int) -> Totals:
    return (1, seq)


def add_totals(a: Totals, b: Totals) -> Totals:
    return (a[0] + b[0], a[1] + b[1])


def update_joined(
    pairs: Iterable[tuple[Totals | None, Totals | None]], last: Joined | None
) -> Joined:
    left, right = last or ((0, 0), (0, 0))
    for a, b in pairs:
        if a is not None:
            left = add_totals(left, a)
        if b is not None:
            right = add_totals(right, b)
    return (left, right)


def window_json(t: datetime, sums: Sums) -> str:
    count, s1, s2, s3 = sums
    batch_ms = round(t.timestamp() * 1000)
    return json.dumps({"t": batch_ms, "count": count, "s1": s1, "s2": s2, "s3": s3})


def kafka_params() -> dict[str, object]:
    params: dict[str, object] = {
        "metadata.broker.list": settings().kafka_bootstrap_servers,
        # a SIGKILLed member's partitions move after 6 s, not Kafka's default 45 s (the broker's
        # group.min.session.timeout.ms is 6 s): the fault scenarios run in CI
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }
    max_poll = os.environ.get("DSTREAMS_MAX_POLL_INTERVAL_MS")
    if max_poll:
        params["max.poll.interval.ms"] = int(max_poll)
    if os.environ.get("E2E_SHUFFLE_INPUT") == "1":
        # the shuffled scenarios: every keyed operation goes through a repartition topic
        params["dstreams.partitioned.by.key"] = False
    return params


def topics_from_argv() -> tuple[str, ...]:
    if len(sys.argv) not in (3, 4, 5, 6):
        print(
            "Usage: keyed_counter.py <input topic> <output topic> "
            "[<second output topic> [<window topic> [<join input topic>]]]",
            file=sys.stderr,
        )
        sys.exit(2)
    return tuple(sys.argv[1:])


def sink(topic: str) -> KafkaSink:
    timeout = float(os.environ.get("E2E_FLUSH_TIMEOUT_S", "60"))
    return KafkaSink(settings().kafka_bootstrap_servers, topic, flush_timeout_s=timeout)


def build_counter(
    ssc: StreamingContext,
    input_topic: str,
    output_topic: str,
    second_output: str | None = None,
    window_output: str | None = None,
    join_input: str | None = None,
) -> None:
    """The job's graph: per-key state, and each batch's changed keys to the output topic (and
    the same to a second one through a second KafkaSink), and the per-key window to a third:
    all the sinks commit in one transaction. With ``join_input``, the totals of a join of the
    two input topics as state too."""
    records = KafkaUtils.createDirectStream(ssc, [input_topic], kafka_params())
    # keyed by the Kafka key: grouped within each partition, unless E2E_SHUFFLE_INPUT
    seqs = records.mapValues(int)
    if join_input is not None:
        copies = KafkaUtils.createDirectStream(ssc, [join_input], kafka_params())
        left = seqs.mapValues(totals).reduceByKey(add_totals)
        right = copies.mapValues(lambda v: totals(int(v))).reduceByKey(add_totals)
        # the state is the result: an output operation only makes the stream run, as in Spark
        left.fullOuterJoin(right).updateStateByKey(update_joined).foreachRDD(lambda rdd: None)
    states = seqs.updateStateByKey(update)
    # only the keys of this batch, with their new state
    changed = states.join(seqs.reduceByKey(lambda a, b: a)).map(
        lambda kv: (kv[0], to_json(kv[1][0]))
    )
    changed.foreachRDD(sink(output_topic))
    if second_output is not None:
        changed.foreachRDD(sink(second_output))
    if window_output is not None:
        interval = settings().batch_interval_seconds
        windows = seqs.mapValues(powers).reduceByKeyAndWindow(
            add,
            subtract,
            WINDOW_BATCHES * interval,
            interval,
            filterFunc=lambda kv: kv[1][0] > 0,
        )
        windows.transform(
            lambda t, rdd: rdd.map(lambda kv: (kv[0], window_json(t, kv[1])))
        ).foreachRDD(sink(window_output))


def new_context() -> StreamingContext:
    conf = settings()
    ssc = StreamingContext(conf.batch_interval_seconds, jobName=conf.job_name or "keyed_counter")
    ssc.checkpoint(conf.redis_url)
    return ssc


if __name__ == "__main__":
    topics = topics_from_argv()

    def create() -> StreamingContext:
        ssc = new_context()
        build_counter(ssc, *topics)
        return ssc

    ssc = StreamingContext.getOrCreate(settings().redis_url, create)
    ssc.start()
    ssc.awaitTermination()
