"""ctypes declarations of the Herald C ABI (include/herald.h) and library loading.

This is the only module that knows the C signatures. Everything else in the package goes
through :func:`lib`, which returns the loaded :class:`ctypes.CDLL` with every function's
``argtypes``/``restype`` declared.

Library lookup order (first hit wins):

1. ``HERALD_LIBRARY``: path of a shared library to load. When set it is authoritative:
   if it cannot be loaded, :class:`~herald.HeraldLibraryError` is raised (no fallback).
2. The library shipped inside this package (``herald/libherald.so`` after
   ``pip install ./bindings/python``).
3. In a source checkout: ``$CARGO_TARGET_DIR`` or ``<repo>/target``, ``release`` and
   ``debug``; the most recently built one is used.

``CDLL`` releases the GIL around every foreign call, which matters: ``herald_stop`` waits for
the event thread, and the event thread needs the GIL to run Python callbacks.
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
import threading
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_int32, c_uint16, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import List, Optional

__all__ = [
    "Status",
    "EVENT_CALLBACK",
    "LOG_CALLBACK",
    "AUTHORIZE_CALLBACK",
    "DROP_CALLBACK",
    "lib",
    "library_path",
    "library_file_name",
    "take_string",
    "last_error",
]


class Status(enum.IntEnum):
    """``herald_status`` codes returned by the C ABI."""

    OK = 0
    ERR_NULL_ARGUMENT = 1
    ERR_INVALID_UTF8 = 2
    ERR_INVALID_JSON = 3
    ERR_INVALID_ARGUMENT = 4
    ERR_INVALID_CONFIG = 5
    ERR_INVALID_HANDLE = 6
    ERR_UNKNOWN_CLIENT = 7
    ERR_QUEUE_FULL = 8
    ERR_IO = 9
    ERR_TIMEOUT = 10
    ERR_STOPPED = 11
    ERR_PANIC = 12
    ERR_LIMIT = 13
    ERR_UNAVAILABLE = 14


#: ``typedef void (*herald_event_callback)(void *user_data, const char *event_json);``
#: ``c_char_p`` makes ctypes copy the event into a ``bytes`` object before Python sees it.
EVENT_CALLBACK = CFUNCTYPE(None, c_void_p, c_char_p)

#: ``typedef void (*herald_authorize_callback)(void *user_data, uint64_t request_id,
#: const char *request_json);``
AUTHORIZE_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint64, c_char_p)

#: ``typedef void (*herald_log_callback)(void *user_data, enum herald_log_level level,
#: const char *target, const char *message);``
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_int, c_char_p, c_char_p)

#: ``typedef void (*herald_drop_callback)(void *user_data);``: called once with a callback's
#: user data after that callback's last call.
DROP_CALLBACK = CFUNCTYPE(None, c_void_p)

_STATUS = c_int  # C enum herald_status
_HANDLE = c_void_p  # herald_server *, opaque
_OUT_STRING = POINTER(c_void_p)  # char ** (owned by the core, freed with herald_string_free)

# name: (restype, argtypes)
_SIGNATURES = {
    "herald_start": (_STATUS, [c_char_p, POINTER(_HANDLE)]),
    "herald_port": (_STATUS, [_HANDLE, POINTER(c_uint16)]),
    "herald_notify_ai": (_STATUS, [_HANDLE, c_int32, c_char_p, c_char_p]),
    "herald_notify_ai_start": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_notify_ai_progress": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_notify_ai_complete": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_notify_ai_error": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_notify_ai_delta": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_notify_ai_cancelled": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_broadcast": (_STATUS, [_HANDLE, c_char_p]),
    "herald_broadcast_to_user": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_publish": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_send": (_STATUS, [_HANDLE, c_char_p, c_char_p]),
    "herald_stats": (_STATUS, [_HANDLE, _OUT_STRING]),
    "herald_history": (_STATUS, [_HANDLE, c_char_p, _OUT_STRING]),
    "herald_jobs": (_STATUS, [_HANDLE, c_char_p, _OUT_STRING]),
    "herald_presence": (_STATUS, [_HANDLE, c_char_p, _OUT_STRING]),
    "herald_string_free": (None, [c_void_p]),
    "herald_set_event_handler": (_STATUS, [_HANDLE, EVENT_CALLBACK, c_void_p, DROP_CALLBACK]),
    "herald_set_authorizer": (_STATUS, [_HANDLE, AUTHORIZE_CALLBACK, c_void_p, DROP_CALLBACK]),
    "herald_authorize_reply": (_STATUS, [_HANDLE, c_uint64, c_char_p]),
    "herald_set_log_handler": (_STATUS, [c_int, LOG_CALLBACK, c_void_p, DROP_CALLBACK]),
    "herald_next_event": (_STATUS, [_HANDLE, c_uint32, _OUT_STRING]),
    "herald_wait_drained": (_STATUS, [_HANDLE, c_uint32]),
    "herald_backpressure": (_STATUS, [_HANDLE, POINTER(c_int)]),
    "herald_stop": (_STATUS, [_HANDLE, c_uint32]),
    "herald_last_error": (c_char_p, []),
    "herald_version": (c_char_p, []),
}


def library_file_name() -> str:
    """File name of the core's shared library on this platform."""
    if sys.platform == "win32":
        return "herald.dll"
    if sys.platform == "darwin":
        return "libherald.dylib"
    return "libherald.so"


def _source_checkout_candidates() -> List[Path]:
    name = library_file_name()
    roots: List[Path] = []
    env_target = os.environ.get("CARGO_TARGET_DIR")
    if env_target:
        roots.append(Path(env_target))
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        if (parent / "Cargo.toml").is_file() and (parent / "bindings" / "python").is_dir():
            roots.append(parent / "target")
            break
    found = [root / profile / name for root in roots for profile in ("release", "debug")]
    found = [p for p in found if p.is_file()]
    # Prefer the most recently built library (a developer who just ran `cargo build`
    # wants that one, not a stale release build).
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def _find_library() -> Path:
    from .errors import HeraldLibraryError

    override = os.environ.get("HERALD_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise HeraldLibraryError(f"HERALD_LIBRARY={override!r} does not name a file")
        return path
    bundled = Path(__file__).resolve().parent / library_file_name()
    if bundled.is_file():
        return bundled
    candidates = _source_checkout_candidates()
    if candidates:
        return candidates[0]
    raise HeraldLibraryError(
        f"cannot find the Herald core library {library_file_name()!r}: it is not inside the "
        f"installed package ({bundled.parent}), HERALD_LIBRARY is not set, and no "
        "target/{release,debug} build was found. Install with `pip install ./bindings/python` "
        "(builds the core with cargo) or set HERALD_LIBRARY to the library's path."
    )


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[Path] = None


def _load(path: Path) -> ctypes.CDLL:
    from .errors import HeraldLibraryError

    try:
        dll = ctypes.CDLL(str(path))
    except OSError as exc:
        raise HeraldLibraryError(f"cannot load the Herald core library {str(path)!r}: {exc}") from exc
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(dll, name)
        except AttributeError as exc:
            raise HeraldLibraryError(
                f"{str(path)!r} is not a compatible Herald core library: missing symbol {name}"
            ) from exc
        fn.restype = restype
        fn.argtypes = argtypes
    return dll


def lib() -> ctypes.CDLL:
    """Return the loaded core library (loaded on first use, then cached)."""
    global _lib, _lib_path
    dll = _lib
    if dll is not None:
        return dll
    with _lock:
        if _lib is None:
            path = _find_library()
            _lib = _load(path)
            _lib_path = path
        return _lib


def library_path() -> str:
    """Absolute path of the core library in use (loads it if needed)."""
    lib()
    assert _lib_path is not None
    return str(_lib_path.resolve())


def last_error() -> str:
    """``herald_last_error()`` of the calling OS thread, decoded.

    Must be called on the same thread, right after the failing call.
    """
    raw = lib().herald_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def take_string(ptr: c_void_p) -> str:
    """Copy a core-owned ``char *`` out-parameter into a ``str`` and free it."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib().herald_string_free(ptr)
