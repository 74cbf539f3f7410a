"""Checkpoint URLs: which name Redis, which a Redis Cluster, and how a cluster URL is read."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_settings
from service.state.redis_client import is_cluster_url, is_redis_url, split_cluster_url


@pytest.mark.parametrize(
    ("url", "redis", "cluster"),
    [
        ("redis://h:6379/0", True, False),
        ("rediss://h:6380", True, False),
        ("unix:///run/redis.sock", True, False),
        ("redis+cluster://h:7000", True, True),
        ("rediss+cluster://h:7000", True, True),
        ("/tmp/checkpoints", False, False),
        ("hdfs://nn/checkpoints", False, False),
        ("cluster://h:7000", False, False),
    ],
)
def test_which_urls_name_redis_and_which_a_cluster(url: str, redis: bool, cluster: bool) -> None:
    assert (is_redis_url(url), is_cluster_url(url)) == (redis, cluster)


def _nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    first, others = split_cluster_url(url)
    return first, [(n.host, n.port) for n in others]


def test_one_node_becomes_redis_py_s_url() -> None:
    assert _nodes("redis+cluster://10.0.0.1:7000") == ("redis://10.0.0.1:7000", [])
    assert _nodes("rediss+cluster://u:p%40ss@h:7000/0?ssl_cert_reqs=none") == (
        "rediss://u:p%40ss@h:7000/0?ssl_cert_reqs=none",
        [],
    )


def test_more_nodes_become_startup_nodes() -> None:
    assert _nodes("redis+cluster://user:pw@a:7000,b:7001,[::1]:7002?socket_timeout=2") == (
        "redis://user:pw@a:7000?socket_timeout=2",
        [("b", 7001), ("::1", 7002)],
    )


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://a:7000,", "redis+cluster://a:7000,,b:1", "redis+cluster://a:7000,b"],
)
def test_malformed_node_lists_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="Redis Cluster URL"):
        split_cluster_url(url)


def test_settings_accept_a_cluster_url_and_still_refuse_other_schemes() -> None:
    url = "redis+cluster://127.0.0.1:7000"
    assert load_settings({"redis_url": url}).redis_url == url
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings({"redis_url": "http://127.0.0.1:7000"})
