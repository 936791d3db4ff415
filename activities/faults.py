"""Injected provider faults: a testing aid for load and failover runs, off unless FAULT_RATE.

The simulated gateway and the outbox notifier fail a share of their calls as a flaky provider
does: half as a 5xx before doing anything, half as a timeout after doing it (the answer lost,
so the retry must not charge or send twice). The draw hashes the call's key with the
activity's attempt: a run is reproducible, and each retry draws afresh and can succeed.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from temporalio import activity


class Fault(StrEnum):
    """How an injected fault shows itself to the caller."""

    UNAVAILABLE = "unavailable"
    """A 5xx before the provider acted: nothing happened."""
    TIMEOUT = "timeout"
    """No answer after the provider acted: it happened, the caller cannot know."""


def injected_fault(rate: float, key: str) -> Fault | None:
    """The fault this call of `key` meets at `rate` (0 to 1), or None: one per (key, attempt)."""
    if rate <= 0:
        return None
    attempt = activity.info().attempt if activity.in_activity() else 1
    digest = hashlib.sha256(f"{key}#{attempt}".encode()).digest()
    draw = int.from_bytes(digest[:8]) / 2**64
    if draw >= rate:
        return None
    return Fault.TIMEOUT if draw < rate / 2 else Fault.UNAVAILABLE
