"""A real redis-server from Debian's package, started by the project on a free loopback port.

Durability is chosen per use: the fault tests need ``appendonly yes`` with ``appendfsync always``
so that a restart (even after SIGKILL) keeps every acknowledged write.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from service.devstack.process import (
    Daemon,
    DaemonBacked,
    DevstackError,
    ensure_port_free,
    free_port,
)


def find_redis_server(install: bool = True) -> str:
    """The redis-server binary; installs Debian's package when missing and we are root."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "redis-server"],
        ):
            subprocess.run(
                argv, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True
            )
        if shutil.which("redis-server"):
            return "redis-server"
    raise DevstackError("redis-server not found: install it with `apt-get install -y redis-server`")


@dataclass
class RedisServer(DaemonBacked):
    """One local redis-server; the port is chosen on first start and kept across restarts."""

    workdir: Path
    port: int | None = None
    appendonly: bool = True
    appendfsync: str = "everysec"
    start_timeout_seconds: float = 20.0

    def __post_init__(self) -> None:
        self._daemon = Daemon(self.workdir / "redis.pid")

    @property
    def url(self) -> str:
        if self.port is None:
            raise DevstackError("redis-server: not started yet")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> None:
        if self.is_running():
            raise DevstackError(f"redis-server already running (pid file {self.pid_file})")
        binary = find_redis_server()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        ensure_port_free(self.port, "redis-server")
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log_file),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        (self.workdir / "port.json").write_text(json.dumps({"port": self.port}))
        self._daemon.launch(
            argv,
            what=f"redis-server on 127.0.0.1:{self.port}",
            ready=self._answers,
            timeout_seconds=self.start_timeout_seconds,
            output_file=self.workdir / "stdout.log",
            log_file=self.log_file,
            cwd=self.workdir,
        )

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port or 0, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM makes redis-server fsync its append-only file and exit cleanly."""
        self._daemon.stop(grace_seconds=15)

    def kill(self) -> None:
        self._daemon.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    @classmethod
    def attach(cls, workdir: Path) -> RedisServer:
        port = json.loads((workdir / "port.json").read_text())["port"]
        return cls(workdir, port=port)
