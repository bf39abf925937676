"""Typing helpers: the core's configuration keys and event shapes."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

if sys.version_info >= (3, 8):
    from typing import TypedDict
else:  # pragma: no cover
    from typing_extensions import TypedDict

__all__ = ["ServerConfig", "HistoryConfig"]


class HistoryConfig(TypedDict, total=False):
    """``history`` sub-object of the configuration."""

    size: int
    ttl_ms: int
    max_bytes: int


class ServerConfig(TypedDict, total=False):
    """Keyword arguments of :class:`herald.Server`: the core's JSON configuration keys.

    Every key is optional; the core applies its defaults and rejects unknown keys.
    """

    host: str
    port: int
    path: str
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    max_message_size: int
    client_queue_size: int
    max_connections: int
    worker_threads: int
    publish_queue_size: int
    event_queue_size: int
    handshake_timeout_ms: int
    max_channels: int
    stats_client_limit: int
    history: HistoryConfig
