"""The Redis is real: Lua scripts run server-side, and acknowledged writes survive a restart."""

from __future__ import annotations

import uuid

import redis

from tests.support.services import ServiceHandle

_CHECK_AND_SET = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  return {0, current or false}
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'applied', 1)
return {1, ARGV[2]}
"""


def test_lua_script_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key, counter = f"t:{uuid.uuid4().hex}", f"t:{uuid.uuid4().hex}"
    client.set(key, "v1")
    script = client.register_script(_CHECK_AND_SET)

    assert script(keys=[key, counter], args=["v1", "v2"]) == [1, b"v2"]
    assert script(keys=[key, counter], args=["v1", "v3"]) == [0, b"v2"]
    assert client.get(key) == b"v2"
    assert client.hget(counter, "applied") == b"1"

    client.script_flush()  # the server forgot it: redis-py reloads on NOSCRIPT
    assert script(keys=[key, counter], args=["v2", "v4"]) == [1, b"v4"]


def test_acknowledged_writes_survive_kill_and_restart(redis_server: ServiceHandle) -> None:
    client = redis.Redis.from_url(redis_server.address)
    key = f"t:{uuid.uuid4().hex}"
    client.hset(key, mapping={str(i): i for i in range(1000)})
    client.close()

    redis_server.kill()  # no clean shutdown: only appendfsync always keeps the last writes
    redis_server.start()

    client = redis.Redis.from_url(redis_server.address)
    assert client.hlen(key) == 1000
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
