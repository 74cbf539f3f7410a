"""Session-wide real services for integration and end-to-end tests (started only when asked for)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.support.kafka import new_topic
from tests.support.services import ServiceHandle, start_kafka, start_redis


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceHandle]:
    handle, finalize = start_kafka(tmp_path_factory.mktemp("kafka"))
    yield handle
    finalize()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ServiceHandle) -> str:
    return kafka_broker.address


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceHandle]:
    handle, finalize = start_redis(tmp_path_factory.mktemp("redis"))
    yield handle
    finalize()


@pytest.fixture(scope="session")
def redis_url(redis_server: ServiceHandle) -> str:
    return redis_server.address


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def create_topic(kafka_admin: AdminClient) -> Callable[..., str]:
    """Create a topic with N partitions and wait until it exists; names are unique per call."""

    def create(
        name: str | None = None, partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        return new_topic(kafka_admin, name, partitions, config)

    return create


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceHandle]:
    """A local 3-master Redis Cluster, or the one ``REDIS_CLUSTER_URL`` names (not bounceable)."""
    import os

    from service.devstack.redis_cluster import RedisClusterServer
    from tests.support.services import External

    if os.environ.get("REDIS_CLUSTER_URL"):
        yield External(os.environ["REDIS_CLUSTER_URL"])
        return
    cluster = RedisClusterServer(tmp_path_factory.mktemp("redis-cluster"), appendfsync="always")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: ServiceHandle) -> str:
    return redis_cluster.address
