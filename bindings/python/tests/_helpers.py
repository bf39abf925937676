"""Shared test helpers: real `websockets` clients against a real Herald server.

Every wait is bounded (TIMEOUT); nothing asserts how fast something happens.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
from typing import Any, Callable, Coroutine, Dict, List, Optional, TypeVar
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

#: Upper bound for any single wait. Generous: the machine has 2 noisy cores.
TIMEOUT = 30.0

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    """Run an async test body with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Client:
    """A WebSocket client speaking Herald's JSON protocol."""

    def __init__(self, ws: ClientConnection, hello: Dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.client_id: str = hello["clientId"]

    @classmethod
    async def connect(cls, port: int, path: str = "/ws", **params: str) -> "Client":
        url = f"ws://127.0.0.1:{port}{path}"
        if params:
            url += "?" + urlencode(params)
        ws = await connect(url, open_timeout=TIMEOUT, close_timeout=5, max_size=None)
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert hello["type"] == "connection", hello
        assert hello["status"] == "connected", hello
        assert isinstance(hello["clientId"], str) and hello["clientId"], hello
        return cls(ws, hello)

    async def recv(self, timeout: float = TIMEOUT) -> Dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg = json.loads(raw)
        assert isinstance(msg, dict), msg
        return msg

    async def recv_n(self, n: int, timeout: float = TIMEOUT) -> List[Dict[str, Any]]:
        return [await self.recv(timeout) for _ in range(n)]

    async def send(self, obj: Any) -> None:
        await self.ws.send(json.dumps(obj))

    async def subscribe(self, **what: str) -> Dict[str, Any]:
        await self.send({"type": "subscribe", **what})
        reply = await self.recv()
        assert reply["type"] == "subscribed", reply
        return reply

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def wait_for_event(
    q: "queue.Queue[Any]", predicate: Callable[[Any], bool], timeout: float = TIMEOUT
) -> Any:
    """Take items from a thread-safe queue until one matches; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen: List[Any] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s; saw {seen!r}")
        try:
            item = q.get(timeout=remaining)
        except queue.Empty:
            continue
        if predicate(item):
            return item
        seen.append(item)


async def async_wait_for_event(q: "queue.Queue[Any]", predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
    return await asyncio.to_thread(wait_for_event, q, predicate, timeout)


def poll_until(condition: Callable[[], Optional[T]], timeout: float = TIMEOUT, interval: float = 0.05) -> T:
    """Call `condition` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
