"""Herald for Python: embed the Herald real-time notification server in one line.

    import herald

    with herald.Server(port=0) as server:
        print("clients connect to", f"ws://127.0.0.1:{server.port}/ws?sessionId=S")
        server.notify_ai_start("S", {"prompt": "hello"})
        server.notify_ai_progress("S", {"percent": 50})
        server.notify_ai_complete("S", {"text": "done"})

The package is a thin ctypes layer over the core's C ABI (``libherald``), which runs its own
threads; see :class:`Server` for the API and the threading rules.
"""

from __future__ import annotations

from ._auth import AuthDecision, AuthRequest, Decision
from ._ffi import Status, library_path
from ._logging import forward_logs
from ._server import Authorizer, Event, EventStream, Message, Server, core_version
from ._presence import Presence, PresenceMember
from ._types import (
    AiConfig,
    AuthConfig,
    HistoryConfig,
    JobsConfig,
    PresenceConfig,
    RateLimitConfig,
    ServerConfig,
    TlsConfig,
)
from .errors import (
    BrokerUnavailableError,
    HeraldError,
    HeraldIOError,
    HeraldLibraryError,
    HeraldTimeoutError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidHandleError,
    InvalidJsonError,
    InvalidUtf8Error,
    LimitError,
    NotSerializableError,
    NullArgumentError,
    PanicError,
    QueueFullError,
    ServerClosedError,
    StartError,
    StartIOError,
    StoppedError,
    UnknownClientError,
)

__version__ = "0.1.0"

__all__ = [
    "Server",
    "EventStream",
    "Event",
    "Message",
    "AuthRequest",
    "AuthDecision",
    "Authorizer",
    "Decision",
    "ServerConfig",
    "HistoryConfig",
    "JobsConfig",
    "AiConfig",
    "AuthConfig",
    "RateLimitConfig",
    "TlsConfig",
    "PresenceConfig",
    "Presence",
    "PresenceMember",
    "Status",
    "core_version",
    "forward_logs",
    "library_path",
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
    "__version__",
]
