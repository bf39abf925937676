"""Authorization requests and decisions exchanged with the host authorizer.

See :meth:`herald.Server.set_authorizer`. The core sends a request as JSON (camelCase keys);
:class:`AuthRequest` is its typed Python form. The host answers with an :class:`AuthDecision`
(or ``True``/``False``), encoded to the core's decision JSON by :func:`decision_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .errors import InvalidArgumentError, NotSerializableError

__all__ = ["AuthRequest", "AuthDecision", "Decision", "decision_json", "deny_json"]


@dataclass(frozen=True)
class AuthRequest:
    """A question from the core: may this client connect / subscribe?

    ``type == "connect"``: a client completed the WebSocket handshake. Set: ``token`` (from
    ``?token=`` or ``Authorization: Bearer``, ``None`` if absent), ``token_user_id`` (the
    ``sub`` of the token when the core verified it as a JWT), ``query`` (the URL's query
    parameters), ``headers`` (request headers, names in lower case), ``origin`` and
    ``remote_addr`` (``"ip:port"``).

    ``type == "subscribe"``: a connected client asked for a channel that neither its token,
    the channels granted on connect nor ``auth.public_channels`` allow. Set: ``client_id``,
    ``user_id`` (``None`` for an anonymous client), ``channel`` (``"session:S"`` for a
    session) and ``action``: ``"subscribe"``; ``"presence"`` when the client only asks who is
    in the channel (allowing that does not subscribe it); or ``"cancel"`` when the client asks
    to cancel a job of that session (``{"type": "cancel", "sessionId": ..., "jobId": ...}``).

    Fields that do not apply to the request's type are ``None`` (``query``/``headers``:
    empty). ``raw`` is the core's JSON object as received. ``token`` and ``headers`` may hold
    credentials: they are left out of ``repr()``; do not log them.
    """

    type: str
    id: int
    token: Optional[str] = field(default=None, repr=False)
    token_user_id: Optional[str] = None
    query: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    origin: Optional[str] = None
    remote_addr: Optional[str] = None
    client_id: Optional[str] = None
    user_id: Optional[str] = None
    channel: Optional[str] = None
    action: Optional[str] = None
    timeout_ms: Optional[int] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, request_id: int, text: str) -> "AuthRequest":
        """Build a request from the core's JSON (``request_id`` is the callback's id)."""
        data: Dict[str, Any] = json.loads(text)
        return cls(
            type=str(data.get("type", "")),
            id=request_id,
            token=data.get("token"),
            token_user_id=data.get("tokenUserId"),
            query=dict(data.get("query") or {}),
            headers=dict(data.get("headers") or {}),
            origin=data.get("origin"),
            remote_addr=data.get("remoteAddr"),
            client_id=data.get("clientId"),
            user_id=data.get("userId"),
            channel=data.get("channel"),
            action=data.get("action"),
            timeout_ms=data.get("timeoutMs"),
            raw=data,
        )


@dataclass(frozen=True)
class AuthDecision:
    """The host's answer to an :class:`AuthRequest`.

    * ``allow``: whether the client may connect / subscribe.
    * ``user_id`` (connect only): the client's user; it is subscribed to ``user:<user_id>``
      and reached by :meth:`Server.broadcast_to_user`. ``None`` keeps the token's ``sub``
      (if any).
    * ``channels`` (connect only): channel patterns (``*`` = any run of characters) the client
      may then subscribe to without the authorizer being asked again, e.g.
      ``("session:alice-*",)``.
    * ``reason`` (deny): why; only logged by the core (the client sees close code 1008
      "Unauthorized" on connect, an error of code ``forbidden`` on subscribe).
    """

    allow: bool
    user_id: Optional[str] = None
    channels: Sequence[str] = ()
    reason: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The core's decision JSON object (camelCase keys)."""
        if isinstance(self.channels, (str, bytes)):
            raise InvalidArgumentError("AuthDecision.channels must be a sequence of patterns, not a string")
        out: Dict[str, Any] = {"allow": bool(self.allow)}
        if self.user_id is not None:
            out["userId"] = self.user_id
        if self.channels:
            out["channels"] = list(self.channels)
        if self.reason is not None:
            out["reason"] = self.reason
        return out


#: What an authorizer returns / :meth:`Server.authorize_reply` accepts: an
#: :class:`AuthDecision`, ``True``/``False``, or a mapping in the core's JSON form
#: (``{"allow": True, "userId": "u", "channels": [...]}``).
Decision = Union[AuthDecision, bool, Mapping[str, Any]]

_ALLOW = b'{"allow":true}'
_DENY = b'{"allow":false}'


def decision_json(decision: Any) -> bytes:
    """Encode a decision for ``herald_authorize_reply``. The core validates the result."""
    if decision is True:
        return _ALLOW
    if decision is False:
        return _DENY
    if isinstance(decision, AuthDecision):
        obj: Any = decision.to_dict()
    elif isinstance(decision, Mapping):
        obj = dict(decision)
    else:
        raise InvalidArgumentError(
            "an authorization decision must be an AuthDecision, True/False or a mapping, "
            f"not {type(decision).__name__}"
        )
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotSerializableError(f"decision is not JSON-serializable: {exc}") from exc
    # json.dumps escapes control characters, so the text never contains a NUL byte.
    return text.encode("utf-8", "surrogatepass")


def deny_json(reason: str) -> bytes:
    return json.dumps({"allow": False, "reason": reason}, separators=(",", ":")).encode("utf-8")

