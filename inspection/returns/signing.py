"""HMAC-SHA256 signatures for outgoing webhooks and the refund adapter's payment calls.

The signed message is `"<timestamp>." + body`, so a receiver can reject replays of an old body
by checking the timestamp, and a body cannot be moved to another timestamp without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_PREFIX = "sha256="
# Receivers should refuse signatures older than this; five minutes tolerates clock skew and
# retries in flight while keeping a captured request useless soon after.
DEFAULT_TOLERANCE_SECONDS = 300


def sign_payload(*, secret: str, body: bytes, timestamp: int) -> str:
    """Returns `sha256=<hex>` of HMAC-SHA256 over `f"{timestamp}.".encode() + body`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    *,
    secret: str,
    body: bytes,
    timestamp: int | str,
    signature: str,
    tolerance_seconds: int | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Checks a signature in constant time, and (unless tolerance is None) the timestamp's age."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if tolerance_seconds is not None:
        current = time.time() if now is None else now
        if abs(current - ts) > tolerance_seconds:
            return False
    expected = sign_payload(secret=secret, body=body, timestamp=ts)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
