"""Every notify/broadcast/publish/send reaches real websockets clients, and only the right ones.

"Only the right ones" is checked with a marker: after the message under test, a marker is
sent to the other client through its own route; the first thing that client receives must be
the marker (so it cannot have received the message under test before it).
"""

from __future__ import annotations

import json
import types
import urllib.request
from typing import Any, Dict

import herald
from _helpers import TIMEOUT, Client, poll_until, run


def http_get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_port_is_the_bound_port(server: herald.Server) -> None:
    assert isinstance(server.port, int)
    assert 0 < server.port < 65536
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=TIMEOUT) as resp:
        assert resp.status == 200


def test_notify_ai_lifecycle_reaches_only_the_session(server: herald.Server) -> None:
    async def body() -> None:
        a = await Client.connect(server.port, sessionId="s-1")
        b = await Client.connect(server.port, sessionId="s-2")
        server.notify_ai_start("s-1", {"prompt": "summarise", "model": "m"})
        server.notify_ai_progress("s-1", {"percent": 10, "text": "héllo ✓"})
        server.notify_ai_progress("s-1", '{"percent": 60}')  # JSON text is accepted too
        server.notify_ai_complete("s-1", {"text": "done", "tokens": 42})
        server.notify_ai_error("s-1", {"message": "late failure", "retryable": False})
        got = await a.recv_n(5)
        assert [m["type"] for m in got] == ["ai_start", "ai_progress", "ai_progress", "ai_complete", "ai_error"]
        assert all(m["sessionId"] == "s-1" for m in got)
        assert got[0]["task"] == {"prompt": "summarise", "model": "m"}
        assert got[1]["progress"] == {"percent": 10, "text": "héllo ✓"}
        assert got[2]["progress"] == {"percent": 60}
        assert got[3]["result"] == {"text": "done", "tokens": 42}
        assert got[4]["error"] == {"message": "late failure", "retryable": False}
        seqs = [m["seq"] for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs
        assert len({m["epoch"] for m in got}) == 1
        assert all(isinstance(m["timestamp"], str) for m in got)

        server.notify_ai_start("s-2", {"marker": True})
        first = await b.recv()
        assert first["type"] == "ai_start" and first["task"] == {"marker": True}, first
        await a.close()
        await b.close()

    run(body())


def test_broadcast_reaches_every_client(server: herald.Server) -> None:
    async def body() -> None:
        clients = [
            await Client.connect(server.port),
            await Client.connect(server.port, userId="u"),
            await Client.connect(server.port, sessionId="s"),
        ]
        server.broadcast({"type": "announcement", "text": "maintenance at 5"})
        server.broadcast({"type": "stamped", "timestamp": "2020-01-01T00:00:00.000Z"})
        for c in clients:
            first, second = await c.recv_n(2)
            assert first["type"] == "announcement" and first["text"] == "maintenance at 5", first
            assert isinstance(first["timestamp"], str)  # added by the core
            assert second == {"type": "stamped", "timestamp": "2020-01-01T00:00:00.000Z"}
            await c.close()

    run(body())


def test_broadcast_to_user_reaches_only_that_user(server: herald.Server) -> None:
    async def body() -> None:
        alice1 = await Client.connect(server.port, userId="alice")
        alice2 = await Client.connect(server.port, userId="alice", sessionId="x")
        bob = await Client.connect(server.port, userId="bob")
        server.broadcast_to_user("alice", {"type": "dm", "text": "hi alice"})
        for c in (alice1, alice2):
            msg = await c.recv()
            assert msg["type"] == "dm" and msg["text"] == "hi alice", msg
            assert msg["channel"] == "user:alice"
            assert isinstance(msg["seq"], int) and isinstance(msg["epoch"], str)
        server.broadcast_to_user("bob", {"type": "marker"})
        first = await bob.recv()
        assert first["type"] == "marker" and first["channel"] == "user:bob", first
        for c in (alice1, alice2, bob):
            await c.close()

    run(body())


def test_publish_reaches_only_channel_subscribers(server: herald.Server) -> None:
    async def body() -> None:
        sub = await Client.connect(server.port)
        other = await Client.connect(server.port)
        reply = await sub.subscribe(channel="news")
        assert reply["channel"] == "news"
        server.publish("news", {"type": "headline", "title": "Herald ships"})
        msg = await sub.recv()
        assert msg["type"] == "headline" and msg["title"] == "Herald ships", msg
        assert msg["channel"] == "news"
        assert isinstance(msg["seq"], int) and isinstance(msg["epoch"], str)

        await other.subscribe(channel="sports")
        server.publish("sports", {"type": "marker"})
        first = await other.recv()
        assert first["type"] == "marker" and first["channel"] == "sports", first
        await sub.close()
        await other.close()

    run(body())


def test_publish_to_session_channel_reaches_session(server: herald.Server) -> None:
    async def body() -> None:
        c = await Client.connect(server.port, sessionId="abc")
        server.publish("session:abc", {"type": "custom", "n": 1})
        msg = await c.recv()
        assert msg["type"] == "custom" and msg["n"] == 1 and msg["channel"] == "session:abc", msg
        await c.close()

    run(body())


def test_send_reaches_only_that_client(server: herald.Server) -> None:
    async def body() -> None:
        a = await Client.connect(server.port)
        b = await Client.connect(server.port)
        assert a.client_id != b.client_id
        server.send(a.client_id, {"type": "private", "text": "for a"})
        msg = await a.recv()
        assert msg["type"] == "private" and msg["text"] == "for a", msg
        server.send(b.client_id, {"type": "marker"})
        first = await b.recv()
        assert first["type"] == "marker", first
        await a.close()
        await b.close()

    run(body())


def test_send_to_unknown_client_raises(server: herald.Server) -> None:
    try:
        server.send("no-such-client", {"type": "x"})
    except herald.UnknownClientError as exc:
        assert isinstance(exc, LookupError)
        assert exc.status == herald.Status.ERR_UNKNOWN_CLIENT
        assert exc.message  # the core's message
    else:
        raise AssertionError("send to an unknown client did not raise")


def test_stats_is_a_dict_matching_http_stats(server: herald.Server) -> None:
    async def body() -> None:
        a = await Client.connect(server.port, userId="alice", sessionId="s")
        b = await Client.connect(server.port)
        stats = server.stats()
        assert isinstance(stats, dict)
        assert stats["activeConnections"] == 2
        assert stats["totalConnections"] >= 2
        ids = {c["id"] for c in stats["clients"]}
        assert ids == {a.client_id, b.client_id}
        by_id: Dict[str, Any] = {c["id"]: c for c in stats["clients"]}
        assert by_id[a.client_id]["userId"] == "alice"
        assert by_id[a.client_id]["sessionId"] == "s"
        for key in ("messagesSent", "messagesReceived", "evictions"):
            assert isinstance(stats[key], int), key
        http = http_get_json(server.port, "/api/ws/stats")
        assert set(http) == set(stats)
        assert {c["id"] for c in http["clients"]} == ids
        await a.close()
        await b.close()

    run(body())


def test_history_returns_published_messages(make_server: Any) -> None:
    server = make_server(history={"size": 10})
    assert server.history("news") == []
    for i in range(3):
        server.publish("news", {"type": "headline", "n": i})
    # publish only enqueues; history is read directly, so it catches up (bounded wait).
    history = poll_until(lambda: (lambda h: h if len(h) >= 3 else None)(server.history("news")))
    assert isinstance(history, list)
    assert [m["n"] for m in history] == [0, 1, 2], history
    assert all(m["channel"] == "news" for m in history)
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(seqs)


def test_history_of_a_session_via_notify(make_server: Any) -> None:
    server = make_server(history={"size": 10})
    server.notify_ai_start("s", {"prompt": "p"})
    server.notify_ai_progress("s", {"percent": 50})
    history = poll_until(lambda: (lambda h: h if len(h) >= 2 else None)(server.history("session:s")))
    assert [m["type"] for m in history] == ["ai_start", "ai_progress"], history


def test_messages_may_be_any_mapping_or_json_text(server: herald.Server) -> None:
    async def body() -> None:
        c = await Client.connect(server.port)
        server.send(c.client_id, types.MappingProxyType({"type": "proxy"}))
        server.send(c.client_id, '{"type": "text"}')
        server.send(c.client_id, b'{"type": "bytes"}')
        got = await c.recv_n(3)
        assert [m["type"] for m in got] == ["proxy", "text", "bytes"]
        await c.close()

    run(body())
