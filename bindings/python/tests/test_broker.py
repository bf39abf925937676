"""A node and an emitter sharing a real redis-server: what the emitter publishes reaches the
node's WebSocket clients in order, and once Redis is gone the emitter's calls fail loudly."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator

import pytest

import herald
from _helpers import Client, run
from _redis import RedisServer

#: How long a host call waits for Redis before it fails with BrokerUnavailableError.
REDIS_TIMEOUT_MS = 1000


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.kill()


def broker(redis: RedisServer, prefix: str) -> Dict[str, Any]:
    return {"redis": {"url": redis.url, "prefix": prefix, "timeout_ms": REDIS_TIMEOUT_MS}}


def test_emitter_reaches_node_clients_in_order_and_fails_once_redis_is_killed(
    redis: RedisServer, make_server: Callable[..., herald.Server]
) -> None:
    node = make_server(broker=broker(redis, "py-emitter:"))
    emitter = make_server(listen=False, broker=broker(redis, "py-emitter:"))
    assert emitter.stats()["port"] == 0, "an emitter serves no socket"

    async def body() -> None:
        async with await Client.connect(node.port, sessionId="S") as session, await Client.connect(node.port) as reader:
            await reader.subscribe(channel="news")
            emitter.notify_ai_start("S", {"task": "summarize"})
            for percent in (25, 50, 75):
                emitter.notify_ai_progress("S", {"percent": percent})
            emitter.notify_ai_complete("S", {"summary": "done"})
            for i in range(1, 21):
                emitter.publish("news", {"type": "note", "i": i})

            got = await session.recv_n(5)
            assert [m["type"] for m in got] == ["ai_start"] + ["ai_progress"] * 3 + ["ai_complete"]
            assert [m["progress"]["percent"] for m in got[1:4]] == [25, 50, 75]
            assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]
            assert {m["sessionId"] for m in got} == {"S"}
            notes = await reader.recv_n(20)
            assert [(m["type"], m["i"], m["seq"]) for m in notes] == [("note", i, i) for i in range(1, 21)]

    run(body())

    redis.kill()
    # Until the emitter notices, a call may wait for its timeout; either way it fails.
    calls = [
        lambda: emitter.publish("news", {"type": "note", "i": 0}),
        lambda: emitter.notify_ai_progress("S", {"percent": 99}),
        lambda: emitter.broadcast({"type": "all"}),
    ]
    failures = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        for call in calls:
            with pytest.raises(herald.BrokerUnavailableError) as caught:
                call()
            assert caught.value.status == herald.Status.ERR_UNAVAILABLE
            failures += 1
    assert failures >= len(calls)
    assert emitter.stats()["broker"]["connected"] is False
