"""textFileStream's and binaryRecordsStream's source: records of files that appear in a
directory after the job starts.

As Spark's FileInputDStream, files present at start are ignored, names starting with ``.`` or
``_`` are skipped (write elsewhere, then move files in), and each new file is read once, whole,
into the batch during which it was first seen: as lines of text, or as records of a fixed
number of bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def text_lines(path: str) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        return list(fh.read().splitlines())


def fixed_length_records(record_length: int) -> Callable[[str], list[Any]]:
    """A file as records of ``record_length`` bytes; a partial record at its end raises, as
    Hadoop's FixedLengthRecordReader does under Spark."""
    if record_length <= 0:
        raise ValueError(f"recordLength must be > 0, got {record_length}")

    def read(path: str) -> list[Any]:
        with open(path, "rb") as fh:
            data = fh.read()
        if len(data) % record_length:
            raise ValueError(
                f"{path}: {len(data)} bytes is no whole number of {record_length}-byte records "
                "(partial record at the end)"
            )
        return [data[i : i + record_length] for i in range(0, len(data), record_length)]

    return read


class TextFileSource:
    """Polls the directory at each batch time."""

    # Spark's queue and file streams report no input info to listeners (numRecords 0)
    reports_records = False

    def __init__(self, directory: str, read: Callable[[str], list[Any]] = text_lines) -> None:
        self._dir = directory
        self._read = read
        self._seen: set[str] = set()

    def _files(self) -> list[str]:
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        return sorted(
            n
            for n in names
            if not n.startswith((".", "_")) and os.path.isfile(os.path.join(self._dir, n))
        )

    def start(self) -> None:
        self._seen = set(self._files())

    def fill(self, deadline: float) -> None:
        return None

    def take_batch(self, batch_time_ms: int) -> list[Any]:
        records: list[Any] = []
        for name in self._files():
            if name in self._seen:
                continue
            self._seen.add(name)
            records.extend(self._read(os.path.join(self._dir, name)))
        return records

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        return None

    def stop(self) -> None:
        return None
