"""Typing helpers: the core's configuration keys (as keyword arguments of ``Server``)."""

from __future__ import annotations

import os
from typing import List, Optional, TypedDict, Union

__all__ = [
    "ServerConfig",
    "HistoryConfig",
    "JobsConfig",
    "AiConfig",
    "AuthConfig",
    "RateLimitConfig",
    "TlsConfig",
    "PresenceConfig",
]


class HistoryConfig(TypedDict, total=False):
    """``history``: bounded per-channel history (``size`` 0 turns it off)."""

    size: int
    ttl_ms: int
    max_bytes: int


class JobsConfig(TypedDict, total=False):
    """``jobs``: what is kept of each session's AI jobs for snapshots. ``ttl_ms`` (1 hour):
    kept this long after a job ends; ``max_per_session`` (16); ``max_text_bytes`` (256 KiB
    of streamed text per job, then ``truncated``); ``max_bytes`` (64 MiB across sessions,
    memory broker)."""

    ttl_ms: int
    max_per_session: int
    max_text_bytes: int
    max_bytes: int


class AiConfig(TypedDict, total=False):
    """``ai``: ``delta_rollup_ms`` (0, off): a job's ``ai_delta``s made within this many ms go
    out as one, for every subscriber (memory broker only)."""

    delta_rollup_ms: int


class AuthConfig(TypedDict, total=False):
    """``auth``: authentication and channel permissions.

    ``required`` (False): clients without a valid token are closed with 1008;
    ``jwt_secret`` (HS256, >= 16 bytes) or ``jwt_public_key`` (PEM, RS256/ES256);
    ``jwt_issuer`` / ``jwt_audience``: checked when set; ``jwt_leeway_s`` (30);
    ``public_channels``: patterns any client may subscribe to (``"news"``, ``"public:*"``);
    ``authorizer_timeout_ms`` (5000): an unanswered authorizer request is denied after it.
    """

    required: bool
    jwt_secret: Optional[str]
    jwt_public_key: Optional[str]
    jwt_issuer: Optional[str]
    jwt_audience: Optional[str]
    jwt_leeway_s: int
    public_channels: List[str]
    authorizer_timeout_ms: int


class RateLimitConfig(TypedDict, total=False):
    """``rate_limit``: a token bucket per client, on by default (50/s, burst 100).

    ``messages_per_second`` 0 turns it off. A refused message gets an error of code
    ``rate_limited``; after ``max_violations`` (50) refusals within 10 s the client is closed
    with 1008.
    """

    messages_per_second: int
    burst: int
    max_violations: int


class TlsConfig(TypedDict):
    """``tls``: PEM files (certificate chain, private key) to serve ``wss://`` (and https://)."""

    cert: Union[str, "os.PathLike[str]"]
    key: Union[str, "os.PathLike[str]"]


class RedisConfig(TypedDict, total=False):
    """``broker.redis``: ``url`` (``redis://[user:password@]host:port[/db]``, required),
    ``prefix`` of every key and PUB/SUB channel (default ``"herald:"``), ``timeout_ms`` a host
    call waits for Redis to confirm a publication (default 2000)."""

    url: str
    prefix: str
    timeout_ms: int


class BrokerConfig(TypedDict, total=False):
    """``broker``: where publications are sequenced and kept; ``{"redis": {...}}`` shares them
    between every node and emitter that names the same Redis and prefix."""

    redis: RedisConfig


class PresenceConfig(TypedDict, total=False):
    """``presence``: every subscriber of a channel is a member with a status it sets.

    ``enabled`` (True): ``False`` turns presence off. ``ttl_ms`` (30000): with the Redis
    broker, a member whose node stopped refreshing it (killed) leaves after this long.
    ``max_members`` (1000): members listed in one answer at most.
    """

    enabled: bool
    ttl_ms: int
    max_members: int


class ServerConfig(TypedDict, total=False):
    """Keyword arguments of :class:`herald.Server`: the core's JSON configuration keys.

    Every key is optional; the core applies its defaults and rejects unknown keys and bad
    values (:class:`herald.InvalidConfigError`). This mirrors the core's ``Config``; the core
    remains the authority.

    Memory bounds, in bytes: ``client_queue_bytes``: queued for one client at most, counting
    every way bytes wait for it (its queue, replays, pongs and error replies, the socket
    writer's buffer); over it the client is evicted with 1013, and a replay larger than it is
    refused (``recovered: false``). ``socket_send_buffer``: SO_SNDBUF for client sockets (the
    kernel doubles it; 0 keeps the system's autotuning); it bounds what a stalled client pins
    in the kernel, which ``client_queue_bytes`` does not count. ``io_uring`` (Linux, default
    true): a write pass sends to many client sockets with one io_uring system call; ``False``,
    or a kernel that refuses a ring, gives each socket its own ``send``. ``max_memory``: all client
    queues and history together; over it the clients with the largest queues are evicted
    first, then history is trimmed. ``event_queue_bytes``: events queued for the host at most
    (with ``event_queue_size``); beyond it events are dropped and counted.

    ``admin_token``: Bearer token for ``/api/ws/stats`` (and every admin endpoint): when set, a
    request without ``Authorization: Bearer <token>`` gets 401. Unset, the endpoints are open in
    open mode and always answer 401 in secure mode.
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
    jobs: JobsConfig
    ai: AiConfig
    auth: AuthConfig
    allowed_origins: List[str]
    max_connections_per_ip: int
    max_subscriptions_per_client: int
    rate_limit: RateLimitConfig
    tls: Optional[TlsConfig]
    client_queue_bytes: int
    socket_send_buffer: int
    io_uring: bool
    max_memory: int
    admin_token: Optional[str]
    event_queue_bytes: int
    listen: bool
    broker: Optional[BrokerConfig]
    presence: PresenceConfig
