"""Session-wide real services for integration and end-to-end tests (started only when asked for)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

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
        topic = name or f"test-{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=30,
        )
        futures[topic].result(timeout=60)
        for _ in range(100):
            metadata = kafka_admin.list_topics(topic, timeout=10)
            described = metadata.topics.get(topic)
            if (
                described is not None
                and described.error is None
                and len(described.partitions) == partitions
            ):
                break
        return topic

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
