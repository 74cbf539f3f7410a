"""Kafka and Redis together, as one local stack that outlives the command that started it.

`python -m service devstack up` leaves both running in the background and writes their
addresses to ``.devstack/env``; `down` stops them by pid; `status` says what runs where.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.devstack.kafka import KafkaBroker, fetch_jars
from service.devstack.process import DevstackError
from service.devstack.redis import RedisServer


@dataclass
class LocalStack:
    home: Path

    @property
    def env_file(self) -> Path:
        return self.home / "env"

    def _kafka(self) -> KafkaBroker:
        workdir = self.home / "kafka"
        jars = fetch_jars(self.home)
        if (workdir / "ports.json").exists():
            return KafkaBroker.attach(workdir, jars)
        return KafkaBroker(workdir, jars, num_partitions=3)

    def _redis(self) -> RedisServer:
        workdir = self.home / "redis"
        if (workdir / "port.json").exists():
            return RedisServer.attach(workdir)
        return RedisServer(workdir)

    def up(self) -> dict[str, str]:
        """Start whatever is not running yet; returns the environment that points at the stack."""
        kafka, redis_server = self._kafka(), self._redis()
        if not redis_server.is_running():
            redis_server.start()
        if not kafka.is_running():
            try:
                kafka.start()
            except DevstackError:
                redis_server.stop()
                raise
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "REDIS_URL": redis_server.url}
        self.env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
        return env

    def down(self) -> None:
        if (self.home / "kafka" / "ports.json").exists():
            self._kafka().stop()
        if (self.home / "redis" / "port.json").exists():
            self._redis().stop()
        self.env_file.unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        lines: dict[str, str] = {}
        if (self.home / "kafka" / "ports.json").exists():
            kafka = self._kafka()
            state = "running" if kafka.is_running() else "stopped"
            lines["kafka"] = f"{state} at {kafka.bootstrap_servers} (log {kafka.log_file})"
        if (self.home / "redis" / "port.json").exists():
            redis_server = self._redis()
            state = "running" if redis_server.is_running() else "stopped"
            lines["redis"] = f"{state} at {redis_server.url} (log {redis_server.log_file})"
        return lines
