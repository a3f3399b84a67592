"""Customer tokens: an HMAC-signed, expiring grant to one return, handed out when it is opened.

Format: `ct1.<return_id>.<expires_unix>.<base64url HMAC-SHA256>`; stateless, so verifying one
needs only the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from inspection.errors import Unauthorized

TOKEN_PREFIX = "ct1"
# Long enough to cover a return's whole life (window + shipping + inspection).
DEFAULT_TOKEN_TTL_SECONDS = 90 * 24 * 3600


def _mac(*, secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_customer_token(
    *, return_id: int, secret: str, ttl: int = DEFAULT_TOKEN_TTL_SECONDS, now: float | None = None
) -> str:
    """A token that lets its holder read and act on one return until it expires."""
    expires = int((time.time() if now is None else now) + ttl)
    message = f"{TOKEN_PREFIX}.{return_id}.{expires}"
    return f"{message}.{_mac(secret=secret, message=message)}"


def verify_customer_token(*, token: str, secret: str, now: float | None = None) -> int:
    """The return id a valid token grants; Unauthorized when it is forged, malformed or expired."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        raise Unauthorized(
            "the customer token is malformed",
            hint="use the customer_token returned when the return was opened",
        )
    _, return_id, expires, mac = parts
    expected = _mac(secret=secret, message=f"{TOKEN_PREFIX}.{return_id}.{expires}")
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise Unauthorized(
            "the customer token is not valid",
            hint="use the customer_token returned when the return was opened",
        )
    if int(expires) < (time.time() if now is None else now):
        raise Unauthorized(
            "the customer token has expired",
            hint="open the return again with the order number and e-mail to get a new token",
        )
    return int(return_id)
