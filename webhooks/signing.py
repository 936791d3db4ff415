"""The `Dunning-Signature` header of POST /events: Stripe's scheme under our own secret.

    Dunning-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

The biller signs the exact bytes it sends. Several `v1` values may be given while a secret is
rotated. A timestamp further than the tolerance from now is refused, so a captured request
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"


class SignatureError(ValueError):
    """A missing, malformed, wrong or stale signature; the message says which, in one line."""


def signature(body: bytes | str, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under `secret`."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def sign(body: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The header value for `body`: ``t=<timestamp>,v1=<signature>`` (now by default)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},{SCHEME}={signature(body, secret, timestamp)}"


def verify(
    body: bytes, header: str | None, secret: str, tolerance: int, now: float | None = None
) -> None:
    """Accept a header that signs `body` under `secret` within `tolerance` seconds of now,
    or raise `SignatureError`."""
    if not header:
        raise SignatureError("no Dunning-Signature header")
    parts = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for key, _, value in parts if key == "t"]
    signatures = [value for key, _, value in parts if key == SCHEME]
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise SignatureError("Dunning-Signature has no valid t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"Dunning-Signature has no {SCHEME}= signature")
    timestamp = int(stamps[0])
    expected = signature(body, secret, timestamp)
    if not any(hmac.compare_digest(expected.encode(), given.encode()) for given in signatures):
        raise SignatureError("Dunning-Signature does not match the body")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"Dunning-Signature timestamp is more than {tolerance} s from now")
