"""Provisioning fails loudly and cleanly: one line naming what failed, no process left behind."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from service.devstack.kafka import KafkaBroker, fetch_jars
from service.devstack.process import DevstackError, default_home, pid_alive


def test_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = KafkaBroker(tmp_path, fetch_jars(default_home()), port=port)
        with pytest.raises(
            DevstackError, match=rf"Kafka broker: port 127.0.0.1:{port} is already in use"
        ):
            broker.start()
    assert not broker.is_running()


def test_broker_that_does_not_come_up_in_time_is_stopped(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, fetch_jars(default_home()), start_timeout_seconds=0.5)
    expected = r"did not come up within 0s; see its log: .*server\.log"
    with pytest.raises(DevstackError, match=expected):
        broker.start()
    assert broker.pid is None
    assert not broker.pid_file.exists()


def test_stop_and_start_keeps_topics_and_more_partitions_by_default(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, fetch_jars(default_home()), num_partitions=4)
    broker.start()
    try:
        pid = broker.pid
        assert pid is not None
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        # a topic created without a partition count takes the broker's default
        admin.create_topics([NewTopic("defaults")])["defaults"].result(timeout=30)
        broker.stop()
        assert not pid_alive(pid)
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        # the restarted broker may answer before it has loaded every topic's metadata
        deadline = time.monotonic() + 30
        while "defaults" not in (topics := admin.list_topics(timeout=10).topics):
            assert time.monotonic() < deadline, f"topic lost across the restart: {topics}"
            time.sleep(0.2)
        assert len(topics["defaults"].partitions) == 4
    finally:
        broker.stop()
    assert not broker.is_running()
