"""Bad arguments, bad configuration, closed servers, close twice, garbage collection, exit."""

from __future__ import annotations

import gc
import re
import socket
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import herald
from _helpers import TIMEOUT, Client, poll_until, run

REPO = Path(__file__).resolve().parents[3]

# (method name, positional arguments before the message)
SENDERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("notify_ai_start", ("s",)),
    ("notify_ai_progress", ("s",)),
    ("notify_ai_complete", ("s",)),
    ("notify_ai_error", ("s",)),
    ("broadcast", ()),
    ("broadcast_to_user", ("u",)),
    ("publish", ("c",)),
    ("send", ("some-client",)),
]


def call(server: herald.Server, name: str, *args: Any) -> None:
    getattr(server, name)(*args)


# -- configuration ---------------------------------------------------------------------------


def test_unknown_config_key_is_rejected_by_the_core() -> None:
    with pytest.raises(herald.InvalidConfigError) as info:
        herald.Server(port=0, no_such_option=1)  # type: ignore[call-arg]
    assert isinstance(info.value, ValueError) and isinstance(info.value, herald.StartError)
    assert info.value.status == herald.Status.ERR_INVALID_CONFIG
    assert "no_such_option" in info.value.message


@pytest.mark.parametrize(
    "config",
    [{"port": "eighty"}, {"port": 70000}, {"heartbeat_interval_ms": -5}, {"history": {"size": "big"}}],
)
def test_bad_config_values_are_rejected(config: Dict[str, Any]) -> None:
    with pytest.raises(herald.InvalidConfigError) as info:
        herald.Server(**config)
    assert info.value.message


def test_non_serializable_config_raises() -> None:
    with pytest.raises(herald.NotSerializableError):
        herald.Server(port=0, host=object())  # type: ignore[arg-type]


def test_port_in_use_raises_an_os_error(server: herald.Server) -> None:
    with pytest.raises(herald.StartIOError) as info:
        herald.Server(port=server.port)
    assert isinstance(info.value, herald.StartError) and isinstance(info.value, OSError)
    assert info.value.status == herald.Status.ERR_IO
    assert str(server.port) in info.value.message


# -- status codes ----------------------------------------------------------------------------


def header_statuses() -> Dict[str, int]:
    """``herald_status`` as include/herald.h declares it: {"OK": 0, "ERR_NULL_ARGUMENT": 1, ...}."""
    text = (REPO / "include" / "herald.h").read_text()
    start = text.index("typedef enum herald_status")
    enum = text[start : text.index("} herald_status;", start)]
    return {name: int(value) for name, value in re.findall(r"HERALD_(OK|ERR_\w+) = (\d+)", enum)}


def test_status_enum_matches_the_header() -> None:
    declared = header_statuses()
    assert "ERR_LIMIT" in declared
    assert {s.name: s.value for s in herald.Status} == declared


@pytest.mark.parametrize("status", [s for s in herald.Status if s != herald.Status.OK], ids=lambda s: s.name)
def test_every_error_status_has_its_own_documented_exception(status: herald.Status) -> None:
    error = herald.errors.error_from_status(int(status), "core message")
    assert type(error) is not herald.HeraldError, f"{status.name} falls back to the base class"
    assert error.status == status and error.message == "core message"
    assert type(error).__name__ in herald.__all__
    assert f"HERALD_{status.name}" in (herald.errors.__doc__ or ""), "missing from the hierarchy"
    assert f"HERALD_{status.name}" in (type(error).__doc__ or ""), "missing from the class"
    readme = (REPO / "bindings" / "python" / "README.md").read_text()
    assert f"`{status.name[len('ERR_'):]}`" in readme, "missing from the README's error table"


def test_limit_status_is_a_limit_error() -> None:
    error = herald.errors.error_from_status(13, "channel table full")
    assert isinstance(error, herald.LimitError) and isinstance(error, herald.HeraldError)
    assert error.status == herald.Status.ERR_LIMIT
    assert str(error) == "channel table full"
    assert herald.errors.error_from_status(99, "").status is None  # unknown codes stay generic


def test_a_publication_to_a_new_channel_past_max_channels_raises_limit_error(make_server: Any) -> None:
    server = make_server(max_channels=1)  # history is on by default: a channel outlives its publication
    server.notify_ai_start("a", {"step": 1})
    poll_until(lambda: server.stats()["channels"] == 1)
    for name, args in [
        ("notify_ai_start", ("b",)),
        ("notify_ai_progress", ("b",)),
        ("publish", ("news",)),
        ("broadcast_to_user", ("u",)),
    ]:
        with pytest.raises(herald.LimitError) as info:
            call(server, name, *args, {"type": "x"})
        assert info.value.status == herald.Status.ERR_LIMIT, name
        assert info.value.message, name
    # The channel that exists still takes publications.
    server.notify_ai_progress("a", {"percent": 50})
    server.publish("session:a", {"type": "note"})
    history = poll_until(lambda: (lambda h: h if len(h) >= 3 else None)(server.history("session:a")))
    assert [m["type"] for m in history] == ["ai_start", "ai_progress", "note"]
    assert server.history("session:b") == []


# -- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,args", SENDERS)
def test_none_message_is_a_null_argument(server: herald.Server, name: str, args: Tuple[str, ...]) -> None:
    with pytest.raises(herald.NullArgumentError) as info:
        call(server, name, *args, None)
    assert isinstance(info.value, TypeError)
    assert info.value.status == herald.Status.ERR_NULL_ARGUMENT
    assert info.value.message  # the core's message


@pytest.mark.parametrize("name,args", [(n, a) for n, a in SENDERS if a])
def test_none_id_is_a_null_argument(server: herald.Server, name: str, args: Tuple[str, ...]) -> None:
    with pytest.raises(herald.NullArgumentError) as info:
        call(server, name, None, {"type": "x"})
    assert info.value.message


def test_none_history_channel_is_a_null_argument(server: herald.Server) -> None:
    with pytest.raises(herald.NullArgumentError):
        server.history(None)  # type: ignore[arg-type]


class Opaque:
    pass


@pytest.mark.parametrize(
    "message",
    [Opaque(), {"type": "x", "obj": Opaque()}, {"type": "x", "nan": float("nan")}, {"type": "x", "s": {1, 2}}],
    ids=["object", "nested-object", "nan", "set"],
)
@pytest.mark.parametrize("name,args", SENDERS)
def test_non_serializable_messages_raise(server: herald.Server, name: str, args: Tuple[str, ...], message: Any) -> None:
    with pytest.raises(herald.NotSerializableError) as info:
        call(server, name, *args, message)
    assert isinstance(info.value, herald.InvalidJsonError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("message", [[1, 2], 42, "not json at all", "[1, 2]", '"a string"', "{broken", b"\xff\xfe"])
@pytest.mark.parametrize("name,args", SENDERS)
def test_non_object_or_invalid_json_is_rejected_by_the_core(
    server: herald.Server, name: str, args: Tuple[str, ...], message: Any
) -> None:
    with pytest.raises(herald.InvalidArgumentError) as info:
        call(server, name, *args, message)
    # The core decided: its status code and its message are carried over.
    assert info.value.status in (
        herald.Status.ERR_INVALID_JSON,
        herald.Status.ERR_INVALID_ARGUMENT,
        herald.Status.ERR_INVALID_UTF8,
    )
    assert info.value.message


def test_lone_surrogate_is_invalid_utf8_for_the_core(server: herald.Server) -> None:
    with pytest.raises(herald.InvalidUtf8Error) as info:
        server.publish("bad\ud800channel", {"type": "x"})
    assert info.value.status == herald.Status.ERR_INVALID_UTF8
    assert info.value.message


@pytest.mark.parametrize("bad", ["nul\x00inside", 123, 4.5, ["list"]])
def test_bad_ids_raise(server: herald.Server, bad: Any) -> None:
    with pytest.raises(herald.InvalidArgumentError):
        server.publish(bad, {"type": "x"})


def test_invalid_close_timeout(server: herald.Server) -> None:
    for bad in (-1, float("nan"), "5"):
        with pytest.raises(herald.InvalidArgumentError):
            server.close(timeout=bad)  # type: ignore[arg-type]
    assert not server.closed


def test_server_still_works_after_bad_calls(server: herald.Server) -> None:
    for bad in (None, Opaque(), "[1]"):
        with pytest.raises(herald.HeraldError):
            server.broadcast(bad)

    async def body() -> None:
        c = await Client.connect(server.port)
        server.broadcast({"type": "ok"})
        assert (await c.recv())["type"] == "ok"
        await c.close()

    run(body())


# -- closed server ---------------------------------------------------------------------------


def closed_calls(server: herald.Server) -> List[Callable[[], Any]]:
    calls: List[Callable[[], Any]] = [
        lambda n=name, a=args: call(server, n, *a, {"type": "x"}) for name, args in SENDERS
    ]
    calls += [
        lambda: server.port,
        server.stats,
        lambda: server.history("c"),
        lambda: server.on_event(print),
        server.events,
    ]
    return calls


def test_every_call_after_close_raises(server: herald.Server) -> None:
    assert server.close() is True
    assert server.closed
    for fn in closed_calls(server):
        with pytest.raises(herald.ServerClosedError):
            fn()
    with pytest.raises(RuntimeError):  # ServerClosedError is a RuntimeError
        server.broadcast({"type": "x"})


def test_close_twice_is_harmless(server: herald.Server) -> None:
    assert server.close() is True
    assert server.close() is True
    assert server.close(timeout=0) is True
    assert "closed" in repr(server)


def test_close_disconnects_clients_with_going_away(server: herald.Server) -> None:
    async def body() -> None:
        c = await Client.connect(server.port)
        server.broadcast({"type": "last words"})
        await server.aclose()
        assert (await c.recv())["type"] == "last words"  # flushed before closing
        await c.ws.wait_closed()
        assert c.ws.close_code == 1001

    run(body())


def test_context_manager_closes_even_on_error() -> None:
    with pytest.raises(ZeroDivisionError):
        with herald.Server(port=0) as server:
            port = server.port
            1 / 0
    assert server.closed
    assert_port_released(port)


def test_async_context_manager() -> None:
    async def body() -> herald.Server:
        async with herald.Server(port=0) as server:
            c = await Client.connect(server.port)
            server.broadcast({"type": "hi"})
            assert (await c.recv())["type"] == "hi"
        await c.ws.wait_closed()
        return server

    assert run(body()).closed


# -- garbage collection and interpreter exit ---------------------------------------------------


def assert_port_released(port: int) -> None:
    def refused() -> bool:
        with socket.socket() as s:
            s.settimeout(TIMEOUT)
            try:
                s.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                return False  # accepted by a listener still closing: poll again
            return False

    poll_until(refused)


def test_garbage_collected_server_is_stopped() -> None:
    server = herald.Server(port=0)
    port = server.port
    # A callback referencing the server makes a reference cycle through the dispatcher.
    server.on_event(lambda event: server.stats())
    ref = weakref.ref(server)
    del server
    gc.collect()
    assert ref() is None, "the Server object was not collected"
    assert_port_released(port)


def test_exit_without_close_is_clean(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        import herald
        from websockets.asyncio.client import connect

        server = herald.Server(port=0)
        server.on_event(lambda event: None)
        stream = server.events()

        async def main():
            ws = await connect(f"ws://127.0.0.1:{server.port}/ws?sessionId=s")
            await ws.recv()
            server.notify_ai_start("s", {"x": 1})
            await ws.recv()
            # leave the client, the callback, the stream and the server running
            sys.stdout.write("ready\\n")

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ready\n"
    assert "Traceback" not in proc.stderr, proc.stderr
