"""Server handles and what the core calls back: the registry of live handles (one stop per
handle), the C callbacks and the tokens they get as user data, stops of servers that were
garbage-collected, at exit, and after a fork."""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from . import _ffi
from ._auth import deny_json
from ._ffi import Status

if TYPE_CHECKING:  # pragma: no cover
    from ._authorizer import _AuthGate
    from ._events import _Dispatcher

logger = logging.getLogger("herald")

#: Timeout used when a server is stopped because it was garbage-collected or at exit.
_IMPLICIT_STOP_TIMEOUT_MS = 5000

# --------------------------------------------------------------------------------------------
# Process-wide registries.
#
# _live maps a server key to its raw handle. Whoever pops the key owns the one and only
# herald_stop call for that handle (dict.pop is atomic under the GIL), so close(), the
# garbage-collection finalizer and the exit hook can race without double-stopping.
#
# Each installation of a callback in the core gets a token of its own, passed as user_data:
# _dispatchers maps it to a weak reference to the server's event dispatcher, _authorizers to
# the server's key and a weak reference to its authorizer gate. The core hands the token back
# to the drop callback after that installation's last call (replaced, cleared, server
# stopped, or at once if installing failed), which removes the entry. The C callbacks
# themselves are module-level CFUNCTYPE objects that are never freed: a freed ctypes thunk
# would crash the process if the core still called it.
# --------------------------------------------------------------------------------------------

_live: Dict[int, int] = {}
_dispatchers: Dict[int, "weakref.ReferenceType[_Dispatcher]"] = {}
_authorizers: Dict[int, "Tuple[int, weakref.ReferenceType[_AuthGate]]"] = {}
_keys = itertools.count(1)
_tokens = itertools.count(1)


def _stop_handle(handle: int, timeout_ms: int) -> int:
    """The one herald_stop call for a handle already taken out of _live. When it returns, the
    core has run the drop callbacks of the event handler and of the authorizer (that of an
    authorizer call still running runs when the call returns)."""
    return int(_ffi.lib().herald_stop(handle, timeout_ms))


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
    entry = _authorizers.get(user_data or 0)
    key = entry[0] if entry is not None else 0
    try:
        gate = entry[1]() if entry is not None else None
        if gate is None:
            # The Server was garbage-collected (its stop is under way).
            _reply_raw(key, request_id, deny_json("the server is closing"))
            return
        gate.handle(int(request_id), request_json or b"{}")
    except BaseException:  # noqa: BLE001 - nothing may escape into the core
        try:
            logger.exception("herald: error while handling authorization request %s", request_id)
            _reply_raw(key, request_id, deny_json("internal error in the Python authorizer"))
        except BaseException:  # noqa: BLE001
            pass


# Same rule as the event callback: one module-level C callback, never freed.
_on_core_authorize = _ffi.AUTHORIZE_CALLBACK(_on_core_authorize_impl)
# A NULL herald_authorize_callback (ctypes refuses None for a declared function-pointer type).
_NO_AUTHORIZER = _ffi.AUTHORIZE_CALLBACK()


def _on_core_drop_impl(user_data: Optional[int]) -> None:
    # The core is done with this installation's token: called once, after its last call, on
    # whichever thread replaced, cleared or stopped it.
    token = user_data or 0
    _dispatchers.pop(token, None)
    _authorizers.pop(token, None)


_on_core_drop = _ffi.DROP_CALLBACK(_on_core_drop_impl)
# A NULL herald_drop_callback.
_NO_DROP = _ffi.DROP_CALLBACK()


# Servers garbage-collected without close() are stopped on a reaper thread: a graceful stop
# can take up to its timeout, and a GC pass runs at any allocation, on any thread, possibly
# holding locks the event callback needs. queue.SimpleQueue.put is documented as safe to call
# from finalizers.
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
        status = _stop_handle(handle, timeout_ms)
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
