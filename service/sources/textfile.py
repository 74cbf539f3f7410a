"""textFileStream's source: lines of files that appear in a directory after the job starts.

As Spark's FileInputDStream, files present at start are ignored, names starting with ``.`` or
``_`` are skipped (write elsewhere, then move files in), and each new file is read once, whole,
into the batch during which it was first seen.
"""

from __future__ import annotations

import os
from typing import Any


class TextFileSource:
    """Polls the directory at each batch time."""

    # Spark's queue and file streams report no input info to listeners (numRecords 0)
    reports_records = False

    def __init__(self, directory: str) -> None:
        self._dir = directory
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
        lines: list[str] = []
        for name in self._files():
            if name in self._seen:
                continue
            self._seen.add(name)
            with open(os.path.join(self._dir, name), encoding="utf-8") as fh:
                lines.extend(fh.read().splitlines())
        return lines

    def on_batch_persisted(self, batch_time_ms: int) -> None:
        return None

    def stop(self) -> None:
        return None
