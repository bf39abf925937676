"""The C ABI contract, exercised directly through the ctypes declarations.

The binding relies on these promises (documented in include/herald.h); checking them here
turns a core regression into a precise failure instead of a mysterious one in the wrappers.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest

from herald import _ffi
from herald._ffi import Status
from _helpers import TIMEOUT, Client, poll_until, run


_KEEP_ALIVE: List[Any] = []


@pytest.fixture
def lib() -> ctypes.CDLL:
    return _ffi.lib()


@pytest.fixture
def handle(lib: ctypes.CDLL) -> Any:
    h = lib.herald_start(b'{"port": 0}')
    assert h, _ffi.last_error()
    yield h
    lib.herald_stop(h, 5000)  # may be the second stop: INVALID_HANDLE, harmless


def test_start_failure_returns_null_and_sets_last_error(lib: ctypes.CDLL) -> None:
    assert not lib.herald_start(b"{not json")
    assert _ffi.last_error()
    assert not lib.herald_start(b'{"bogus_key": 1}')
    assert "bogus_key" in _ffi.last_error()


def test_stop_twice_and_calls_after_stop(lib: ctypes.CDLL, handle: Any) -> None:
    assert lib.herald_port(handle) > 0
    assert lib.herald_stop(handle, 5000) == Status.OK
    assert lib.herald_stop(handle, 5000) == Status.ERR_INVALID_HANDLE
    assert lib.herald_port(handle) == 0
    status = lib.herald_broadcast(handle, b'{"type":"x"}')
    assert status in (Status.ERR_INVALID_HANDLE, Status.ERR_STOPPED)
    assert _ffi.last_error()


def test_null_arguments(lib: ctypes.CDLL, handle: Any) -> None:
    assert lib.herald_broadcast(None, b'{"type":"x"}') in (Status.ERR_NULL_ARGUMENT, Status.ERR_INVALID_HANDLE)
    assert lib.herald_broadcast(handle, None) == Status.ERR_NULL_ARGUMENT
    assert lib.herald_publish(handle, None, b"{}") == Status.ERR_NULL_ARGUMENT
    assert lib.herald_port(None) == 0
    lib.herald_string_free(None)  # NULL is fine


def test_last_error_is_per_thread(lib: ctypes.CDLL, handle: Any) -> None:
    assert lib.herald_send(handle, b"nobody", b'{"type":"x"}') == Status.ERR_UNKNOWN_CLIENT
    mine = _ffi.last_error()
    assert mine
    other: List[str] = []
    t = threading.Thread(target=lambda: other.append(_ffi.last_error()))
    t.start()
    t.join(30)
    assert other == [""]  # a thread that never failed has no error
    assert _ffi.last_error() == mine


def test_out_strings_and_pull_events(lib: ctypes.CDLL, handle: Any) -> None:
    out = ctypes.c_void_p()
    assert lib.herald_stats(handle, ctypes.byref(out)) == Status.OK
    stats: Dict[str, Any] = json.loads(_ffi.take_string(out))
    assert stats["activeConnections"] == 0
    out = ctypes.c_void_p()
    assert lib.herald_history(handle, b"nothing-here", ctypes.byref(out)) == Status.OK
    assert json.loads(_ffi.take_string(out)) == []

    out = ctypes.c_void_p()
    assert lib.herald_next_event(handle, 10, ctypes.byref(out)) == Status.ERR_TIMEOUT
    port = lib.herald_port(handle)

    async def connect() -> str:
        c = await Client.connect(port)
        await c.close()
        return c.client_id

    cid = run(connect())
    out = ctypes.c_void_p()
    assert lib.herald_next_event(handle, 30_000, ctypes.byref(out)) == Status.OK
    event = json.loads(_ffi.take_string(out))
    assert event["type"] == "connected" and event["clientId"] == cid


def test_version(lib: ctypes.CDLL) -> None:
    assert lib.herald_version()


def test_no_callback_after_stop_returned_inside_the_callback(lib: ctypes.CDLL) -> None:
    """herald_set_event_handler: "never [called] after herald_stop returns" — also when the
    callback itself calls herald_stop while more events are queued behind it."""
    h = lib.herald_start(b'{"port": 0}')
    assert h, _ffi.last_error()
    port = lib.herald_port(h)
    calls: List[Tuple[bool, str]] = []  # (herald_stop had returned, event type)
    state = {"first": True, "stop_returned": False, "status": None}
    release = threading.Event()
    first_seen = threading.Event()

    def callback(user_data: Any, event_json: bytes) -> None:
        calls.append((state["stop_returned"], json.loads(event_json)["type"]))
        if state["first"]:
            state["first"] = False
            first_seen.set()
            release.wait(TIMEOUT)  # hold the event thread while more events queue up
            state["status"] = lib.herald_stop(h, 5000)
            state["stop_returned"] = True

    thunk = _ffi.EVENT_CALLBACK(callback)
    _KEEP_ALIVE.append(thunk)  # never freed: a late call into a freed thunk would crash
    assert lib.herald_set_event_handler(h, thunk, None) == Status.OK

    async def body() -> None:
        c1 = await Client.connect(port)
        assert await asyncio.to_thread(first_seen.wait, TIMEOUT)
        # Their "connected" events are queued before their hello is sent.
        c2 = await Client.connect(port)
        c3 = await Client.connect(port)
        release.set()
        for c in (c1, c2, c3):
            await asyncio.wait_for(c.ws.wait_closed(), TIMEOUT)

    run(body())
    poll_until(lambda: state["stop_returned"])
    assert state["status"] in (Status.OK, Status.ERR_TIMEOUT)
    time.sleep(1.0)  # observation window for late calls (can only hide a failure, never fake one)
    late = [kind for after_stop, kind in calls if after_stop]
    assert late == [], f"callback called {len(late)} time(s) after herald_stop returned: {late}"
