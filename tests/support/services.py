"""Where the tests' Kafka and Redis come from, in order of preference.

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` in the environment: services someone already runs
   (they cannot be restarted by the tests).
2. A Docker engine that answers ``docker info``: testcontainers.
3. Otherwise the project's own provisioning (``service.devstack``): Kafka jars from Maven
   Central in KRaft mode, redis-server from Debian.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from service.devstack.kafka import KafkaBroker, fetch_jars
from service.devstack.process import default_home
from service.devstack.redis import RedisServer


class ServiceHandle(Protocol):
    """A running service that the fault tests can bounce."""

    @property
    def address(self) -> str: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def restart(self) -> None: ...

    def kill(self) -> None: ...

    @property
    def pid(self) -> int:
        """The server's process id on this host (for SIGSTOP/SIGCONT: a paused server)."""
        ...


class RestartUnsupported(RuntimeError):
    pass


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"],
            capture_output=True,
            timeout=15,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@dataclass
class External:
    """A service given by the environment: usable, never restarted by a test."""

    address: str

    def _refuse(self) -> None:
        raise RestartUnsupported(
            f"{self.address} was given by the environment; tests cannot bounce it"
        )

    def stop(self) -> None:
        self._refuse()

    def start(self) -> None:
        self._refuse()

    def restart(self) -> None:
        self._refuse()

    def kill(self) -> None:
        self._refuse()

    @property
    def pid(self) -> int:
        self._refuse()
        raise AssertionError("unreachable")


@dataclass
class LocalKafka:
    broker: KafkaBroker

    @property
    def address(self) -> str:
        return self.broker.bootstrap_servers

    def stop(self) -> None:
        self.broker.stop()

    def start(self) -> None:
        self.broker.start()

    def restart(self) -> None:
        self.broker.restart()

    def kill(self) -> None:
        self.broker.kill()

    @property
    def pid(self) -> int:
        return _running_pid(self.broker.pid, "the Kafka broker")


@dataclass
class LocalRedis:
    server: RedisServer

    @property
    def address(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def restart(self) -> None:
        self.server.restart()

    def kill(self) -> None:
        self.server.kill()

    @property
    def pid(self) -> int:
        return _running_pid(self.server.pid, "redis-server")


@dataclass
class ContainerService:
    """A testcontainers container; restarting keeps its data but may change the mapped port."""

    container: Any
    address_of: Any

    @property
    def address(self) -> str:
        return str(self.address_of(self.container))

    def stop(self) -> None:
        self.container.get_wrapped_container().stop()

    def start(self) -> None:
        self.container.get_wrapped_container().start()

    def restart(self) -> None:
        self.container.get_wrapped_container().restart()

    def kill(self) -> None:
        self.container.get_wrapped_container().kill()

    @property
    def pid(self) -> int:
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return _running_pid(int(wrapped.attrs["State"]["Pid"]) or None, "the container")


def _running_pid(pid: int | None, what: str) -> int:
    if pid is None:
        raise RuntimeError(f"{what} is not running")
    return pid


def start_kafka(workdir: Path, num_partitions: int = 1) -> tuple[ServiceHandle, Any]:
    """Returns the handle and a finalizer that stops the service."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return External(os.environ["KAFKA_BOOTSTRAP_SERVERS"]), lambda: None
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer("apache/kafka:4.1.0").with_kraft()
        container.with_env("KAFKA_NUM_PARTITIONS", str(num_partitions))
        container.start()
        return ContainerService(container, lambda c: c.get_bootstrap_server()), container.stop
    broker = KafkaBroker(workdir, fetch_jars(default_home()), num_partitions=num_partitions)
    broker.start()
    return LocalKafka(broker), broker.stop


def start_redis(workdir: Path) -> tuple[ServiceHandle, Any]:
    if os.environ.get("REDIS_URL"):
        return External(os.environ["REDIS_URL"]), lambda: None
    if docker_available():
        from testcontainers.redis import RedisContainer

        container = RedisContainer("redis:7").with_command(
            "redis-server --appendonly yes --appendfsync always"
        )
        container.start()

        def url(c: Any) -> str:
            return f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0"

        return ContainerService(container, url), container.stop
    server = RedisServer(workdir, appendonly=True, appendfsync="always")
    server.start()
    return LocalRedis(server), server.stop
