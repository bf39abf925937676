"""Exception hierarchy of the Herald binding.

Every error raised by :mod:`herald` is a :class:`HeraldError`. Errors coming from the core carry
its ``herald_status`` code (:attr:`HeraldError.status`) and the core's own message (read with
``herald_last_error`` on the calling thread right after the failing call). Each class also
derives from the closest built-in exception, so ``except ValueError`` / ``except TimeoutError``
/ ``except OSError`` keep working::

    HeraldError
    ├── HeraldLibraryError (ImportError)        the core library cannot be found or loaded
    ├── StartError                              herald_start failed (see InvalidConfigError, StartIOError)
    ├── InvalidArgumentError (ValueError)       HERALD_ERR_INVALID_ARGUMENT
    │   ├── NullArgumentError (TypeError)       HERALD_ERR_NULL_ARGUMENT (e.g. None passed)
    │   ├── InvalidUtf8Error                    HERALD_ERR_INVALID_UTF8
    │   ├── InvalidJsonError                    HERALD_ERR_INVALID_JSON
    │   │   └── NotSerializableError (TypeError)  message could not be encoded as JSON
    │   └── InvalidConfigError (StartError)     HERALD_ERR_INVALID_CONFIG
    ├── ServerClosedError (RuntimeError)        the server is closed
    │   ├── InvalidHandleError                  HERALD_ERR_INVALID_HANDLE
    │   └── StoppedError                        HERALD_ERR_STOPPED
    ├── UnknownClientError (LookupError)        HERALD_ERR_UNKNOWN_CLIENT
    ├── QueueFullError                          HERALD_ERR_QUEUE_FULL
    ├── LimitError                              HERALD_ERR_LIMIT (e.g. the channel table is full)
    ├── BrokerUnavailableError                  HERALD_ERR_UNAVAILABLE (Redis did not take it)
    ├── HeraldIOError (OSError)                 HERALD_ERR_IO
    │   └── StartIOError (StartError)           herald_start could not bind/start
    ├── HeraldTimeoutError (TimeoutError)       HERALD_ERR_TIMEOUT
    └── PanicError                              HERALD_ERR_PANIC (a bug in the core)
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from ._ffi import Status

__all__ = [
    "HeraldError",
    "HeraldLibraryError",
    "StartError",
    "InvalidArgumentError",
    "NullArgumentError",
    "InvalidUtf8Error",
    "InvalidJsonError",
    "NotSerializableError",
    "InvalidConfigError",
    "ServerClosedError",
    "InvalidHandleError",
    "StoppedError",
    "UnknownClientError",
    "QueueFullError",
    "LimitError",
    "BrokerUnavailableError",
    "HeraldIOError",
    "StartIOError",
    "HeraldTimeoutError",
    "PanicError",
    "error_from_status",
]


class HeraldError(Exception):
    """Base class of every Herald error.

    Attributes:
        message: human-readable message (the core's ``herald_last_error`` text when the error
            comes from the core).
        status: the core's ``herald_status`` code, or ``None`` when the error was detected by
            the Python binding before calling the core.
    """

    default_status: Optional[Status] = None

    def __init__(self, message: str, status: Optional[Status] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.default_status

    def __str__(self) -> str:
        return self.message


class HeraldLibraryError(HeraldError, ImportError):
    """The core shared library cannot be found, loaded, or lacks a required symbol."""


class StartError(HeraldError):
    """The server could not be started (``herald_start`` returned NULL)."""


class InvalidArgumentError(HeraldError, ValueError):
    """An argument was rejected (``HERALD_ERR_INVALID_ARGUMENT``)."""

    default_status = Status.ERR_INVALID_ARGUMENT


class NullArgumentError(InvalidArgumentError, TypeError):
    """A required argument was ``None`` (``HERALD_ERR_NULL_ARGUMENT``)."""

    default_status = Status.ERR_NULL_ARGUMENT


class InvalidUtf8Error(InvalidArgumentError):
    """A string was not valid UTF-8, e.g. contained a lone surrogate (``HERALD_ERR_INVALID_UTF8``)."""

    default_status = Status.ERR_INVALID_UTF8


class InvalidJsonError(InvalidArgumentError):
    """A message was not valid JSON or not a JSON object (``HERALD_ERR_INVALID_JSON``)."""

    default_status = Status.ERR_INVALID_JSON


class NotSerializableError(InvalidJsonError, TypeError):
    """A message could not be encoded as JSON by :func:`json.dumps` (never reached the core)."""


class InvalidConfigError(InvalidArgumentError, StartError):
    """The server configuration was rejected (``HERALD_ERR_INVALID_CONFIG``)."""

    default_status = Status.ERR_INVALID_CONFIG


class ServerClosedError(HeraldError, RuntimeError):
    """The server has been closed; no call other than ``close()`` is accepted any more."""

    default_status = Status.ERR_STOPPED


class InvalidHandleError(ServerClosedError):
    """The core does not know this server handle any more (``HERALD_ERR_INVALID_HANDLE``)."""

    default_status = Status.ERR_INVALID_HANDLE


class StoppedError(ServerClosedError):
    """The server is stopped (``HERALD_ERR_STOPPED``)."""

    default_status = Status.ERR_STOPPED


class UnknownClientError(HeraldError, LookupError):
    """No client with that id is connected (``HERALD_ERR_UNKNOWN_CLIENT``)."""

    default_status = Status.ERR_UNKNOWN_CLIENT


class QueueFullError(HeraldError):
    """The core's bounded queue is full; the message was not enqueued (``HERALD_ERR_QUEUE_FULL``)."""

    default_status = Status.ERR_QUEUE_FULL


class LimitError(HeraldError):
    """A configured bound is reached; nothing was queued (``HERALD_ERR_LIMIT``).

    For example a publication to a channel that does not exist yet while the channel table
    holds ``max_channels`` channels. Unlike :class:`QueueFullError` it does not pass by
    itself: retrying helps only once channels have been reclaimed (no subscribers and no
    history left) or with a larger ``max_channels``.
    """

    default_status = Status.ERR_LIMIT


class BrokerUnavailableError(HeraldError):
    """The Redis broker did not take the publication (``HERALD_ERR_UNAVAILABLE``).

    Redis is unreachable (the node is reconnecting), or did not confirm within
    ``broker.redis.timeout_ms``, in which case the publication may have been made.
    Never OK-and-lost.
    """

    default_status = Status.ERR_UNAVAILABLE


class HeraldIOError(HeraldError, OSError):
    """An I/O error in the core, e.g. the port is already in use (``HERALD_ERR_IO``)."""

    default_status = Status.ERR_IO


class StartIOError(HeraldIOError, StartError):
    """The server could not bind its socket (e.g. port in use) or start its runtime."""


class HeraldTimeoutError(HeraldError, TimeoutError):
    """An operation timed out (``HERALD_ERR_TIMEOUT``)."""

    default_status = Status.ERR_TIMEOUT


class PanicError(HeraldError):
    """The core caught an internal panic (``HERALD_ERR_PANIC``); please report it."""

    default_status = Status.ERR_PANIC


_BY_STATUS: Dict[int, Type[HeraldError]] = {
    Status.ERR_NULL_ARGUMENT: NullArgumentError,
    Status.ERR_INVALID_UTF8: InvalidUtf8Error,
    Status.ERR_INVALID_JSON: InvalidJsonError,
    Status.ERR_INVALID_ARGUMENT: InvalidArgumentError,
    Status.ERR_INVALID_CONFIG: InvalidConfigError,
    Status.ERR_INVALID_HANDLE: InvalidHandleError,
    Status.ERR_UNKNOWN_CLIENT: UnknownClientError,
    Status.ERR_QUEUE_FULL: QueueFullError,
    Status.ERR_LIMIT: LimitError,
    Status.ERR_UNAVAILABLE: BrokerUnavailableError,
    Status.ERR_IO: HeraldIOError,
    Status.ERR_TIMEOUT: HeraldTimeoutError,
    Status.ERR_STOPPED: StoppedError,
    Status.ERR_PANIC: PanicError,
}


def error_from_status(status: int, message: str) -> HeraldError:
    """Build the exception matching a non-OK ``herald_status`` code."""
    try:
        code: Optional[Status] = Status(status)
    except ValueError:
        code = None
    cls = _BY_STATUS.get(status, HeraldError)
    if not message:
        name = code.name if code is not None else str(status)
        message = f"herald call failed with status {name}"
    return cls(message, code)
