"""The :class:`Server` object: a thin, safe Python face over the Herald C ABI."""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import json
import logging
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Type, TypeVar, Union

from . import _ffi, _logging
from ._auth import AuthRequest, Decision, decision_json
from ._authorizer import Authorizer, _AuthGate, _authorizer_timeout_s
from ._convert import _check, _json, _text, _timeout_ms
from ._events import Event, EventStream, _Dispatcher
from ._ffi import Status
from ._lifecycle import (
    _NO_AUTHORIZER,
    _NO_DROP,
    _authorizers,
    _dispatchers,
    _ensure_reaper,
    _finalize_server,
    _keys,
    _live,
    _on_core_authorize,
    _on_core_drop,
    _on_core_event,
    _stop_handle,
    _tokens,
)
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

#: A message: a JSON object given as a mapping, or already-encoded JSON text (``str``/``bytes``).
Message = Union[Mapping[str, Any], str, bytes]

_F = TypeVar("_F", bound=Callable[..., Any])


def core_version() -> str:
    """Version string of the loaded core library (``herald_version()``)."""
    raw = _ffi.lib().herald_version()
    return raw.decode("utf-8", "replace") if raw else ""


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
        out = ctypes.c_void_p()
        status = lib.herald_start(config_json, ctypes.byref(out))
        if status:
            # Read on this thread, right after the failure.
            raise _start_error(status, _ffi.last_error())
        handle = int(out.value or 0)
        key = next(_keys)
        _live[key] = handle
        self._key = key
        self._auth.key = key
        _ensure_reaper()
        finalizer = weakref.finalize(self, _finalize_server, key)
        finalizer.atexit = False  # the module's exit hook stops what is still running
        self._finalizer = finalizer
        # The handler is installed once, for the server's whole life; the dispatcher decides
        # who gets each event (the on_event callback and the open event streams).
        try:
            port = ctypes.c_uint16()
            _check(lib.herald_port(handle, ctypes.byref(port)))
            self._port = port.value
            token = next(_tokens)
            _dispatchers[token] = weakref.ref(self._dispatcher)
            _check(lib.herald_set_event_handler(handle, _on_core_event, token, _on_core_drop))
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
        dropped: no callback follows the stop) and from inside this server's authorizer (the
        core's stop waits for the authorizer calls under way except the one making it).
        Pending ``async`` authorizer calls are cancelled; their requests are denied.

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
        # No Python lock is held across herald_stop: the event thread may need the GIL and
        # any lock the user's callback takes, and the core waits for it. During the stop the
        # core hands the events still queued to the callback and the streams; then no more.
        try:
            status = _stop_handle(handle, timeout_ms)
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

    def notify_ai_delta(self, session_id: str, delta: Message) -> None:
        """Send an ``ai_delta`` (field ``"delta"``): a piece of a job's token stream,
        ``{"jobId": ..., "text": "..."}`` (``text`` required), appended to the job's text.

        A subscriber that falls behind gets a job's consecutive deltas merged into one
        instead of being evicted; one that arrives late gets the text so far in its
        ``jobs_snapshot``.
        """
        _check(_ffi.lib().herald_notify_ai_delta(self._handle(), _text(session_id, "session_id"), _json(delta, "delta")))

    def notify_ai_cancelled(self, session_id: str, cancelled: Message) -> None:
        """Send an ``ai_cancelled`` (field ``"cancelled"``, e.g. ``{"jobId": ...}``): the job
        ended because it was cancelled, typically after a ``cancel_requested`` event."""
        _check(
            _ffi.lib().herald_notify_ai_cancelled(
                self._handle(), _text(session_id, "session_id"), _json(cancelled, "cancelled")
            )
        )

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

    # -- flow control ---------------------------------------------------------------------

    @property
    def backpressure(self) -> bool:
        """``True`` while the host should slow down: a healthy client is over half of its queue
        budget, or the publish queue is over half full. Cheap (two counters in the core): poll
        it after publishing and :meth:`wait_drained` (or ``await`` :meth:`drain`) while it is
        ``True``."""
        on = ctypes.c_int()
        _check(_ffi.lib().herald_backpressure(self._handle(), ctypes.byref(on)))
        return bool(on.value)

    def wait_drained(self, timeout: Optional[float] = 5.0) -> None:
        """Block until the clients have read what was published: every call made before
        this one is fanned out and every healthy client's backlog is under a quarter of its
        queue budget (``client_queue_size`` / ``client_queue_bytes``).

        Call it between batches of a burst, or whenever ``stats()["backpressure"]`` is true,
        so fast publishing slows down to what the clients read instead of evicting them. A
        client being closed does not count; one that stopped reading counts until the
        write-stall rule evicts it (``heartbeat_timeout_ms``). ``timeout`` is in seconds
        (``None``: no limit; ``0``: only look, without blocking). The GIL is released while
        it waits.

        Raises:
            HeraldTimeoutError: (a ``TimeoutError``) not drained within ``timeout``.
            StoppedError: the server stopped meanwhile.
        """
        timeout_ms = _timeout_ms(timeout)
        _check(_ffi.lib().herald_wait_drained(self._handle(), timeout_ms))

    async def drain(self, timeout: Optional[float] = 5.0) -> None:
        """:meth:`wait_drained` without blocking the running event loop (runs it in a
        worker thread)."""
        await asyncio.to_thread(self.wait_drained, timeout)

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

    def jobs(self, session_id: str) -> Dict[str, Any]:
        """The session's jobs as ``{"sessionId", "seq", "epoch", "jobs": [...]}``: each job's
        ``jobId`` (``None`` for the implicit one), ``state`` (running, complete, error,
        cancelled), ``task``, ``progress``, ``text`` (its deltas so far), ``result`` /
        ``error`` / ``cancelled``, ``startedAt`` and ``endedAt``, as of ``seq``. The same as
        ``GET /api/jobs/{sessionId}``; for a page rendered on the server."""
        out = ctypes.c_void_p()
        _check(_ffi.lib().herald_jobs(self._handle(), _text(session_id, "session_id"), ctypes.byref(out)))
        jobs: Dict[str, Any] = json.loads(_ffi.take_string(out))
        return jobs

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
                _check(lib.herald_set_authorizer(handle, _NO_AUTHORIZER, None, _NO_DROP))
                gate.state = None
            else:
                gate.state = (callback, loop)
                token = next(_tokens)
                _authorizers[token] = (self._key, weakref.ref(gate))
                # The core owns the token from here, failure included (the drop removes it).
                _check(lib.herald_set_authorizer(handle, _on_core_authorize, token, _on_core_drop))

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


# herald_start returns its status like every call. Start failures are
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
    """Map a herald_start failure (its status + herald_last_error)."""
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
