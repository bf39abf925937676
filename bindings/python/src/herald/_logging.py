"""The core's log records in Python's :mod:`logging`.

Records arrive on Herald's own log thread (never a network thread) and are logged to the
logger named after their Rust module: ``herald.connection``, ``herald.server`` … (children
of ``herald``). The first :class:`~herald.Server` routes them at the level the ``herald``
logger has then; :func:`forward_logs` sets the level at any time. Routing is process-wide,
like the core's logging.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
from typing import Dict, Optional

from . import _ffi
from .errors import error_from_status

__all__ = ["forward_logs"]

#: Python's level for each ``herald_log_level`` (TRACE is below DEBUG).
_PYTHON_LEVEL = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: 5}

_lock = threading.Lock()
_configured = False
#: The installed handler's token (its user_data), 0 if none; each installation's drop
#: callback sets its event once the core is done with it (after its last call).
_installed = 0
_released: Dict[int, threading.Event] = {}
_tokens = itertools.count(1)


def _core_level(level: int) -> int:
    """The ``herald_log_level`` that delivers Python's `level` and everything above it."""
    if level <= 5:
        return 5
    if level <= logging.DEBUG:
        return 4
    if level <= logging.INFO:
        return 3
    if level <= logging.WARNING:
        return 2
    return 1


def _on_record(_user_data: Optional[int], level: int, target: bytes, message: bytes) -> None:
    try:
        name = target.decode("utf-8", "replace").replace("::", ".")
        logging.getLogger(name).log(_PYTHON_LEVEL.get(level, logging.ERROR), message.decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - a failing handler must not lose the log thread
        pass


def _on_drop(user_data: Optional[int]) -> None:
    released = _released.pop(user_data or 0, None)
    if released is not None:
        released.set()


# Module-global: the core holds these function pointers for the life of the process.
_CALLBACK = _ffi.LOG_CALLBACK(_on_record)
_DROP = _ffi.DROP_CALLBACK(_on_drop)


def forward_logs(level: Optional[int] = logging.DEBUG) -> None:
    """Route the core's records at `level` (a :mod:`logging` level) and above into
    :mod:`logging`; ``None`` stops routing them."""
    global _configured, _installed
    lib = _ffi.lib()
    with _lock:
        if level is None:
            status = lib.herald_set_log_handler(1, _ffi.LOG_CALLBACK(), None, _ffi.DROP_CALLBACK())
            if not status:
                _installed = 0
        else:
            token = next(_tokens)
            _released[token] = threading.Event()
            # The core owns the token from here, failure included (the drop releases it).
            status = lib.herald_set_log_handler(_core_level(level), _CALLBACK, token, _DROP)
            if not status:
                _installed = token
        if status:
            raise error_from_status(status, _ffi.last_error())
        _configured = True


@atexit.register
def _stop_forwarding_at_exit() -> None:
    # Records arrive on Herald's log thread; one delivered while the interpreter finalizes
    # would end that thread inside the core (and the process). Remove the handler and wait
    # (bounded) until the core is done with it: its drop runs after its last call.
    token = _installed
    released = _released.get(token)
    if not token or released is None:
        return
    try:
        forward_logs(None)
    except Exception:  # noqa: BLE001 - a host with its own tracing subscriber: nothing to stop
        return
    released.wait(5)


def ensure_forwarding() -> None:
    """Called by the first server: route at the ``herald`` logger's level, unless
    :func:`forward_logs` already chose."""
    if _configured:
        return
    try:
        forward_logs(logging.getLogger("herald").getEffectiveLevel())
    except Exception:  # noqa: BLE001 - a host with its own tracing subscriber keeps it
        pass
