"""How shuffled records travel: the Kafka key, the partition, the value and the headers.

The Kafka key is the grouping key's bytes (UTF-8 for text), and the partition is murmur2 of
them as the Java client computes it, so a repartition topic is co-partitioned with any topic
keyed the same way by Java producers, Kafka Streams or kafka-console-producer. Keys must
therefore have bytes that are the same in every process: text, bytes, numbers, booleans, None
and tuples of those. Any other key type is refused loudly when the shuffle meets it.

Values are pickled: a repartition topic is internal to one job, read only by its own instances
(the same trust as its Redis state).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from service.shuffle.alignment import AlignmentState, ShuffleRecord, Task
from service.sinks.partitioner import partition_for as partition_for_bytes

Headers = list[tuple[str, str | bytes | None]]

BATCH_HEADER = "dstreams.shuffle.batch"
ORIGIN_HEADER = "dstreams.shuffle.origin"
MARKER_HEADER = "dstreams.shuffle.through"


class UnshuffleableKey(TypeError):
    """A grouping key with no bytes that are the same in every process."""


def key_bytes(key: Any) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes | bytearray):
        return bytes(key)
    return _stable_repr(key).encode("utf-8", "surrogatepass")


def _stable_repr(key: Any) -> str:
    if key is None or isinstance(key, bool | int | float | str | bytes):
        return repr(key)
    if isinstance(key, tuple):
        return "(" + ",".join(_stable_repr(k) for k in key) + ",)"
    raise UnshuffleableKey(
        f"a key of type {type(key).__name__} cannot be shuffled between instances: its bytes "
        "differ between processes; use text, bytes, numbers or tuples of those as keys"
    )


def partition_for(key: Any, partitions: int) -> int:
    """The Java client's default partition of ``key`` (murmur2, made positive, modulo)."""
    return partition_for_bytes(key_bytes(key), partitions)


def encode_origin(origin: Task) -> bytes:
    return f"{origin[1]}:{origin[0]}".encode()


def decode_origin(raw: bytes) -> Task:
    partition, _, topic = raw.decode().partition(":")
    return topic, int(partition)


def data_record(
    key: Any, payload: Any, batch_ms: int, origin: Task
) -> tuple[bytes, bytes, Headers]:
    """A record of upstream batch ``batch_ms`` grouped by ``key``: Kafka key, value, headers."""
    headers: Headers = [
        (BATCH_HEADER, str(batch_ms).encode()),
        (ORIGIN_HEADER, encode_origin(origin)),
    ]
    return key_bytes(key), pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), headers


def marker_record(batch_ms: int, origin: Task) -> Headers:
    """The headers of "``origin`` is through batch ``batch_ms``" (no key, no value)."""
    return [(MARKER_HEADER, str(batch_ms).encode()), (ORIGIN_HEADER, encode_origin(origin))]


def decode(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> ShuffleRecord:
    """The record read back; raises ValueError for a record no shuffle wrote."""
    found = {k: v for k, v in headers if v is not None}
    origin = found.get(ORIGIN_HEADER)
    if origin is None:
        raise ValueError("not a shuffled record: no origin header")
    through = found.get(MARKER_HEADER)
    if through is not None:
        return ShuffleRecord(decode_origin(origin), int(through), marker=True)
    batch = found.get(BATCH_HEADER)
    if batch is None or value is None:
        raise ValueError("not a shuffled record: no batch header or no value")
    return ShuffleRecord(decode_origin(origin), int(batch), pickle.loads(value))


def encode_state(state: AlignmentState) -> bytes:
    return pickle.dumps(
        (dict(state.through), state.released_ms, state.pending), protocol=pickle.HIGHEST_PROTOCOL
    )


def decode_state(raw: bytes | None) -> AlignmentState:
    if not raw:
        return AlignmentState()
    through, released, pending = pickle.loads(raw)
    return AlignmentState(dict(through), released, tuple(pending))
