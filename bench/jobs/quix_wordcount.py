"""The benchmark's job on quixstreams: a stateful count per word (RocksDB + changelog topic).

Settings come from the environment (set by bench/run.py): BENCH_APP_ID (the consumer group),
KAFKA_BOOTSTRAP_SERVERS, BENCH_INPUT, BENCH_OUTPUT, BENCH_STATE_DIR and BENCH_GUARANTEE
(``exactly-once`` or ``at-least-once``). Each record updates the word's count in the state of
its key and sends the new count to the output topic.
"""

from __future__ import annotations

import os
from typing import Any

from quixstreams import Application, State


def count(_value: Any, state: State[Any, Any]) -> str:
    total: int = state.get("count", 0) + 1
    state.set("count", total)
    return str(total)


def main() -> None:
    app = Application(
        broker_address=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        processing_guarantee=os.environ.get("BENCH_GUARANTEE", "exactly-once"),  # type: ignore[arg-type]
        state_dir=os.environ["BENCH_STATE_DIR"],
        loglevel="WARNING",
    )
    source = app.topic(
        os.environ["BENCH_INPUT"], key_deserializer="str", value_deserializer="bytes"
    )
    sink = app.topic(os.environ["BENCH_OUTPUT"], key_serializer="str", value_serializer="str")
    sdf = app.dataframe(source)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
