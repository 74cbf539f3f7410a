"""A real 3-master Redis Cluster from Debian's redis-server, on free loopback ports, no Docker.

It exists so that the ledger's one-script-per-shard commits are tested where cross-slot
scripts are illegal: each node is its own ``redis-server --cluster-enabled yes`` process with
its own directory, joined once by ``redis-cli --cluster create``; a restart keeps ports and
``nodes.conf`` so the same cluster comes back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.devstack.process import (
    Daemon,
    DaemonBacked,
    DevstackError,
    ensure_port_free,
    free_port,
    tail,
)
from service.devstack.redis import find_redis_server


def find_redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise DevstackError("redis-cli not found: install it with `apt-get install -y redis-tools`")
    return found


@dataclass
class ClusterNode(DaemonBacked):
    """One master: its own directory, port, pid file and log."""

    workdir: Path
    port: int
    appendfsync: str

    def __post_init__(self) -> None:
        self._daemon = Daemon(self.workdir / "redis.pid")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout_seconds: float) -> None:
        if self.pid is not None:
            raise DevstackError(f"redis cluster node {self.address} already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ensure_port_free(self.port, f"redis cluster node {self.address}")
        argv = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log_file),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        try:
            self._daemon.launch(
                argv,
                what=f"redis cluster node {self.address}",
                ready=lambda: _command(self.port, "PING") == "True",  # redis-py parses PONG
                timeout_seconds=timeout_seconds,
                output_file=self.workdir / "stdout.log",
                log_file=self.log_file,
                cwd=self.workdir,
            )
        except DevstackError as exc:
            last = tail(self.log_file, 1).split(" # ", 1)[-1].strip()
            raise DevstackError(f"{exc} ({last})" if last else str(exc)) from None

    def stop(self) -> None:
        """SIGTERM makes redis-server fsync its append-only file and exit cleanly."""
        self._daemon.stop(grace_seconds=15)

    def kill(self) -> None:
        self._daemon.kill()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000, so at most 55535) is free as well."""
    for _ in range(1000):
        port = free_port()
        if _bindable(port + 10000):
            return port
    raise DevstackError("redis cluster: found no free port pair (P, P+10000) on 127.0.0.1")


def _bindable(port: int) -> bool:
    if port >= 65536:
        return False
    try:
        ensure_port_free(port, "redis cluster bus")
    except DevstackError:
        return False
    return True


def _command(port: int, *args: str) -> str | None:
    """One command through redis-py; None when the node does not answer."""
    import redis

    client: Any = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)
    try:
        return str(client.execute_command(*args))
    except redis.RedisError:
        return None
    finally:
        client.close()


@dataclass
class RedisClusterServer:
    """Three (by default) masters without replicas; ports are chosen once and kept."""

    workdir: Path
    masters: int = 3
    appendfsync: str = "everysec"
    start_timeout_seconds: float = 30.0
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """One startup node is enough: the client discovers the others."""
        if not self.nodes:
            raise DevstackError("redis cluster: not started yet")
        return f"redis://{self.nodes[0].address}"

    @property
    def address(self) -> str:
        return self.url

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def _ports_file(self) -> Path:
        return self.workdir / "ports.json"

    def start(self) -> None:
        """Start every node; on the first start join them into one cluster. All or nothing."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.nodes:
            self.nodes = [
                ClusterNode(self.workdir / f"node-{port}", port, self.appendfsync)
                for port in self._ports()
            ]
        try:
            for node in self.nodes:
                node.start(self.start_timeout_seconds)
            if not (self.workdir / "created").exists():
                self._create()
            self._wait_cluster_ok()
        except BaseException:
            self.kill()
            raise

    def _ports(self) -> list[int]:
        if self._ports_file().exists():
            ports: list[int] = json.loads(self._ports_file().read_text())["ports"]
            return ports
        ports = []
        while len(ports) < self.masters:
            port = free_cluster_port()
            if port not in ports:
                ports.append(port)
        self._ports_file().write_text(json.dumps({"ports": ports}))
        return ports

    def _create(self) -> None:
        argv = [
            find_redis_cli(),
            "--cluster", "create", *self.addresses,
            "--cluster-replicas", "0",
            "--cluster-yes",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise DevstackError("redis-cli --cluster create did not finish within 60s") from exc
        log = self.workdir / "cluster-create.log"
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise DevstackError(f"redis-cli --cluster create failed ({' '.join(last)}); see {log}")
        (self.workdir / "created").write_text("")

    def _wait_cluster_ok(self) -> None:
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            infos = [_command(node.port, "CLUSTER", "INFO") or "" for node in self.nodes]
            if all("cluster_state:ok" in info for info in infos):
                return
            for node in self.nodes:
                if node.pid is None:
                    raise DevstackError(
                        f"redis cluster node {node.address} exited; see its log: "
                        f"{node.log_file}\n{tail(node.log_file, 5)}"
                    )
            time.sleep(0.2)
        raise DevstackError(
            f"redis cluster on {', '.join(self.addresses)} did not reach cluster_state:ok "
            f"within {self.start_timeout_seconds:.0f}s; see the logs under {self.workdir}"
        )

    def is_running(self) -> bool:
        return bool(self.nodes) and all(node.pid is not None for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def restart(self) -> None:
        self.stop()
        self.start()
