"""A Redis client from a checkpoint URL: one server, or a Redis Cluster named by any of its nodes.

The URL alone decides, so a job moves from one Redis to Cluster by changing ``REDIS_URL`` (or
its ``checkpoint``) and nothing else. Cluster URLs are redis-py's with ``+cluster`` in the
scheme: ``redis+cluster://[user:password@]host:port[,host:port...][?option=value]`` (and
``rediss+cluster://`` for TLS). One node is enough, the client discovers the others; listing
more lets a start succeed while one of them is down. A cluster has no database number other
than 0.

This module imports nothing of the service, so the commit ledger can share ``AnyRedis``.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

AnyRedis = redis.Redis | RedisCluster

SERVER_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
REDIS_SCHEMES = SERVER_SCHEMES + CLUSTER_SCHEMES


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes when it has a tag (Redis's own rule)."""
    open_at = key.find("{")
    if open_at < 0:
        return None
    close_at = key.find("}", open_at + 1)
    if close_at <= open_at + 1:
        return None
    return key[open_at + 1 : close_at]


def is_redis_url(url: str) -> bool:
    """A checkpoint URL that names a Redis server or cluster (anything else: state in memory)."""
    return url.startswith(REDIS_SCHEMES)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def connect(url: str, **kwargs: Any) -> AnyRedis:
    """A client for ``url``; keyword arguments as for redis-py's ``from_url`` (either class).

    A cluster client asks its startup nodes for the slot map here, so an unreachable cluster
    fails now, not at the first command as a single server's client does.
    """
    if not is_cluster_url(url):
        if not url.startswith(SERVER_SCHEMES):
            raise ValueError(f"not a Redis URL: {url!r} (schemes: {', '.join(REDIS_SCHEMES)})")
        return redis.Redis.from_url(url, **kwargs)
    first, others = split_cluster_url(url)
    if others:
        kwargs["startup_nodes"] = [*kwargs.get("startup_nodes", ()), *others]
    return RedisCluster.from_url(first, **kwargs)


def split_cluster_url(url: str) -> tuple[str, list[ClusterNode]]:
    """``redis+cluster://a:1,b:2/0`` -> (``redis://a:1/0``, [node b:2]): redis-py's URL form
    for the first node, the others as extra startup nodes (redis-py parses one host only)."""
    scheme, rest = url.split("://", 1)
    base = scheme.removesuffix("+cluster")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    addresses = hosts.split(",")
    if not all(addresses):
        raise ValueError(f"Redis Cluster URL {url!r}: empty node address")
    others = [_node(address, url) for address in addresses[1:]]
    return f"{base}://{userinfo}{at}{addresses[0]}{tail}", others


def _node(address: str, url: str) -> ClusterNode:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError(f"Redis Cluster URL {url!r}: node {address!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]")
    node: ClusterNode = ClusterNode(host, int(port))  # type: ignore[no-untyped-call]
    return node
