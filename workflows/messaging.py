"""The messaging rules every driver shares: the weekly cap, which tones give way to it, and
where a step goes when its own channels reach nobody.

Pure: the notify activity, the simulator and the analytics ask these functions, so a rule
changes in one place. Counting what a customer was sent is the store's job; deciding what
the count means is this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from workflows.policy import Channel, Tone

CAP_WINDOW = timedelta(days=7)
"""The weekly cap counts messages over this window, on the cases' clock."""

CAPPED_CHANNELS = (Channel.EMAIL, Channel.SMS)
"""The cap counts what interrupts people: email and text messages, not in-app banners."""

YIELDING_TONES = frozenset({Tone.GENTLE, Tone.FIRM})
"""Reminders give way to the weekly cap; the final notice and outcome messages never do."""

FALLBACK_ORDER = (Channel.EMAIL, Channel.SMS, Channel.IN_APP)
"""Where a step goes, in this order, when none of its own channels reaches the customer."""


def gives_way_to_cap(tone: Tone | None, sent_in_window: Callable[[], int], cap: int) -> bool:
    """True when a step of `tone` must be skipped: the tone is one that yields and the
    customer already had `cap` capped messages in the window. `sent_in_window` is asked only
    for a tone that yields, so a final notice costs no count."""
    return tone in YIELDING_TONES and sent_in_window() >= cap


def needs_fallback(requested: list[Channel], sent: set[Channel]) -> bool:
    """True when a step must try other channels: it reached the customer on none of its
    own, or it was meant to reach them by email or text (a reminder, not just a banner) and
    reached them on neither. A customer without a phone whose reminder went by SMS (a
    learned or explored channel) still gets it by email, not only in the app."""
    if not sent:
        return True
    interrupting = set(CAPPED_CHANNELS)
    return bool(interrupting & set(requested)) and not interrupting & sent


def fallback_channels(requested: list[Channel]) -> list[Channel]:
    """The channels to try, in order, when none of `requested` reached the customer."""
    return [channel for channel in FALLBACK_ORDER if channel not in requested]
