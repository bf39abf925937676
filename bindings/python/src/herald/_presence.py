"""Presence: who is in a channel, as :meth:`herald.Server.presence` returns it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

__all__ = ["Presence", "PresenceMember"]


@dataclass(frozen=True)
class PresenceMember:
    """One subscriber of the channel: its ``client_id``, its ``user_id`` (from its token or
    the authorizer; ``None`` for an anonymous client) and the ``status`` it set itself
    (``"online"`` until it sends ``{"type":"presence","channel":…,"status":"away"}``)."""

    client_id: str
    user_id: Optional[str]
    status: str


@dataclass(frozen=True)
class Presence:
    """The members of ``channel``: at most ``presence.max_members`` listed in ``members``;
    ``total`` counts them all and ``truncated`` says some were left out. With the Redis broker,
    the members of every node."""

    channel: str
    members: Tuple[PresenceMember, ...]
    total: int
    truncated: bool

    @classmethod
    def from_json(cls, text: str) -> "Presence":
        data: Dict[str, Any] = json.loads(text)
        members = tuple(
            PresenceMember(client_id=m["clientId"], user_id=m.get("userId"), status=m["status"])
            for m in data["members"]
        )
        return cls(
            channel=data["channel"], members=members, total=int(data["total"]), truncated=bool(data["truncated"])
        )
