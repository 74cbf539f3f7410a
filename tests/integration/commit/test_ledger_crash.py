"""Crash safety of the ledger alone: the connection or the server dies mid-commit, the batch is
retried, and its effect lands exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.commit.ledger import BatchLedger, Outcome, Shard, encode_commit
from service.state.base import StateWrites
from tests.integration.commit.proxy import CuttingProxy
from tests.support.services import ServiceHandle


def _no_client_retry(port: int) -> redis.Redis:
    """The ledger's own retry (tenacity) is what is under test, not redis-py's."""
    return redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _count_batch(shard: Shard, client: redis.Redis, words: list[bytes]) -> StateWrites:
    """A word count computed from the stored state, as the engine does before committing."""
    name = shard.key("s1", "state")
    writes = StateWrites()
    for word in set(words):
        stored = client.hget(name, word)
        writes.set(name, word, str(int(stored or 0) + words.count(word)).encode())
    return writes


@pytest.fixture
def proxy(redis_url: str) -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(_port(redis_url))
    yield cutting
    cutting.close()


@pytest.mark.parametrize(
    ("cut", "expected"), [("reply", Outcome.DUPLICATE), ("request", Outcome.APPLIED)]
)
def test_connection_lost_mid_commit_applies_once(
    redis_url: str,
    proxy: CuttingProxy,
    cut: str,
    expected: Outcome,
    closing: Callable[[redis.Redis], redis.Redis],
) -> None:
    direct = closing(redis.Redis.from_url(redis_url))
    shard = Shard(f"job-{uuid.uuid4().hex[:8]}", "lines", 0)
    ledger = BatchLedger(closing(_no_client_retry(proxy.port)), retry_seconds=20)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 1, 0, 3, _count_batch(shard, direct, [b"a", b"b", b"a"]))

    proxy.cut = cut
    writes = _count_batch(shard, direct, [b"a", b"c"])
    result = ledger.commit_batch(shard, epoch, 2, 3, 5, writes)

    assert proxy.cuts_done == 1  # the first attempt really lost its connection
    # "reply": Redis ran the first attempt, the retry is the DUPLICATE; "request": it did not
    assert result.outcome is expected
    assert result.position is not None
    assert (result.position.next_offset, result.position.batch_id) == (5, 2)
    # the engine, unsure, recomputes the batch from the state it already changed: ignored
    recomputed = _count_batch(shard, direct, [b"a", b"c"])
    assert ledger.commit_batch(shard, epoch, 2, 3, 5, recomputed).outcome is Outcome.DUPLICATE
    assert direct.hgetall(shard.key("s1", "state")) == {b"a": b"3", b"b": b"1", b"c": b"1"}
    assert direct.hget(shard.ledger_key, "applied_batches") == b"2"


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("before", {Outcome.APPLIED}),  # Redis frozen: it never ran the script
        ("after", {Outcome.DUPLICATE}),  # Redis ran the script; its reply is lost
        ("race", {Outcome.APPLIED, Outcome.DUPLICATE}),  # killed right after sending
    ],
)
def test_server_killed_mid_commit_applies_once(
    redis_server: ServiceHandle,
    when: str,
    expected: set[Outcome],
    closing: Callable[[redis.Redis], redis.Redis],
) -> None:
    """SIGKILL between sending the script and reading its reply (appendfsync always): either the
    AOF holds the whole batch and the retry is a DUPLICATE, or it holds none and the retry
    applies. The retry starts while Redis is still down."""
    pid = getattr(getattr(redis_server, "server", None), "pid", None)
    if pid is None:
        pytest.skip("needs the project's own redis-server (killable, with a pid)")
    client = closing(_no_client_retry(_port(redis_server.address)))
    shard = Shard(f"job-{uuid.uuid4().hex[:8]}", "lines", 0)
    ledger = BatchLedger(client, retry_seconds=60)
    epoch = ledger.acquire_epoch(shard)
    ledger.commit_batch(shard, epoch, 1, 0, 2, _count_batch(shard, client, [b"a", b"b"]))

    writes = _count_batch(shard, client, [b"a", b"a", b"c"])
    encoded = encode_commit(shard, epoch, 2, 2, 5, writes)
    script = client.register_script(
        resources.files("service.commit").joinpath("ledger.lua").read_text()
    )
    client.script_load(script.script)
    if when == "before":
        os.kill(pid, signal.SIGSTOP)
    conn: Any = client.connection_pool.get_connection()
    conn.send_command("EVALSHA", script.sha, len(encoded.keys), *encoded.keys, *encoded.args)
    if when == "after":
        observer = redis.Redis.from_url(redis_server.address)
        deadline = time.monotonic() + 10
        while observer.hget(shard.ledger_key, "batch_id") != b"2":
            assert time.monotonic() < deadline, "Redis never ran the script"
            time.sleep(0.001)
        observer.close()
    redis_server.kill()
    conn.disconnect()  # the reply, if any, is never read
    client.connection_pool.release(conn)

    def restart_later() -> None:
        time.sleep(0.3)
        redis_server.start()

    restarter = threading.Thread(target=restart_later)
    restarter.start()
    try:
        result = ledger.commit_batch(shard, epoch, 2, 2, 5, writes)
    finally:
        restarter.join()

    assert result.outcome in expected
    assert result.position is not None and result.position.next_offset == 5
    recomputed = _count_batch(shard, client, [b"a", b"a", b"c"])
    assert ledger.commit_batch(shard, epoch, 2, 2, 5, recomputed).outcome is Outcome.DUPLICATE
    assert client.hgetall(shard.key("s1", "state")) == {b"a": b"3", b"b": b"1", b"c": b"1"}
    assert client.hget(shard.ledger_key, "applied_batches") == b"2"
