"""The host authorizer's Python side: asks the host's function (plain or ``async``, run on its
event loop), turns what it returns into the core's decision, and replies."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from typing import Any, Callable, Mapping, Optional, Tuple

from . import _ffi
from ._auth import AuthDecision, AuthRequest, decision_json, deny_json
from ._ffi import Status
from ._lifecycle import _reply_raw
from .errors import HeraldError

logger = logging.getLogger("herald")

#: A host authorizer: a function (or ``async def``) taking an :class:`AuthRequest` and returning
#: a decision (:class:`AuthDecision`, ``True``/``False``, a mapping in the core's JSON form), or
#: ``None`` to answer later with :meth:`Server.authorize_reply`.
Authorizer = Callable[[AuthRequest], Any]


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
            # The core says how long it waits: cancel the coroutine then.
            timeout_s = self.timeout_s
            if isinstance(request.timeout_ms, int) and request.timeout_ms > 0:
                timeout_s = request.timeout_ms / 1000.0
            self.schedule(request_id, result, loop, timeout_s)
        else:
            self.finish(request_id, result)

    def schedule(
        self, request_id: int, awaitable: Any, loop: Optional[asyncio.AbstractEventLoop], timeout_s: float
    ) -> None:
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
            return await asyncio.wait_for(awaitable, timeout_s or None)

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
        fut.add_done_callback(lambda f: self._async_done(request_id, f, timeout_s))

    def _async_done(self, request_id: int, fut: "concurrent.futures.Future[Any]", timeout_s: float) -> None:
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
                "herald: async authorizer did not answer request %d within %g s; denied", request_id, timeout_s
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
    """The configured wait, until a request says the core's own (``timeoutMs``)."""
    auth = config.get("auth")
    ms = auth.get("authorizer_timeout_ms") if isinstance(auth, Mapping) else None
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
        return float(ms) / 1000.0
    return 0.0  # unknown yet: every request carries timeoutMs
