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


STOP_FROM_CALLBACK = r"""
import asyncio, ctypes, json, os, threading, time
from herald import _ffi
from websockets.asyncio.client import connect

lib = _ffi.lib()
h = lib.herald_start(b'{"port": 0}')
port = lib.herald_port(h)
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
assert lib.herald_set_event_handler(h, thunk, None) == 0

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
