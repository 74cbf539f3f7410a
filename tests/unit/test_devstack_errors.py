"""Provisioning errors name what is missing, without needing any service."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.devstack import kafka
from service.devstack.process import DevstackError, ensure_port_free


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevstackError, match=r"^mvn not found on PATH: install Maven"):
        kafka.fetch_jars(tmp_path / "home")


def test_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DevstackError, match=f"redis-server: port 127.0.0.1:{port} is already"):
            ensure_port_free(port, "redis-server")


def test_cluster_ids_never_look_like_options() -> None:
    ids = [kafka._kafka_uuid() for _ in range(5000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
