"""Kafka and Redis for a benchmark run: the ones named in the environment, else our own.

Our own are the project's devstack classes in ``.devstack/bench/`` (git-ignored), apart from the
demo's stack in ``.devstack/`` so a benchmark never touches its counts; the broker's jars are the
ones ``scripts/setup`` cached. Services started here are stopped when the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.devstack.kafka import KafkaBroker, fetch_jars
from service.devstack.process import default_home
from service.devstack.redis import RedisServer


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis_url: str
    origin: str  # "environment" or "devstack", for the report
    pids: tuple[int, ...] = ()  # the broker's and redis-server's, when they run here


@contextmanager
def services(keep: bool = False) -> Iterator[Services]:
    """Reuse KAFKA_BOOTSTRAP_SERVERS and REDIS_URL when both are set, else start both."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    if bootstrap and redis_url:
        yield Services(bootstrap, redis_url, "environment")
        return
    home = default_home()
    work = home / "bench"
    broker = _broker(work / "kafka", fetch_jars(home))
    redis_server = _redis(work / "redis")
    started: list[KafkaBroker | RedisServer] = []
    try:
        for service in (redis_server, broker):
            if not service.is_running():
                service.start()
                started.append(service)
        pids = tuple(pid for pid in (broker.pid, redis_server.pid) if pid is not None)
        yield Services(broker.bootstrap_servers, redis_server.url, "devstack", pids)
    finally:
        if not keep:
            for service in reversed(started):
                service.stop()


def _broker(workdir: Path, jars: Path) -> KafkaBroker:
    if (workdir / "ports.json").exists():
        return KafkaBroker.attach(workdir, jars)
    return KafkaBroker(workdir, jars)


def _redis(workdir: Path) -> RedisServer:
    # appendfsync everysec, the devstack's default: the ledger's writes reach the AOF as they
    # would on a production Redis that is not configured for `always`.
    if (workdir / "port.json").exists():
        return RedisServer.attach(workdir)
    return RedisServer(workdir)
