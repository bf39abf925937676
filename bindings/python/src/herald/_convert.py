"""Arguments for the C ABI: ids, messages and timeouts encoded as the core takes them, and
statuses turned into exceptions. The binding only encodes; validation is the core's job, so
that the error a user sees is the core's (None is passed as NULL, non-objects reach the core,
...)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from .errors import InvalidArgumentError, NotSerializableError, error_from_status
from . import _ffi

_U32_MAX = 0xFFFFFFFF


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
