"""Events: the on_event callback (on Herald's event thread) and the EventStream iterators."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Dict, List, Tuple

import pytest

import herald
from _helpers import TIMEOUT, Client, async_wait_for_event, poll_until, run, wait_for_event


def of_type(kind: str, **fields: Any):  # type: ignore[no-untyped-def]
    def pred(item: Any) -> bool:
        event = item[1] if isinstance(item, tuple) else item
        return event.get("type") == kind and all(event.get(k) == v for k, v in fields.items())

    return pred


def test_callback_runs_on_event_thread_and_sees_every_event_kind(server: herald.Server) -> None:
    events: "queue.Queue[Tuple[int, Dict[str, Any]]]" = queue.Queue()
    main = threading.get_ident()

    def on_event(event: Dict[str, Any]) -> None:
        events.put((threading.get_ident(), event))

    assert server.on_event(on_event) is on_event

    async def body() -> None:
        c = await Client.connect(server.port, userId="u1", sessionId="s1")
        tid, ev = await async_wait_for_event(events, of_type("connected", clientId=c.client_id))
        assert tid != main
        assert ev["userId"] == "u1" and ev["sessionId"] == "s1"
        assert isinstance(ev["remoteAddr"], str) and isinstance(ev["timestamp"], str)

        await c.subscribe(channel="room")
        _, ev = await async_wait_for_event(events, of_type("subscribed", clientId=c.client_id, channel="room"))

        await c.send({"type": "chat", "text": "hello", "n": [1, 2]})
        _, ev = await async_wait_for_event(events, of_type("client_message", clientId=c.client_id))
        assert ev["message"] == {"type": "chat", "text": "hello", "n": [1, 2]}
        assert ev["userId"] == "u1" and ev["sessionId"] == "s1"

        await c.send({"type": "unsubscribe", "channel": "room"})
        reply = await c.recv()
        assert reply["type"] == "unsubscribed", reply
        await async_wait_for_event(events, of_type("unsubscribed", clientId=c.client_id, channel="room"))

        await c.close()
        _, ev = await async_wait_for_event(events, of_type("disconnected", clientId=c.client_id))
        assert ev["userId"] == "u1" and ev["sessionId"] == "s1"
        assert "code" in ev and isinstance(ev["reason"], str)

    run(body())


def test_callback_thread_is_one_thread(server: herald.Server) -> None:
    threads: "queue.Queue[int]" = queue.Queue()
    server.on_event(lambda event: threads.put(threading.get_ident()))

    async def body() -> None:
        clients = [await Client.connect(server.port) for _ in range(4)]
        for c in clients:
            await c.close()

    run(body())
    seen = {wait_for_event(threads, lambda _: True) for _ in range(8)}  # 4 connects + 4 disconnects
    assert len(seen) == 1 and threading.get_ident() not in seen


def test_callback_exception_is_logged_and_runtime_survives(
    server: herald.Server, caplog: pytest.LogCaptureFixture
) -> None:
    calls: "queue.Queue[Dict[str, Any]]" = queue.Queue()

    def flaky(event: Dict[str, Any]) -> None:
        calls.put(event)
        if event["type"] == "connected":
            raise RuntimeError("boom from the callback")

    server.on_event(flaky)
    caplog.set_level(logging.ERROR, logger="herald")

    async def body() -> None:
        a = await Client.connect(server.port)
        await async_wait_for_event(calls, of_type("connected", clientId=a.client_id))
        # The runtime and the event thread are still alive: more events, and messaging works.
        b = await Client.connect(server.port, sessionId="s")
        await async_wait_for_event(calls, of_type("connected", clientId=b.client_id))
        server.notify_ai_progress("s", {"still": "alive"})
        msg = await b.recv()
        assert msg["type"] == "ai_progress" and msg["progress"] == {"still": "alive"}
        await a.close()
        await async_wait_for_event(calls, of_type("disconnected", clientId=a.client_id))
        await b.close()

    run(body())
    boom = [r for r in caplog.records if r.name == "herald" and r.exc_info and "boom" in str(r.exc_info[1])]
    assert len(boom) == 2, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.ERROR for r in boom)


def test_on_event_none_clears_the_callback(server: herald.Server) -> None:
    calls: List[Dict[str, Any]] = []
    server.on_event(calls.append)
    with server.events() as stream:
        server.on_event(None)

        async def body() -> None:
            a = await Client.connect(server.port)
            b = await Client.connect(server.port)
            await a.close()
            await b.close()

        run(body())
        stream.get(TIMEOUT)
        # Events are dispatched one at a time, stream first, then callback: once the stream
        # holds the second event, dispatching the first one is over.
        stream.get(TIMEOUT)
    assert calls == []


def test_on_event_rejects_non_callables_and_coroutine_functions(server: herald.Server) -> None:
    async def coro(event: Dict[str, Any]) -> None:
        pass

    with pytest.raises(herald.InvalidArgumentError):
        server.on_event(coro)
    with pytest.raises(herald.InvalidArgumentError):
        server.on_event("not callable")  # type: ignore[arg-type]


def test_close_from_inside_the_callback_does_not_deadlock(server: herald.Server) -> None:
    done = threading.Event()
    outcome: List[Any] = []

    def on_event(event: Dict[str, Any]) -> None:
        if event["type"] == "connected" and not outcome:
            try:
                outcome.append(server.close(timeout=5))
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcome.append(exc)
            done.set()

    server.on_event(on_event)

    async def body() -> None:
        c = await Client.connect(server.port)
        assert await asyncio.to_thread(done.wait, TIMEOUT), "close() from the callback did not return"
        # The client is closed by the server (1001 going away).
        await asyncio.wait_for(c.ws.wait_closed(), TIMEOUT)
        assert c.ws.close_code == 1001, c.ws.close_code

    run(body())
    assert outcome and outcome[0] in (True, False), outcome
    assert server.closed
    with pytest.raises(herald.ServerClosedError):
        server.broadcast({"type": "x"})


def test_callback_may_call_server_methods(server: herald.Server) -> None:
    def greet(event: Dict[str, Any]) -> None:
        if event["type"] == "connected":
            server.send(event["clientId"], {"type": "welcome", "you": event["clientId"]})

    server.on_event(greet)

    async def body() -> None:
        c = await Client.connect(server.port)
        msg = await c.recv()
        assert msg["type"] == "welcome" and msg["you"] == c.client_id, msg
        await c.close()

    run(body())


def test_sync_event_stream_iterates_and_ends_at_close(server: herald.Server) -> None:
    stream = server.events()
    kinds: List[str] = []

    def consume() -> None:
        for event in stream:  # ends by itself when the server is closed
            kinds.append(event["type"])

    consumer = threading.Thread(target=consume)
    consumer.start()

    async def body() -> None:
        c = await Client.connect(server.port, sessionId="s")
        await c.send({"type": "hello"})
        await c.close()

    run(body())
    for _ in range(int(TIMEOUT / 0.05)):  # bounded wait for the consumer thread to catch up
        if "disconnected" in kinds:
            break
        consumer.join(0.05)
    assert kinds[0] == "connected", kinds
    assert kinds[-1] == "disconnected" and "client_message" in kinds, kinds
    server.close()
    consumer.join(TIMEOUT)
    assert not consumer.is_alive(), "iteration did not end at close()"
    with pytest.raises(herald.StoppedError):
        stream.get(timeout=0)


def test_stream_get_times_out_without_events(server: herald.Server) -> None:
    with server.events() as stream:
        with pytest.raises(TimeoutError):
            stream.get(timeout=0.01)
        assert stream.pending() == 0


def test_async_event_stream(server: herald.Server) -> None:
    async def body() -> None:
        async with server.events() as events:
            c = await Client.connect(server.port, userId="ua")
            await c.send({"type": "question", "q": "why?"})
            kinds = []
            async for event in events:
                kinds.append(event["type"])
                if event["type"] == "client_message":
                    assert event["message"] == {"type": "question", "q": "why?"}
                    assert event["clientId"] == c.client_id
                    break
            assert kinds[0] == "connected"
            await c.close()

    run(body())


def test_async_stream_ends_when_server_closes(server: herald.Server) -> None:
    async def body() -> List[str]:
        events = server.events()
        seen: List[str] = []

        async def consume() -> None:
            async for event in events:
                seen.append(event["type"])

        task = asyncio.create_task(consume())
        c = await Client.connect(server.port)
        await server.aclose()
        await asyncio.wait_for(task, TIMEOUT)  # iteration ended by itself
        await c.close()
        return seen

    seen = run(body())
    assert "connected" in seen


def test_async_stream_cancellation_loses_no_event(server: herald.Server) -> None:
    async def body() -> None:
        events = server.events()
        # A waiter that is cancelled (timeout) must not swallow the next event.
        with pytest.raises(TimeoutError):
            await events.aget(timeout=0.01)
        c = await Client.connect(server.port)
        event = await events.aget(timeout=TIMEOUT)
        assert event["type"] == "connected" and event["clientId"] == c.client_id
        await c.close()
        events.close()

    run(body())


def test_every_stream_and_the_callback_see_every_event(server: herald.Server) -> None:
    calls: "queue.Queue[Dict[str, Any]]" = queue.Queue()
    server.on_event(calls.put)
    s1, s2 = server.events(), server.events()

    async def body() -> str:
        c = await Client.connect(server.port)
        await c.close()
        return c.client_id

    cid = run(body())
    got = []
    for s in (s1, s2):
        e1, e2 = s.get(TIMEOUT), s.get(TIMEOUT)
        assert (e1["type"], e1["clientId"]) == ("connected", cid)
        assert (e2["type"], e2["clientId"]) == ("disconnected", cid)
        got.append(e1)
    wait_for_event(calls, of_type("disconnected", clientId=cid))
    got[0]["mutated"] = True  # each consumer owns its dict
    assert "mutated" not in got[1]


def test_stream_overflow_drops_oldest(server: herald.Server, caplog: pytest.LogCaptureFixture) -> None:
    stream = server.events(max_pending=2)

    async def body() -> None:
        clients = [await Client.connect(server.port) for _ in range(3)]
        for c in clients:
            await c.close()

    run(body())
    # 6 events (3 connects, 3 disconnects) went to a stream holding 2: the newest two remain.
    poll_until(lambda: stream.dropped == 4)
    kinds = [stream.get(TIMEOUT)["type"], stream.get(TIMEOUT)["type"]]
    assert kinds == ["disconnected", "disconnected"]
    assert any("overflow" in r.getMessage() for r in caplog.records)
