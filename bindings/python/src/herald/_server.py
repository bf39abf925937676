"""The :class:`Server` object: a thin, safe Python face over the Herald C ABI."""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import ctypes
import inspect
import itertools
import json
import logging
import os
import queue
import sys
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from . import _ffi, _logging
from ._auth import AuthDecision, AuthRequest, Decision, decision_json, deny_json
from ._ffi import Status
from ._presence import Presence
from .errors import (
    HeraldError,
    InvalidArgumentError,
    InvalidConfigError,
    NotSerializableError,
    PanicError,
    StartError,
    StartIOError,
    StoppedError,
    error_from_status,
)

if TYPE_CHECKING:  # pragma: no cover
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

    from ._types import ServerConfig

__all__ = ["Server", "EventStream", "Event", "Message", "Authorizer", "core_version"]

logger = logging.getLogger("herald")

#: An event delivered to the host, e.g. ``{"type": "connected", "clientId": ..., ...}``.
Event = Dict[str, Any]
#: A message: a JSON object given as a mapping, or already-encoded JSON text (``str``/``bytes``).
Message = Union[Mapping[str, Any], str, bytes]

_F = TypeVar("_F", bound=Callable[..., Any])

#: A host authorizer: a function (or ``async def``) taking an :class:`AuthRequest` and returning
#: a decision (:class:`AuthDecision`, ``True``/``False``, a mapping in the core's JSON form), or
#: ``None`` to answer later with :meth:`Server.authorize_reply`.
Authorizer = Callable[[AuthRequest], Any]

_U32_MAX = 0xFFFFFFFF
#: Timeout used when a server is stopped because it was garbage-collected or at exit.
_IMPLICIT_STOP_TIMEOUT_MS = 5000


def core_version() -> str:
    """Version string of the loaded core library (``herald_version()``)."""
    raw = _ffi.lib().herald_version()
    return raw.decode("utf-8", "replace") if raw else ""


# --------------------------------------------------------------------------------------------
# Argument conversion. The binding only encodes; validation is the core's job, so that the
# error a user sees is the core's (None is passed as NULL, non-objects reach the core, ...).
# --------------------------------------------------------------------------------------------


def _timeout_ms(timeout: Optional[float]) -> int:
    if timeout is None:
        return _U32_MAX
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgumentError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout != timeout or timeout < 0:  # NaN or negative
        raise InvalidArgumentError(f"timeout must be >= 0 seconds, got {timeout!r}")
    return min(int(timeout * 1000), _U32_MAX)


#: Encodes messages given as objects: ``json.dumps(value, ensure_ascii=False, allow_nan=False,
#: separators=(",", ":"))``, with the encoder built once (json.dumps builds a new one on every
#: call that passes options).
_MESSAGE_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _nul_error(what: str) -> InvalidArgumentError:
    # A C string cannot carry NUL: passing it would silently truncate the value.
    return InvalidArgumentError(f"{what} must not contain NUL characters")


def _no_nul(data: bytes, what: str) -> bytes:
    # `0 in data`, not `b"\x00" in data`: the latter first tries to read its operand as an
    # int, raising and clearing a TypeError on every call (about 0.3 µs per argument).
    if 0 in data:
        raise _nul_error(what)
    return data


def _text(value: Any, what: str) -> Optional[bytes]:
    """Encode an id/channel for the C ABI. ``None`` becomes NULL (the core reports it)."""
    if isinstance(value, str):
        # The str is checked rather than its encoding (only U+0000 encodes to a NUL byte):
        # `"\x00" in str` is a plain scan, unlike the bytes form (see _no_nul).
        if "\x00" in value:
            raise _nul_error(what)
        # surrogatepass: a lone surrogate becomes invalid UTF-8 and the core reports INVALID_UTF8.
        return value.encode("utf-8", "surrogatepass")
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return _no_nul(bytes(value), what)
    raise InvalidArgumentError(f"{what} must be a str, not {type(value).__name__}")


def _json(value: Any, what: str) -> Optional[bytes]:
    """Encode a message for the C ABI.

    ``str``/``bytes`` are taken as JSON text and passed through unchanged; anything else is
    encoded with :func:`json.dumps`. ``None`` becomes NULL. Whether the result is acceptable
    (a JSON object, valid UTF-8, ...) is decided by the core.
    """
    if isinstance(value, str):  # the common case first; checked as in _text
        if "\x00" in value:
            raise _nul_error(what)
        return value.encode("utf-8", "surrogatepass")
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return _no_nul(bytes(value), what)
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        text = _MESSAGE_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotSerializableError(f"{what} is not JSON-serializable: {exc}") from exc
    return text.encode("utf-8", "surrogatepass")


def _check(status: int) -> None:
    """Raise the exception for a non-OK status. Call right after the C call, same thread."""
    # `if status` rather than `status != Status.OK`: HERALD_OK is 0, and reading an enum
    # member costs more than the rest of this check (this runs after every call).
    if status:
        raise error_from_status(status, _ffi.last_error())


# --------------------------------------------------------------------------------------------
# Process-wide registries.
#
# _live maps a server key to its raw handle. Whoever pops the key owns the one and only
# herald_stop call for that handle (dict.pop is atomic under the GIL), so close(), the
# garbage-collection finalizer and the exit hook can race without double-stopping.
#
# _dispatchers maps the key (passed to the core as user_data) to a weak reference to the
# server's event dispatcher. The C callback itself is ONE module-level CFUNCTYPE object that is
# never freed: the core can call it at any moment until herald_stop returns, including while a
# Server object is being collected, and a freed ctypes thunk would crash the process.
# --------------------------------------------------------------------------------------------

_live: Dict[int, int] = {}
_dispatchers: Dict[int, "weakref.ReferenceType[_Dispatcher]"] = {}
_authorizers: Dict[int, "weakref.ReferenceType[_AuthGate]"] = {}
_keys = itertools.count(1)
# Keys of the servers whose authorizer this thread is running (a Herald worker thread inside
# the authorizer callback). close() from there must not wait for the stop: herald_stop waits
# for running authorizer calls, this one included.
_authorizing = threading.local()


def _authorizing_keys() -> List[int]:
    keys: Optional[List[int]] = getattr(_authorizing, "keys", None)
    if keys is None:
        keys = []
        _authorizing.keys = keys
    return keys


def _stop_handle(key: int, handle: int, timeout_ms: int) -> int:
    """The one herald_stop call for a handle already taken out of _live."""
    try:
        return int(_ffi.lib().herald_stop(handle, timeout_ms))
    finally:
        # herald_stop returned: the core makes no further event callback for this server.
        # (An authorizer call already running on a worker thread may still finish; the
        # authorizer trampoline copes with a missing entry.)
        _dispatchers.pop(key, None)
        _authorizers.pop(key, None)


def _on_core_event_impl(user_data: Optional[int], event_json: Optional[bytes]) -> None:
    # Runs on the core's event thread. It must never raise: log and swallow everything.
    try:
        ref = _dispatchers.get(user_data or 0)
        dispatcher = ref() if ref is not None else None
        if dispatcher is not None and event_json is not None:
            dispatcher.dispatch(event_json)
    except BaseException:  # noqa: BLE001 - nothing may escape into the core
        try:
            logger.exception("herald: error while dispatching an event")
        except BaseException:  # noqa: BLE001
            pass


# The single C callback for every server; module-level, so never freed.
_on_core_event = _ffi.EVENT_CALLBACK(_on_core_event_impl)


def _on_core_authorize_impl(user_data: Optional[int], request_id: int, request_json: Optional[bytes]) -> None:
    # Runs on a Herald worker thread (tokio's blocking pool), possibly on several at once.
    # It must never raise into the core.
    key = user_data or 0
    try:
        ref = _authorizers.get(key)
        gate = ref() if ref is not None else None
        if gate is None:
            # The Server was garbage-collected (its stop is under way) or closed.
            _reply_raw(key, request_id, deny_json("the server is closing"))
            return
        keys = _authorizing_keys()
        keys.append(key)
        try:
            gate.handle(int(request_id), request_json or b"{}")
        finally:
            keys.remove(key)
    except BaseException:  # noqa: BLE001 - nothing may escape into the core
        try:
            logger.exception("herald: error while handling authorization request %s", request_id)
            _reply_raw(key, request_id, deny_json("internal error in the Python authorizer"))
        except BaseException:  # noqa: BLE001
            pass


# Same rule as the event callback: one module-level C callback, never freed, because the core
# may call it until herald_stop returns (and a call already running may outlive that).
_on_core_authorize = _ffi.AUTHORIZE_CALLBACK(_on_core_authorize_impl)
# A NULL herald_authorize_callback (ctypes refuses None for a declared function-pointer type).
_NO_AUTHORIZER = _ffi.AUTHORIZE_CALLBACK()


# Stops that must not run on the calling thread go to a reaper thread:
# * servers garbage-collected without close(): a graceful stop can take up to its timeout, and
#   a GC pass runs at any allocation, on any thread, possibly holding locks the event callback
#   needs. queue.SimpleQueue.put is documented as safe to call from finalizers.
# * close() called from inside the server's own authorizer: herald_stop waits (up to its
#   timeout) for the authorizer calls under way, the calling one included.
# Items: (key, handle or None to take it from _live, timeout_ms).
_reap_queue: "queue.SimpleQueue[Tuple[int, Optional[int], int]]" = queue.SimpleQueue()
_reaper_lock = threading.Lock()
_reaper_busy = threading.Lock()
_reaper: Optional[threading.Thread] = None


def _reap_one(key: int, handle: Optional[int], timeout_ms: int) -> None:
    if handle is None:
        handle = _live.pop(key, None)
        if handle is None:
            return
    try:
        status = _stop_handle(key, handle, timeout_ms)
        if status not in (Status.OK, Status.ERR_TIMEOUT):
            logger.warning("herald: background stop of server %d returned status %s", key, status)
    except BaseException:  # noqa: BLE001
        logger.exception("herald: error while stopping server %d in the background", key)


def _reaper_main() -> None:
    while True:
        item = _reap_queue.get()
        with _reaper_busy:
            _reap_one(*item)


def _ensure_reaper() -> None:
    global _reaper
    with _reaper_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reaper_main, name="herald-reaper", daemon=True)
            _reaper.start()


def _finalize_server(key: int) -> None:
    # Called by weakref.finalize when a Server is garbage-collected without close().
    if key in _live:
        _reap_queue.put((key, None, _IMPLICIT_STOP_TIMEOUT_MS))


@atexit.register
def _stop_all_at_exit() -> None:
    # Stop every server still running before the interpreter is torn down, so that the core's
    # threads never call back into a finalizing interpreter.
    while True:
        try:
            item = _reap_queue.get_nowait()
        except queue.Empty:
            break
        _reap_one(*item)
    for key in list(_live):
        _reap_one(key, None, _IMPLICIT_STOP_TIMEOUT_MS)
    # Let a stop already running on the reaper thread finish (bounded).
    if _reaper_busy.acquire(timeout=_IMPLICIT_STOP_TIMEOUT_MS / 1000 + 5):
        _reaper_busy.release()


def _forget_after_fork() -> None:
    # A forked child has the handles but none of the core's threads: never use them there.
    global _reaper, _reaper_lock, _reaper_busy
    _live.clear()
    _dispatchers.clear()
    _authorizers.clear()
    _reaper = None
    _reaper_lock = threading.Lock()  # another thread may have held it at fork time
    _reaper_busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


class _Dispatcher:
    """Fans an event out to the ``on_event`` callback and the open :class:`EventStream` s."""

    def __init__(self) -> None:
        self.callback: Optional[Callable[[Event], Any]] = None
        self._lock = threading.Lock()
        self._streams: List["EventStream"] = []
        self.ended = False

    def add(self, stream: "EventStream") -> bool:
        with self._lock:
            if self.ended:
                return False
            self._streams.append(stream)
            return True

    def remove(self, stream: "EventStream") -> None:
        with self._lock:
            try:
                self._streams.remove(stream)
            except ValueError:
                pass

    def dispatch(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            # Each consumer gets its own parsed copy, so one cannot mutate another's event.
            stream._push(json.loads(text))
        callback = self.callback
        if callback is not None:
            try:
                callback(json.loads(text))
            except Exception:
                logger.exception("herald: on_event callback %r raised; the event is dropped", callback)

    def end(self) -> None:
        with self._lock:
            self.ended = True
            streams = list(self._streams)
            self._streams.clear()
        for stream in streams:
            stream._end()


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class EventStream:
    """Events of one :class:`Server`, as an iterator *and* an async iterator.

    Created by :meth:`Server.events`; it buffers every event from the moment it is created, so
    nothing is missed between creating it and starting to iterate. Iteration ends when the
    server is closed (after the buffered events are consumed) or when the stream is closed.

    Synchronous use (blocks the calling thread)::

        with server.events() as events:
            for event in events:
                ...

    Asynchronous use (never blocks the event loop; works with any number of loops/threads)::

        async with server.events() as events:
            async for event in events:
                ...

    Events are pushed from Herald's event thread without blocking it. If more than
    ``max_pending`` events are waiting, the oldest are dropped (counted in :attr:`dropped`,
    with a warning logged).
    """

    def __init__(self, server: "Server", max_pending: int = 10_000) -> None:
        if max_pending < 1:
            raise InvalidArgumentError("max_pending must be >= 1")
        self._server = server  # keeps the server alive while the stream is in use
        self._max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._items: Deque[Event] = collections.deque()
        self._waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]] = []
        self._ended = False
        self._closed = False
        #: Number of events dropped because more than ``max_pending`` were waiting.
        self.dropped = 0
        if not server._dispatcher.add(self):
            self._ended = True

    # -- producer side (Herald's event thread) --------------------------------------------

    def _push(self, event: Event) -> None:
        with self._cond:
            if self._ended or self._closed:
                return
            overflow = len(self._items) >= self._max_pending
            if overflow:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        if overflow:
            logger.warning("herald: event stream overflow (max_pending=%d); oldest event dropped", self._max_pending)
        self._wake_async(waiters)

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        self._wake_async(waiters)

    @staticmethod
    def _wake_async(waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]]) -> None:
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is closed; nobody is waiting any more
                pass

    # -- consumer side --------------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Event:
        """Return the next event, blocking the calling thread.

        Raises:
            TimeoutError: no event arrived within ``timeout`` seconds.
            StoppedError: the stream is exhausted (server closed, or stream closed).
        """
        with self._cond:
            ready = self._cond.wait_for(lambda: self._items or self._ended or self._closed, timeout)
            if not ready:
                raise TimeoutError(f"no Herald event within {timeout} s")
            if self._items:
                return self._items.popleft()
        raise StoppedError("event stream is closed")

    async def aget(self, timeout: Optional[float] = None) -> Event:
        """Return the next event without blocking the running event loop.

        Cancelling the awaiting task never loses an event.

        Raises:
            TimeoutError: no event arrived within ``timeout`` seconds.
            StoppedError: the stream is exhausted (server closed, or stream closed).
        """
        if timeout is None:
            return await self._next_async()
        return await asyncio.wait_for(self._next_async(), timeout)

    async def _next_async(self) -> Event:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self._ended or self._closed:
                    raise StoppedError("event stream is closed")
                fut: "asyncio.Future[None]" = loop.create_future()
                self._waiters.append((loop, fut))
            try:
                await fut
            finally:
                if not fut.done():  # cancelled: unregister so the producer does not wake it
                    with self._cond:
                        try:
                            self._waiters.remove((loop, fut))
                        except ValueError:
                            pass

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return self.get()
        except StoppedError:
            raise StopIteration from None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._next_async()
        except StoppedError:
            raise StopAsyncIteration from None

    def pending(self) -> int:
        """Number of buffered events not consumed yet."""
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        """Stop receiving events; iteration ends once the buffered events are consumed."""
        self._server._dispatcher.remove(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        self._wake_async(waiters)

    async def aclose(self) -> None:
        """Async alias of :meth:`close`."""
        self.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Authorization
# --------------------------------------------------------------------------------------------


def _reply_raw(key: int, request_id: int, decision: bytes) -> Optional[int]:
    """herald_authorize_reply for server ``key``; ``None`` if that server is closed.

    Returns the status and, on failure, logs nothing: callers decide. Safe against a
    concurrent close: the core checks handles against its registry (a stopped handle gives
    HERALD_ERR_INVALID_HANDLE, never a crash).
    """
    handle = _live.get(key)
    if handle is None:
        return None
    return int(_ffi.lib().herald_authorize_reply(handle, request_id, decision))


class _AuthGate:
    """The Python side of one server's authorizer: calls the host's function and replies."""

    def __init__(self, key: int, timeout_s: float) -> None:
        self.key = key
        self.timeout_s = timeout_s
        # (callback, loop) replaced as a whole, so a worker thread never sees a torn pair.
        self.state: Optional[Tuple[Authorizer, Optional[asyncio.AbstractEventLoop]]] = None
        self.lock = threading.Lock()  # serialises set_authorizer (Python state + C install)
        self._pending: "set[concurrent.futures.Future[Any]]" = set()
        self._pending_lock = threading.Lock()

    # -- on a Herald worker thread --------------------------------------------------------

    def handle(self, request_id: int, raw: bytes) -> None:
        state = self.state
        if state is None:
            # Cleared while the core was already asking: nobody to ask.
            self.finish(request_id, AuthDecision(False, reason="no authorizer installed"))
            return
        callback, loop = state
        try:
            request = AuthRequest.from_json(request_id, raw.decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - a malformed request must not crash the thread
            logger.exception("herald: cannot decode authorization request %d; denied", request_id)
            self.finish(request_id, AuthDecision(False, reason="undecodable request"))
            return
        try:
            result = callback(request)
        except BaseException:  # noqa: BLE001 - any failure of the host's code denies
            # The request itself is not logged: it may carry tokens and cookies.
            logger.exception(
                "herald: authorizer %r raised on %s request %d; denied", callback, request.type, request_id
            )
            self.finish(request_id, AuthDecision(False, reason="the authorizer raised an exception"))
            return
        if inspect.isawaitable(result):
            self.schedule(request_id, result, loop)
        else:
            self.finish(request_id, result)

    def schedule(self, request_id: int, awaitable: Any, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """Run an async authorizer's coroutine on ``loop``; reply when it completes."""
        if loop is None:
            logger.error(
                "herald: the authorizer returned an awaitable but no event loop was given "
                "(Server.set_authorizer(..., loop=...)); request %d denied",
                request_id,
            )
            _close_awaitable(awaitable)
            self.finish(request_id, AuthDecision(False, reason="no event loop for the async authorizer"))
            return

        async def bounded() -> Any:
            # The core denies an unanswered request after auth.authorizer_timeout_ms; cancel
            # the coroutine then, rather than let it run on for nothing.
            return await asyncio.wait_for(awaitable, self.timeout_s)

        coro = bounded()
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            _close_awaitable(awaitable)
            logger.error("herald: the authorizer's event loop is closed; request %d denied", request_id)
            self.finish(request_id, AuthDecision(False, reason="the authorizer's event loop is closed"))
            return
        with self._pending_lock:
            self._pending.add(fut)
        fut.add_done_callback(lambda f: self._async_done(request_id, f))

    def _async_done(self, request_id: int, fut: "concurrent.futures.Future[Any]") -> None:
        # Runs on the loop's thread (or on the thread that cancelled the future).
        with self._pending_lock:
            self._pending.discard(fut)
        if fut.cancelled():
            self.finish(request_id, AuthDecision(False, reason="the authorizer was cancelled"), quiet=True)
            return
        exc = fut.exception()
        if exc is None:
            self.finish(request_id, fut.result())
        elif isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            logger.warning(
                "herald: async authorizer did not answer request %d within %g s; denied", request_id, self.timeout_s
            )
            self.finish(request_id, AuthDecision(False, reason="timeout"), quiet=True)
        else:
            logger.error("herald: async authorizer raised on request %d; denied", request_id, exc_info=exc)
            self.finish(request_id, AuthDecision(False, reason="the authorizer raised an exception"))

    def finish(self, request_id: int, result: Any, quiet: bool = False) -> None:
        """Send the host's answer. ``None`` means the host replies later itself."""
        if result is None:
            return
        try:
            data = decision_json(result)
        except HeraldError as exc:
            logger.error("herald: the authorizer returned an invalid decision for request %d (%s); denied", request_id, exc)
            data = deny_json("invalid decision")
        status = _reply_raw(self.key, request_id, data)
        if status == Status.ERR_INVALID_JSON:
            # The core rejected the decision (e.g. a userId it does not accept).
            logger.error(
                "herald: the core rejected the authorizer's decision for request %d (%s); denied",
                request_id,
                _ffi.last_error(),
            )
            _reply_raw(self.key, request_id, deny_json("invalid decision"))
        elif status == Status.ERR_INVALID_ARGUMENT and not quiet:
            logger.warning(
                "herald: authorization request %d was already answered or timed out; the decision is ignored",
                request_id,
            )
        elif status not in (None, Status.OK, Status.ERR_INVALID_ARGUMENT, Status.ERR_INVALID_HANDLE, Status.ERR_STOPPED):
            logger.error("herald: replying to authorization request %d failed: %s", request_id, _ffi.last_error())

    # -- on close ---------------------------------------------------------------------------

    def cancel_pending(self) -> None:
        with self._pending_lock:
            pending = list(self._pending)
        for fut in pending:
            fut.cancel()


def _close_awaitable(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)  # a coroutine never awaited: no RuntimeWarning
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001
            pass


def _authorizer_timeout_s(config: Mapping[str, Any]) -> float:
    auth = config.get("auth")
    ms = auth.get("authorizer_timeout_ms") if isinstance(auth, Mapping) else None
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
        return float(ms) / 1000.0
    return 5.0  # the core's default


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class Server:
    """A running Herald WebSocket server, owned by this Python object.

    ``Server(**config)`` starts the core (its own Tokio runtime threads) and returns once the
    listening socket is bound. Configuration keys are the core's JSON keys, passed as keyword
    arguments, e.g. ``Server(port=0, heartbeat_interval_ms=10_000, history={"size": 100})``;
    unknown keys and bad values are rejected by the core with :class:`InvalidConfigError`.

    Every method may be called from any thread and from inside an asyncio program: sending
    methods only enqueue and never block on the network.

    Closing: call :meth:`close` (or use ``with`` / ``async with``). A server that is
    garbage-collected or still running at interpreter exit is stopped automatically. After
    closing, every method except :meth:`close` raises :class:`ServerClosedError`.

    Messages are dicts (any JSON-serializable mapping) or already-encoded JSON text; the core
    requires a JSON object. File paths in the configuration (``tls={"cert": ..., "key": ...}``)
    may be ``str`` or :class:`os.PathLike`.
    """

    def __init__(self, **config: "Unpack[ServerConfig]") -> None:
        # Set first so that __repr__/close work even if starting fails below.
        self._key = 0
        self._port = 0
        self._dispatcher = _Dispatcher()
        self._auth = _AuthGate(0, _authorizer_timeout_s(config))
        self._finalizer: "Optional[weakref.finalize[Any, Any]]" = None
        try:
            config_json = json.dumps(config, allow_nan=False, default=_config_default).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise NotSerializableError(f"server configuration is not JSON-serializable: {exc}") from exc
        lib = _ffi.lib()
        _logging.ensure_forwarding()
        handle = lib.herald_start(config_json)
        if not handle:
            # Both read on this thread, right after the failure.
            message = _ffi.last_error()
            raise _start_error(_ffi.last_status(), message)
        key = next(_keys)
        _live[key] = handle
        self._key = key
        self._auth.key = key
        self._port = int(lib.herald_port(handle))
        _dispatchers[key] = weakref.ref(self._dispatcher)
        _authorizers[key] = weakref.ref(self._auth)
        _ensure_reaper()
        finalizer = weakref.finalize(self, _finalize_server, key)
        finalizer.atexit = False  # the module's exit hook stops what is still running
        self._finalizer = finalizer
        # The handler is installed once, for the server's whole life; the dispatcher decides
        # who gets each event (the on_event callback and the open event streams).
        try:
            _check(lib.herald_set_event_handler(handle, _on_core_event, key))
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------

    def _handle(self) -> int:
        handle = _live.get(self._key)
        if handle is None:
            raise StoppedError("the Herald server is closed")
        return handle

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` was called (or the server was stopped at exit)."""
        return self._key not in _live

    @property
    def port(self) -> int:
        """The TCP port the server listens on (the real one when started with ``port=0``)."""
        self._handle()
        return self._port

    def close(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop the server gracefully: flush queued messages, close clients with code 1001.

        Waits at most ``timeout`` seconds (``None``: no limit), after which the core forces the
        shutdown. Events the core had queued are still delivered (to the callback and the
        streams) while it stops; then event streams end. Returns ``True`` for a graceful stop,
        ``False`` if it had to be forced. All resources are released in both cases. Calling
        ``close()`` again is a no-op returning ``True``. Safe to call from any thread,
        including from inside the ``on_event`` callback (then the events still queued are
        dropped: no callback follows the stop). Called from inside this server's authorizer,
        it cannot wait (the stop waits for the authorizer calls under way, this one
        included): the server is closed for Python at once, stopped on a background thread
        once the authorizer returns, and ``True`` is returned. Pending ``async`` authorizer
        calls are cancelled; their requests are denied.

        Raises:
            HeraldError: on an unexpected failure reported by the core (the server is released
                anyway).
        """
        timeout_ms = _timeout_ms(timeout)
        handle = _live.pop(self._key, None)  # from here on every other call raises
        if self._finalizer is not None:
            self._finalizer.detach()
        if handle is None:
            self._end_events()
            return True
        if self._key in _authorizing_keys():
            self._end_events()
            self._auth.cancel_pending()
            _ensure_reaper()
            _reap_queue.put((self._key, handle, timeout_ms))
            return True
        # No Python lock is held across herald_stop: the event thread may need the GIL and
        # any lock the user's callback takes, and the core waits for it. During the stop the
        # core hands the events still queued to the callback and the streams; then no more.
        try:
            status = _stop_handle(self._key, handle, timeout_ms)
        finally:
            self._end_events()
            self._auth.cancel_pending()
        if status == Status.OK:
            return True
        if status == Status.ERR_TIMEOUT:
            logger.warning("herald: server did not stop within %s s; shutdown was forced", timeout)
            return False
        raise error_from_status(status, _ffi.last_error())

    def _end_events(self) -> None:
        self._dispatcher.callback = None
        self._dispatcher.end()

    async def aclose(self, timeout: Optional[float] = 5.0) -> bool:
        """:meth:`close` without blocking the running event loop (runs it in a worker thread)."""
        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"port={self._port}"
        return f"<herald.Server {state}>"

    # -- AI notifications -----------------------------------------------------------------

    def notify_ai_start(self, session_id: str, task: Message) -> None:
        """Send ``{"type": "ai_start", "sessionId": ..., "task": task, ...}`` to the session's subscribers."""
        _check(_ffi.lib().herald_notify_ai_start(self._handle(), _text(session_id, "session_id"), _json(task, "task")))

    def notify_ai_progress(self, session_id: str, progress: Message) -> None:
        """Send an ``ai_progress`` notification (field ``"progress"``) to the session's subscribers."""
        _check(
            _ffi.lib().herald_notify_ai_progress(
                self._handle(), _text(session_id, "session_id"), _json(progress, "progress")
            )
        )

    def notify_ai_complete(self, session_id: str, result: Message) -> None:
        """Send an ``ai_complete`` notification (field ``"result"``) to the session's subscribers."""
        _check(
            _ffi.lib().herald_notify_ai_complete(self._handle(), _text(session_id, "session_id"), _json(result, "result"))
        )

    def notify_ai_error(self, session_id: str, error: Message) -> None:
        """Send an ``ai_error`` notification (field ``"error"``) to the session's subscribers."""
        _check(_ffi.lib().herald_notify_ai_error(self._handle(), _text(session_id, "session_id"), _json(error, "error")))

    # -- messaging ------------------------------------------------------------------------

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every connected client (a ``timestamp`` is added if absent)."""
        _check(_ffi.lib().herald_broadcast(self._handle(), _json(message, "message")))

    def broadcast_to_user(self, user_id: str, message: Message) -> None:
        """Send ``message`` to every client connected with ``?userId=<user_id>`` (channel ``user:<id>``)."""
        _check(
            _ffi.lib().herald_broadcast_to_user(self._handle(), _text(user_id, "user_id"), _json(message, "message"))
        )

    def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to the subscribers of ``channel`` (``"session:S"`` is session ``S``)."""
        _check(_ffi.lib().herald_publish(self._handle(), _text(channel, "channel"), _json(message, "message")))

    def send(self, client_id: str, message: Message) -> None:
        """Send ``message`` to one client.

        Raises:
            UnknownClientError: no client with that id is connected.
        """
        _check(_ffi.lib().herald_send(self._handle(), _text(client_id, "client_id"), _json(message, "message")))

    # -- introspection --------------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Server statistics (the same JSON as ``GET /api/ws/stats``) as a dict."""
        out = ctypes.c_void_p()
        _check(_ffi.lib().herald_stats(self._handle(), ctypes.byref(out)))
        stats: Dict[str, Any] = json.loads(_ffi.take_string(out))
        return stats

    def history(self, channel: str) -> List[Dict[str, Any]]:
        """Messages retained for ``channel`` (oldest first), as the core's history returns them.

        Retention is configured with ``Server(history={"size": ..., "ttl_ms": ..., "max_bytes": ...})``.
        """
        out = ctypes.c_void_p()
        _check(_ffi.lib().herald_history(self._handle(), _text(channel, "channel"), ctypes.byref(out)))
        history: List[Dict[str, Any]] = json.loads(_ffi.take_string(out))
        return history

    def presence(self, channel: str) -> Presence:
        """Who is in ``channel``: every subscriber, with its user id and the status it set.

        At most ``presence.max_members`` members are listed (``total`` counts them all). With
        the Redis broker, the members of every node (this call then waits for Redis, and raises
        :class:`herald.UnavailableError` when Redis does not answer).

        Raises:
            InvalidArgumentError: a bad channel name, or ``presence={"enabled": False}``.
        """
        out = ctypes.c_void_p()
        _check(_ffi.lib().herald_presence(self._handle(), _text(channel, "channel"), ctypes.byref(out)))
        return Presence.from_json(_ffi.take_string(out))

    # -- events ---------------------------------------------------------------------------

    def on_event(self, callback: Optional[_F]) -> Optional[_F]:
        """Set (or with ``None``, clear) the function called with every event, as a dict.

        The callback runs on **Herald's dedicated event thread** (not the thread that created
        the server, not an asyncio event loop), one event at a time, in order. Keep it short:
        while it runs, later events wait. To hand events to asyncio, use ``async for event in
        server.events()`` or ``loop.call_soon_threadsafe``. An exception raised by the callback
        is logged on the ``"herald"`` logger and swallowed; the server keeps running. The
        callback may call any server method, including :meth:`close`.

        Returns ``callback``, so it can be used as a decorator::

            @server.on_event
            def handle(event: dict) -> None:
                print(event["type"])
        """
        if callback is not None:
            if not callable(callback):
                raise InvalidArgumentError(f"callback must be callable, not {type(callback).__name__}")
            if inspect.iscoroutinefunction(callback):
                raise InvalidArgumentError(
                    "on_event needs a plain function (it runs on Herald's event thread); "
                    "for async code use `async for event in server.events()`"
                )
        self._handle()
        self._dispatcher.callback = callback
        return callback

    def events(self, max_pending: int = 10_000) -> EventStream:
        """Return a new :class:`EventStream` receiving every event from now on.

        Use ``for event in server.events()`` in a thread or ``async for event in
        server.events()`` in asyncio code; iteration ends when the server is closed. Several
        streams (and an ``on_event`` callback) may be active at once; each sees every event.
        """
        self._handle()
        return EventStream(self, max_pending)

    # -- authorization ----------------------------------------------------------------------

    def set_authorizer(
        self, callback: Optional[Authorizer], *, loop: Optional[asyncio.AbstractEventLoop] = None
    ) -> None:
        """Install (or, with ``None``, remove) the host authorizer.

        ``callback(request: AuthRequest)`` is asked on every connect, and on subscribes to
        channels that neither the client's token, the channels granted on connect nor
        ``auth.public_channels`` allow (another user's ``user:`` channel is refused without
        asking). It returns:

        * an :class:`AuthDecision`, ``True``/``False`` or a mapping in the core's JSON form
          (``{"allow": True, "userId": "u", "channels": ["session:u-*"]}``): the answer is
          sent at once;
        * ``None``: no answer yet; the host answers later, from any thread, with
          :meth:`authorize_reply` (``request.id``).

        Installing an authorizer turns on secure mode (``?userId=`` is ignored, channel rules
        apply); removing it returns to open mode unless ``auth.required`` or a JWT key is
        configured.

        **Thread**: the callback runs on a Herald worker thread (the core's blocking pool;
        never an I/O thread, never the event thread, never your event loop). Several requests
        may be asked at once on different threads, so the callback must be thread-safe. It
        may block (a database lookup) but holds a worker thread meanwhile; the request is
        denied by the core if not answered within ``auth.authorizer_timeout_ms`` (5 s by
        default), after which :meth:`authorize_reply` raises :class:`InvalidArgumentError`.

        **asyncio**: ``callback`` may be an ``async def`` function (or return an awaitable). It
        is then run on ``loop`` (default: the loop running when ``set_authorizer`` is called)
        with :func:`asyncio.run_coroutine_threadsafe`, so the worker thread is released at
        once; it is cancelled after ``auth.authorizer_timeout_ms`` and by :meth:`close`.

        **Failures**: an exception raised by the callback (or the coroutine) is logged on the
        ``"herald"`` logger and the request is denied; so is a return value that is not a
        decision, or a decision the core rejects. Requests are never logged (they may carry
        tokens and cookies).

        Replacing or removing the authorizer affects requests that reach Python afterwards:
        one already being asked when it is removed is denied.

        Raises:
            ServerClosedError: the server is closed.
            InvalidArgumentError: ``callback`` is not callable, or is an ``async def``
                function and no event loop is running nor given.
        """
        if callback is not None:
            if not callable(callback):
                raise InvalidArgumentError(f"authorizer must be callable, not {type(callback).__name__}")
            if loop is None and inspect.iscoroutinefunction(callback):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    raise InvalidArgumentError(
                        "an async authorizer needs an event loop: call set_authorizer from a "
                        "coroutine or pass loop=..."
                    ) from None
        gate = self._auth
        with gate.lock:
            handle = self._handle()
            lib = _ffi.lib()
            if callback is None:
                _check(lib.herald_set_authorizer(handle, _NO_AUTHORIZER, None))
                gate.state = None
            else:
                gate.state = (callback, loop)
                _check(lib.herald_set_authorizer(handle, _on_core_authorize, self._key))

    def authorize_reply(self, request: "Union[int, AuthRequest]", decision: Decision) -> None:
        """Answer an authorization request the authorizer left open (it returned ``None``).

        ``request`` is an :class:`AuthRequest` or its ``id``; ``decision`` an
        :class:`AuthDecision`, ``True``/``False`` or a mapping in the core's JSON form. May be
        called from any thread, any time before ``auth.authorizer_timeout_ms`` runs out; it
        never blocks (fine inside coroutines).

        Raises:
            InvalidArgumentError: the request was already answered, timed out, or is unknown.
            InvalidJsonError: the core rejected the decision (e.g. a bad ``user_id``).
            ServerClosedError: the server is closed.
        """
        request_id = request.id if isinstance(request, AuthRequest) else request
        if isinstance(request_id, bool) or not isinstance(request_id, int) or not 0 <= request_id < 2**64:
            raise InvalidArgumentError(f"request must be an AuthRequest or its id, not {request!r}")
        data = decision_json(decision)
        _check(_ffi.lib().herald_authorize_reply(self._handle(), request_id, data))


# herald_start returns NULL on failure; herald_last_status gives the status. Start failures are
# StartError subclasses where one fits (bad configuration, cannot bind), so that
# `except herald.StartError` catches every failure to start.
_START_ERRORS: Dict[int, Type[HeraldError]] = {
    Status.ERR_INVALID_CONFIG: InvalidConfigError,
    Status.ERR_INVALID_JSON: InvalidConfigError,
    Status.ERR_INVALID_UTF8: InvalidConfigError,
    Status.ERR_INVALID_ARGUMENT: InvalidConfigError,
    Status.ERR_IO: StartIOError,
    Status.ERR_PANIC: PanicError,
}


def _start_error(status: int, message: str) -> HeraldError:
    """Map a herald_start failure (NULL result + herald_last_status/herald_last_error)."""
    try:
        code: Optional[Status] = Status(status)
    except ValueError:
        code = None
    cls = _START_ERRORS.get(status, StartError)
    return cls(message or f"herald_start failed (status {code.name if code is not None else status})", code)


def _config_default(value: Any) -> Any:
    """json.dumps hook for the configuration: paths (tls cert/key) become strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
