"""Presence through the binding: Server.presence lists a channel's real subscribers (with the
user id and status each set), on one node and across two nodes sharing a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, Iterator

import pytest

import herald
from _helpers import Client, poll_until, run
from _redis import RedisServer


async def next_of(client: Client, kind: str) -> Dict[str, Any]:
    while True:
        message = await client.recv()
        if message["type"] == kind:
            return message


def test_presence_lists_members_with_their_user_and_status(make_server: Callable[..., herald.Server]) -> None:
    server = make_server()

    async def body() -> None:
        async with await Client.connect(server.port, userId="ann") as ann, await Client.connect(server.port) as anon:
            await ann.subscribe(channel="room")
            await anon.subscribe(channel="room")
            await anon.send({"type": "presence", "channel": "room", "status": "away"})
            await next_of(anon, "presence")

            presence = await asyncio.to_thread(server.presence, "room")
            assert isinstance(presence, herald.Presence)
            assert presence.channel == "room"
            assert (presence.total, presence.truncated) == (2, False)
            by_id = {m.client_id: m for m in presence.members}
            assert by_id[ann.client_id] == herald.PresenceMember(ann.client_id, "ann", "online")
            assert by_id[anon.client_id] == herald.PresenceMember(anon.client_id, None, "away")

        # Both closed: nobody is left.
        poll_until(lambda: server.presence("room").total == 0)

    run(body())
    assert server.presence("empty") == herald.Presence("empty", (), 0, False)
    with pytest.raises(herald.InvalidArgumentError):
        server.presence("")


def test_presence_off_is_an_error(make_server: Callable[..., herald.Server]) -> None:
    server = make_server(presence={"enabled": False})
    with pytest.raises(herald.InvalidArgumentError):
        server.presence("room")


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.kill()


def test_presence_spans_nodes_through_redis(redis: RedisServer, make_server: Callable[..., herald.Server]) -> None:
    broker = {"redis": {"url": redis.url, "prefix": "py-presence:", "timeout_ms": 1000}}
    a = make_server(broker=broker)
    b = make_server(broker=broker)

    async def body() -> None:
        async with await Client.connect(a.port, userId="ann") as ann, await Client.connect(b.port, userId="bob") as bob:
            await ann.subscribe(channel="room", presence=True)
            await bob.subscribe(channel="room")
            while True:
                event = await next_of(ann, "user_presence")
                if event["data"]["clientId"] == bob.client_id:
                    assert event["action"] == "join"
                    break
            for node in (a, b):
                presence = await asyncio.to_thread(node.presence, "room")
                assert sorted(m.user_id or "" for m in presence.members) == ["ann", "bob"]

    run(body())
