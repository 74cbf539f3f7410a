"""Clients opened by a test are closed at its end (warnings are errors: no stray sockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest
from redis.cluster import RedisCluster


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@pytest.fixture
def closing() -> Iterator[Callable[[C], C]]:
    opened: list[_Closable] = []

    def track(client: C) -> C:
        opened.append(client)
        return client

    yield track
    for client in reversed(opened):
        close_client(client)


def close_client(client: Any) -> None:
    """RedisCluster.close() can leave node connections open (redis-py): disconnect them too."""
    if isinstance(client, RedisCluster):
        cluster: Any = client
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
    client.close()
