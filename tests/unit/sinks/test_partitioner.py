"""murmur2 as Kafka's Java client computes it (the vectors of its Utils.murmur2)."""

import pytest

from service.sinks.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("1", -1993445489),
        ("12", 126087238),
        ("123", -267702483),
        ("1234", -1614185708),
        ("12345", -1188365604),
    ],
)
def test_murmur2_matches_the_java_client(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    assert partition_for(b"1", 7) == (-1993445489 & 0x7FFFFFFF) % 7
    assert {partition_for(f"k{i}".encode(), 4) for i in range(100)} == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        partition_for(b"x", 0)
