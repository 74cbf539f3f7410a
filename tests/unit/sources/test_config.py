"""Service settings: where they are read from and how a bad one is reported."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_settings

ALL_VARS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "REDIS_URL",
    "DSTREAMS_KAFKA_BOOTSTRAP_SERVERS",
    "DSTREAMS_REDIS_URL",
    "DSTREAMS_GROUP_ID",
    "DSTREAMS_BATCH_INTERVAL_SECONDS",
    "DSTREAMS_MAX_RATE_PER_PARTITION",
    "DSTREAMS_JOB_NAME",
    "DSTREAMS_LOG_LEVEL",
    "DSTREAMS_METRICS_PORT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ALL_VARS:
        monkeypatch.delenv(var, raising=False)


def test_unprefixed_addresses_are_read_and_prefixed_ones_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "plain:9092")
    monkeypatch.setenv("REDIS_URL", "redis://plain:6379/1")
    conf = load_settings()
    assert conf.kafka_bootstrap_servers == "plain:9092"
    assert conf.redis_url == "redis://plain:6379/1"
    monkeypatch.setenv("DSTREAMS_KAFKA_BOOTSTRAP_SERVERS", "prefixed:9092")
    assert load_settings().kafka_bootstrap_servers == "prefixed:9092"


def test_prefixed_settings_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSTREAMS_BATCH_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("DSTREAMS_MAX_RATE_PER_PARTITION", "1000")
    monkeypatch.setenv("DSTREAMS_LOG_LEVEL", "debug")
    monkeypatch.setenv("DSTREAMS_METRICS_PORT", "9100")
    conf = load_settings()
    assert conf.batch_interval_seconds == 0.5
    assert conf.max_rate_per_partition == 1000.0
    assert conf.log_level == "DEBUG"
    assert conf.metrics_port == 9100


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("DSTREAMS_BATCH_INTERVAL_SECONDS", "0", "DSTREAMS_BATCH_INTERVAL_SECONDS"),
        ("DSTREAMS_BATCH_INTERVAL_SECONDS", "soon", "DSTREAMS_BATCH_INTERVAL_SECONDS"),
        ("DSTREAMS_MAX_RATE_PER_PARTITION", "-3", "DSTREAMS_MAX_RATE_PER_PARTITION"),
        ("DSTREAMS_METRICS_PORT", "70000", "DSTREAMS_METRICS_PORT"),
        ("DSTREAMS_LOG_LEVEL", "chatty", "DSTREAMS_LOG_LEVEL"),
        ("REDIS_URL", "http://nope", "REDIS_URL"),
        ("DSTREAMS_JOB_NAME", "has spaces", "DSTREAMS_JOB_NAME"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, named: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert named in message
    assert message.startswith("invalid setting ")


def test_settings_are_frozen() -> None:
    conf = load_settings()
    with pytest.raises(ValueError):
        conf.batch_interval_seconds = 2.0


def test_consumer_group_defaults_to_the_job_name() -> None:
    assert load_settings().consumer_group("wc") == "dstreams-wc"
    assert load_settings({"group_id": "g"}).consumer_group("wc") == "g"


def test_ledger_durability_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.streaming.context import ledger_durability

    for name in ("REPLICAS", "AOF", "TIMEOUT_MS"):
        monkeypatch.delenv(f"DSTREAMS_REDIS_WAIT_{name}", raising=False)
    assert ledger_durability() == {"wait_replicas": 0, "wait_aof": False, "wait_timeout_ms": 1000}
    monkeypatch.setenv("DSTREAMS_REDIS_WAIT_REPLICAS", "1")
    monkeypatch.setenv("DSTREAMS_REDIS_WAIT_AOF", "true")
    monkeypatch.setenv("DSTREAMS_REDIS_WAIT_TIMEOUT_MS", "250")
    assert ledger_durability() == {"wait_replicas": 1, "wait_aof": True, "wait_timeout_ms": 250}
