"""Real HS256 JWTs for the security tests, signed by hand (HMAC-SHA256, RFC 7515/7519).

No JWT library: the encoding is short, and a hand-made token also lets the tests forge,
tamper with and expire tokens precisely.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional

#: The HS256 secret configured in the tests' servers (the core wants >= 16 bytes).
SECRET = "herald-python-test-secret-0123456789"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(claims: Dict[str, Any], secret: str = SECRET, header: Optional[Dict[str, Any]] = None) -> str:
    """An HS256 JWT with exactly these claims."""
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def token(sub: str, ttl: int = 3600, secret: str = SECRET, **claims: Any) -> str:
    """A valid token for user ``sub`` (``exp`` ``ttl`` seconds from now), plus ``claims``."""
    now = int(time.time())
    return sign({"sub": sub, "iat": now, "exp": now + ttl, **claims}, secret)


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def sign_rs256(claims: Dict[str, Any], private_key: Path) -> str:
    """An RS256 JWT signed with the `openssl` command (RSASSA-PKCS1-v1_5 with SHA-256)."""
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    proc = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(private_key)],
        input=f"{head}.{body}".encode("ascii"),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return f"{head}.{body}.{b64url(proc.stdout)}"
