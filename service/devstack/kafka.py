"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) without Docker.

The broker's jars come from Maven Central through Maven (``kafka-pom.xml`` beside this file) and
are cached under ``.devstack/kafka-jars/<version>``; storage is formatted with Kafka's own
``StorageTool``. The broker listens on 127.0.0.1 only, and keeps its data across stop/restart so
fault tests can bounce it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from service.devstack.process import (
    Daemon,
    DaemonBacked,
    DevstackError,
    ensure_port_free,
    free_port,
    tail,
)

KAFKA_VERSION = "4.4.0"
_POM = Path(__file__).with_name("kafka-pom.xml")
_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise DevstackError(f"{tool} not found on PATH: {hint}")
    return path


def fetch_jars(home: Path, version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's jars once with Maven; later calls return the cached directory."""
    jars = home / "kafka-jars" / version
    if (jars / ".complete").exists():
        return jars
    mvn = _require("mvn", "install Maven (apt-get install -y maven) to fetch Kafka's jars")
    _require("java", "install Java 17 (apt-get install -y openjdk-17-jre-headless)")
    staging = jars.with_name(f"{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log = home / "logs" / "kafka-jars-fetch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(_POM),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if result.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        raise DevstackError(f"fetching Kafka {version} jars with Maven failed; see its log: {log}")
    (staging / ".complete").write_text(version)
    shutil.rmtree(jars, ignore_errors=True)
    staging.rename(jars)
    return jars


def _kafka_uuid() -> str:
    """A cluster id in Kafka's format: URL-safe base64 of 16 random bytes, no padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with '-': the command line
    would read it as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class KafkaBroker(DaemonBacked):
    """One local broker. Ports are chosen on first start and kept, so clients survive restarts."""

    workdir: Path
    jars: Path
    port: int | None = None
    controller_port: int | None = None
    num_partitions: int = 1
    heap: str = "512m"
    start_timeout_seconds: float = 90.0
    stop_grace_seconds: float = 30.0
    extra_properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._daemon = Daemon(self.workdir / "broker.pid")

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise DevstackError("Kafka broker: not started yet")
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.workdir / "logs" / "stdout.log"

    def _properties(self) -> str:
        assert self.port is not None and self.controller_port is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": str(self.num_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        props.update(self.extra_properties)
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = _require("java", "install Java 17 (apt-get install -y openjdk-17-jre-headless)")
        return [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{self.jars}/*",
            main_class,
            *args,
        ]

    def _format_storage(self, config: Path) -> None:
        if (self.workdir / "data" / "meta.properties").exists():
            return
        log = self.workdir / "logs" / "format.log"
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _kafka_uuid(),
            "-c",
            str(config),
            "--standalone",
        )
        with log.open("wb") as out:
            result = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
            )
        if result.returncode != 0:
            raise DevstackError(f"Kafka StorageTool format failed; see its log: {log}")

    def start(self) -> None:
        """Start (or restart) the broker and return once an AdminClient gets metadata from it."""
        if self.is_running():
            raise DevstackError(f"Kafka broker already running (pid file {self.pid_file})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        ensure_port_free(self.port, "Kafka broker")
        ensure_port_free(self.controller_port, "Kafka controller")
        config = self.workdir / "server.properties"
        config.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        self._format_storage(config)
        (self.workdir / "ports.json").write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port})
        )
        self._daemon.launch(
            self._java("kafka.Kafka", str(config)),
            what=f"Kafka broker on {self.bootstrap_servers}",
            ready=self._answers,
            timeout_seconds=self.start_timeout_seconds,
            output_file=self.stdout_file,
            log_file=self.log_file,
            cwd=self.workdir,
            env={**os.environ, "KAFKA_HEAP_OPTS": f"-Xmx{self.heap}"},
        )

    def _answers(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers) and metadata.controller_id >= 0

    def stop(self) -> None:
        """Controlled shutdown by pid (SIGTERM), SIGKILL only if it outlives the grace period."""
        self._daemon.stop(self.stop_grace_seconds)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): its data stays, as after a power cut."""
        self._daemon.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def recent_log(self) -> str:
        return tail(self.log_file)

    @classmethod
    def attach(cls, workdir: Path, jars: Path) -> KafkaBroker:
        """The broker a previous process started in `workdir` (for `devstack down`/`status`)."""
        ports = json.loads((workdir / "ports.json").read_text())
        return cls(workdir, jars, port=ports["port"], controller_port=ports["controller_port"])
