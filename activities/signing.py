"""The `Dunning-Signature` header of POST /events: Stripe's scheme under our own secret.

    Dunning-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

The biller signs the exact bytes it sends. Several `v1` values may be given while a secret is
rotated. A timestamp further than the tolerance from now is refused, so a captured request
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SCHEME = "v1"
HEADER = "Dunning-Signature"
# Seconds a signed timestamp may be from now, either way: Stripe's default, for every scheme.
TOLERANCE = 300
# Unix seconds in ASCII digits: up to 12 covers 30,000 years and keeps int() cheap.
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# Far more than a few rotated signatures need; a longer header is refused unread.
MAX_HEADER_LENGTH = 4096


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
    or raise `SignatureError` (whatever the header holds: it is anybody's)."""
    timestamp = signed_at(header, HEADER)
    signatures = _values(header or "", SCHEME)
    if not signatures:
        raise SignatureError(f"{HEADER} has no {SCHEME}= signature")
    expected = signature(body, secret, timestamp).encode()
    if not any(
        given.isascii() and hmac.compare_digest(expected, given.encode()) for given in signatures
    ):
        raise SignatureError(f"{HEADER} does not match the body")
    check_fresh(timestamp, tolerance, HEADER, now)


def signed_at(header: str | None, name: str) -> int:
    """The one ``t=`` of a ``t=...,v1=...`` header (ours, Stripe's) as unix seconds, or
    `SignatureError`: no header, several ``t=``, or anything but 1 to 12 ASCII digits."""
    if not header:
        raise SignatureError(f"no {name} header")
    if len(header) > MAX_HEADER_LENGTH:
        raise SignatureError(f"{name} is longer than {MAX_HEADER_LENGTH} characters")
    stamps = _values(header, "t")
    if len(stamps) != 1 or not UNIX_SECONDS.fullmatch(stamps[0]):
        raise SignatureError(f"{name} has no valid t=<unix seconds>")
    return int(stamps[0])


def check_fresh(timestamp: int, tolerance: int, name: str, now: float | None = None) -> None:
    """`SignatureError` for a signed time more than `tolerance` seconds from now, in the past
    (a replay) or in the future (a request signed ahead to be replayed later)."""
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"{name} timestamp is more than {tolerance} s from now")


def _values(header: str, key: str) -> list[str]:
    """The values given for `key` in a ``k=v,k=v`` header."""
    pairs = (item.partition("=") for item in header.split(","))
    return [value.strip() for name, _, value in pairs if name.strip() == key]
