"""The service's settings, read once from the environment (prefix ``DSTREAMS_``).

Kafka's and Redis's addresses are also read from the unprefixed ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL`` that container platforms and the dev stack already export. A bad value stops the
service at start with one line naming the variable, instead of failing in the first batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.state.redis_client import is_redis_url

ENV_PREFIX = "DSTREAMS_"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Everything a job needs from its environment; frozen so no code changes it under a job."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        default="localhost:9092",
        min_length=1,
        validation_alias=AliasChoices(
            f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    redis_url: str = Field(
        default="redis://localhost:6379/0",
        validation_alias=AliasChoices(f"{ENV_PREFIX}REDIS_URL", "REDIS_URL"),
    )
    # None: derived from the job name, so two jobs never share a consumer group by accident
    group_id: str | None = Field(default=None, min_length=1)
    batch_interval_seconds: float = Field(default=1.0, gt=0)
    max_rate_per_partition: float | None = Field(default=None, gt=0)
    # None: the job's file or module name
    job_name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    log_level: LogLevel = "INFO"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # loopback unless a pod's probes and scrapes need it on 0.0.0.0
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    # dead letters (docs/dead-letters.md); None: the topic is "<job>-dlq", no size limit
    dlq_topic: str | None = Field(default=None, min_length=1)
    dlq_max_attempts: int = Field(default=3, ge=1)
    max_record_bytes: int | None = Field(default=None, ge=1)
    # SIGTERM/SIGINT: how long the batch in flight may take to commit before the process exits
    # anyway (below Kubernetes' default terminationGracePeriodSeconds of 30)
    shutdown_grace_seconds: float = Field(default=25.0, gt=0)
    # each ledger commit waits for this many Redis replicas (WAIT), and with redis_wait_aof for
    # the AOF fsync too (WAITAOF, Redis 7.2+); docs/exactly-once.md, "Operating Redis"
    redis_wait_replicas: int = Field(default=0, ge=0)
    redis_wait_aof: bool = False
    redis_wait_timeout_ms: int = Field(default=1000, ge=1)
    # keyed shuffles of a Kafka job: "kafka" routes those whose stream is not partitioned by
    # its key through repartition topics, so they group across partitions and instances as in
    # Spark; "partition" groups every one within its input partition (Spark's answer only when
    # a key's records share a partition; docs/semantics.md)
    shuffle: Literal["partition", "kafka"] = "kafka"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not is_redis_url(value):
            raise ValueError(
                "must be a redis://, rediss:// or unix:// URL, or redis+cluster:// for a cluster"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def consumer_group(self, job_name: str) -> str:
        return self.group_id or f"dstreams-{self.job_name or job_name}"


def env_names(field: str) -> list[str]:
    """The environment variables a field is read from, the prefixed one first."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ENV_PREFIX}{field.upper()}"]


def _field_of(loc: str) -> str:
    for name in Settings.model_fields:
        if loc == name or loc in env_names(name):
            return name
    return loc


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read the environment (``overrides`` win); raise ``ConfigError`` naming the bad setting."""
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = str(error["loc"][0]) if error["loc"] else "?"
        name = " / ".join(env_names(_field_of(loc)))
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        raise ConfigError(f"invalid setting {name}: {error['msg']}{shown}") from None


# The settings of the job being run (``python -m service run``, service/runner.py). Module-level
# job code has no other way to receive them; they are set only while the runner runs a job.
_active_settings: Settings | None = None


def active_settings() -> Settings | None:
    """The settings of the job the runner runs, None outside ``python -m service run``."""
    return _active_settings


def settings() -> Settings:
    """The running job's settings; outside ``python -m service run``, read from the environment."""
    return _active_settings if _active_settings is not None else load_settings()


@contextmanager
def running_with(conf: Settings) -> Iterator[None]:
    """``settings()`` returns ``conf`` until the block ends (the runner, around one job)."""
    global _active_settings
    previous, _active_settings = _active_settings, conf
    try:
        yield
    finally:
        _active_settings = previous
