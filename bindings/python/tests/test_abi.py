"""The C ABI contract, exercised directly through the ctypes declarations.

The binding relies on these promises (documented in include/herald.h); checking them here
turns a core regression into a precise failure instead of a mysterious one in the wrappers.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
from typing import Any, Dict, List

import pytest

from herald import _ffi
from herald._ffi import Status
from _helpers import Client, run


@pytest.fixture
def lib() -> ctypes.CDLL:
    return _ffi.lib()


def start(lib: ctypes.CDLL, config: bytes) -> Any:
    out = ctypes.c_void_p()
    assert lib.herald_start(config, ctypes.byref(out)) == Status.OK, _ffi.last_error()
    return out.value


def port_of(lib: ctypes.CDLL, handle: Any) -> int:
    port = ctypes.c_uint16()
    assert lib.herald_port(handle, ctypes.byref(port)) == Status.OK, _ffi.last_error()
    return port.value


@pytest.fixture
def handle(lib: ctypes.CDLL) -> Any:
    h = start(lib, b'{"port": 0}')
    yield h
    lib.herald_stop(h, 5000)  # may be the second stop: INVALID_HANDLE, harmless


def test_start_failure_is_a_status_with_a_message_and_no_handle(lib: ctypes.CDLL) -> None:
    out = ctypes.c_void_p(0x5A5A)
    assert lib.herald_start(b"{not json", ctypes.byref(out)) == Status.ERR_INVALID_CONFIG
    assert _ffi.last_error()
    assert lib.herald_start(b'{"bogus_key": 1}', ctypes.byref(out)) == Status.ERR_INVALID_CONFIG
    assert "bogus_key" in _ffi.last_error()
    assert out.value == 0x5A5A  # written only on success


def test_stop_twice_and_calls_after_stop(lib: ctypes.CDLL, handle: Any) -> None:
    assert port_of(lib, handle) > 0
    assert lib.herald_stop(handle, 5000) == Status.OK
    assert lib.herald_stop(handle, 5000) == Status.ERR_INVALID_HANDLE
    port = ctypes.c_uint16(7)
    assert lib.herald_port(handle, ctypes.byref(port)) == Status.ERR_INVALID_HANDLE
    assert port.value == 7
    status = lib.herald_broadcast(handle, b'{"type":"x"}')
    assert status in (Status.ERR_INVALID_HANDLE, Status.ERR_STOPPED)
    assert _ffi.last_error()


def test_null_arguments(lib: ctypes.CDLL, handle: Any) -> None:
    assert lib.herald_broadcast(None, b'{"type":"x"}') in (Status.ERR_NULL_ARGUMENT, Status.ERR_INVALID_HANDLE)
    assert lib.herald_broadcast(handle, None) == Status.ERR_NULL_ARGUMENT
    assert lib.herald_publish(handle, None, b"{}") == Status.ERR_NULL_ARGUMENT
    assert lib.herald_port(None, ctypes.byref(ctypes.c_uint16())) == Status.ERR_NULL_ARGUMENT
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
    port = port_of(lib, handle)

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


STOP_FROM_CALLBACK = r"""
import asyncio, ctypes, json, os, threading, time
from herald import _ffi
from websockets.asyncio.client import connect

lib = _ffi.lib()
out = ctypes.c_void_p()
assert lib.herald_start(b'{"port": 0}', ctypes.byref(out)) == 0
h = out.value
port_out = ctypes.c_uint16()
assert lib.herald_port(h, ctypes.byref(port_out)) == 0
port = port_out.value
state = {"first": True, "returned": False, "status": None}
calls = []  # (herald_stop had returned, event type)
release, first_seen = threading.Event(), threading.Event()

def callback(user_data, event_json):
    calls.append((state["returned"], json.loads(event_json)["type"]))
    if state["first"]:
        state["first"] = False
        first_seen.set()
        release.wait(30)  # hold the event thread while more events queue up behind this one
        state["status"] = lib.herald_stop(h, 5000)
        state["returned"] = True

thunk = _ffi.EVENT_CALLBACK(callback)
assert lib.herald_set_event_handler(h, thunk, None, _ffi.DROP_CALLBACK()) == 0

async def main():
    c1 = await connect(f"ws://127.0.0.1:{port}/ws"); await c1.recv()
    assert await asyncio.to_thread(first_seen.wait, 30)
    c2 = await connect(f"ws://127.0.0.1:{port}/ws"); await c2.recv()
    for _ in range(600):  # bounded: wait until c2's `connected` event is queued behind the first
        out = ctypes.c_void_p()
        assert lib.herald_stats(h, ctypes.byref(out)) == 0
        if json.loads(_ffi.take_string(out))["eventsQueued"] >= 1:
            break
        await asyncio.sleep(0.05)
    release.set()

asyncio.run(main())
deadline = time.monotonic() + 15
while not state["returned"] and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # observation window for late callbacks (can hide a failure, never fake one)
print(json.dumps({"returned": state["returned"], "status": state["status"],
                  "late": [kind for after, kind in list(calls) if after]}), flush=True)
os._exit(0)  # a deadlocked core thread must not keep the process alive
"""


def test_stop_from_inside_the_callback(tmp_path: Any) -> None:
    """herald_stop called from inside the event callback returns, and the events still queued
    are dropped: no callback follows the stop ("never after herald_stop returns")."""
    proc = subprocess.run(
        [sys.executable, "-c", STOP_FROM_CALLBACK], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["returned"], "herald_stop called from the callback did not return within 15 s"
    assert result["status"] in (Status.OK, Status.ERR_TIMEOUT)
    assert result["late"] == [], f"callback called after herald_stop returned: {result['late']}"


def test_notify_ai_kinds_and_a_made_up_kind(lib: ctypes.CDLL, handle: Any) -> None:
    port = port_of(lib, handle)

    async def body() -> List[Dict[str, Any]]:
        c = await Client.connect(port, sessionId="kinds")
        for _ in range(200):  # bounded: until the subscription is in place
            out = ctypes.c_void_p()
            assert lib.herald_stats(handle, ctypes.byref(out)) == Status.OK
            if json.loads(_ffi.take_string(out))["subscriptions"] == 1:
                break
            await asyncio.sleep(0.02)
        for kind in range(4):  # HERALD_AI_KIND_START .. HERALD_AI_KIND_ERROR
            assert lib.herald_notify_ai(handle, kind, b"kinds", b'{"n": %d}' % kind) == Status.OK
        got = await c.recv_n(4)
        await c.close()
        return got

    got = run(body())
    assert [(m["type"], m["sessionId"]) for m in got] == [
        ("ai_start", "kinds"),
        ("ai_progress", "kinds"),
        ("ai_complete", "kinds"),
        ("ai_error", "kinds"),
    ]
    assert [got[0]["task"]["n"], got[1]["progress"]["n"], got[2]["result"]["n"], got[3]["error"]["n"]] == [0, 1, 2, 3]
    assert lib.herald_notify_ai(handle, 99, b"kinds", b"{}") == Status.ERR_INVALID_ARGUMENT
    assert "herald_ai_kind" in _ffi.last_error()


def test_drop_callbacks_run_once_after_replace_clear_and_stop(lib: ctypes.CDLL) -> None:
    h = start(lib, b'{"port": 0}')
    dropped: List[int] = []
    drop = _ffi.DROP_CALLBACK(lambda user_data: dropped.append(user_data))
    noop = _ffi.EVENT_CALLBACK(lambda user_data, event_json: None)
    assert lib.herald_set_event_handler(h, noop, 1, drop) == Status.OK
    assert lib.herald_set_event_handler(h, noop, 2, drop) == Status.OK
    assert dropped == [1]  # replaced
    assert lib.herald_set_authorizer(h, _ffi.AUTHORIZE_CALLBACK(), 3, drop) == Status.OK
    assert dropped == [1, 3]  # a NULL callback hands its user data back at once
    assert lib.herald_stop(h, 5000) == Status.OK
    assert dropped == [1, 3, 2]  # the stop released the event handler's
    assert lib.herald_set_event_handler(h, noop, 4, drop) == Status.ERR_INVALID_HANDLE
    assert dropped == [1, 3, 2, 4]  # a failed call hands it back too
