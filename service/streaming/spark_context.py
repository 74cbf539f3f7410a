"""Stand-ins for ``pyspark.SparkContext`` and ``SparkConf``, so ported jobs keep their set-up lines.

There is no cluster: a SparkContext here only builds batches (``parallelize``) and carries the
default parallelism that ``local[N]`` or ``spark.default.parallelism`` asks for.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from service.streaming.rdd import DEFAULT_PARALLELISM, LocalContext

log = logging.getLogger(__name__)

_LOCAL_MASTER = re.compile(r"^local(?:\[(\*|\d+)(?:,\s*\d+)?\])?$")


class SparkConf:
    """Key-value settings with PySpark's builder methods; only a few keys mean anything here."""

    def __init__(self, loadDefaults: bool = True) -> None:
        self._settings: dict[str, str] = {}

    def set(self, key: str, value: Any) -> SparkConf:
        self._settings[key] = str(value)
        return self

    def setAll(self, pairs: Any) -> SparkConf:
        for key, value in pairs:
            self.set(key, value)
        return self

    def setIfMissing(self, key: str, value: Any) -> SparkConf:
        self._settings.setdefault(key, str(value))
        return self

    def setAppName(self, value: str) -> SparkConf:
        return self.set("spark.app.name", value)

    def setMaster(self, value: str) -> SparkConf:
        return self.set("spark.master", value)

    def get(self, key: str, defaultValue: str | None = None) -> str | None:
        return self._settings.get(key, defaultValue)

    def contains(self, key: str) -> bool:
        return key in self._settings

    def getAll(self) -> list[tuple[str, str]]:
        return list(self._settings.items())


def _parallelism_of_master(master: str | None) -> int:
    """``local`` -> 1, ``local[N]`` -> N, ``local[*]`` -> cores; anything else -> our default."""
    if master is None:
        return DEFAULT_PARALLELISM
    match = _LOCAL_MASTER.match(master.strip())
    if match is None:
        log.warning("master %r means nothing without a cluster; using local parallelism", master)
        return DEFAULT_PARALLELISM
    threads = match.group(1)
    if threads is None:
        return 1
    if threads == "*":
        return os.cpu_count() or 1
    return max(1, int(threads))


class SparkContext(LocalContext):
    """``SparkContext(master, appName, conf=...)`` as ported code builds it."""

    _active: SparkContext | None = None

    def __init__(
        self,
        master: str | None = None,
        appName: str | None = None,
        sparkHome: str | None = None,
        pyFiles: Any = None,
        environment: Any = None,
        batchSize: int = 0,
        serializer: Any = None,
        conf: SparkConf | None = None,
        **kwargs: Any,
    ) -> None:
        self._conf = conf if conf is not None else SparkConf()
        self.master = master or self._conf.get("spark.master") or "local[2]"
        self.appName = appName or self._conf.get("spark.app.name") or "dstreams"
        configured = self._conf.get("spark.default.parallelism")
        parallelism = (
            int(configured) if configured is not None else _parallelism_of_master(self.master)
        )
        super().__init__(parallelism)
        SparkContext._active = self

    @classmethod
    def getOrCreate(cls, conf: SparkConf | None = None) -> SparkContext:
        return cls._active if cls._active is not None else cls(conf=conf)

    def getConf(self) -> SparkConf:
        return self._conf

    def setLogLevel(self, logLevel: str) -> None:
        logging.getLogger("service").setLevel(logLevel.upper())

    def setCheckpointDir(self, dirName: str) -> None:
        return None

    def stop(self) -> None:
        if SparkContext._active is self:
            SparkContext._active = None
