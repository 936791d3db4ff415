"""Agent call tasks, the pure rules: when a person should phone a customer, and whether a
call may be made at all.

Regulation F (12 CFR 1006.14) presumes harassment when a collector calls a person more than
seven times within seven consecutive days, and forbids calls at inconvenient hours (before
08:00 or after 21:00 local time). Here both hold per customer across all their cases, over
a rolling window of seven times 24 hours (stricter than counting calendar days), and in
every zone the customer may be in. Pure: no I/O but the time-zone database, no Temporal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from workflows.contact_hours import ContactHours
from workflows.models import CallOutcome

CALL_LIMIT = 7
"""Call attempts allowed per customer in any `CALL_WINDOW`."""
CALL_WINDOW = timedelta(days=7)
"""The rolling window `CALL_LIMIT` counts over: an attempt counts until 7 x 24 h after it."""

BEST_HOURS = ((time(10, 0), time(12, 0)), (time(17, 0), time(19, 0)))
"""Local times a call is best placed: late morning (the day's start is behind people, lunch
not yet begun) and early evening (home from work, before dinner). A call may be made at any
other time inside contact hours; these only choose the time a task suggests."""

_STEP = timedelta(minutes=15)
# Every zone's offset is a multiple of 15 minutes: a grid of UTC quarter hours hits the
# local start of every window.
_HORIZON = timedelta(days=1)
# From the first moment a call is allowed, a best hour is always within a day.


def call_hours(hours: ContactHours) -> ContactHours:
    """The hours calls keep: the policy's contact hours, or the default 08:00-21:00 when the
    policy turned them off (the law's quiet hours hold for calls whatever a policy says)."""
    return hours if hours.enabled else ContactHours()


def calls_in_window(attempts: Iterable[datetime], at: datetime) -> int:
    """How many of `attempts` count against a call at `at`: those in the 7 days before it."""
    return sum(at - CALL_WINDOW < attempt <= at for attempt in attempts)


def limit_lifts_at(attempts: Iterable[datetime], now: datetime) -> datetime:
    """The first moment from `now` at which a call stays within 7 in 7 days: `now` itself
    while fewer than 7 attempts are in the window, else 7 days after the 7th latest."""
    recent = sorted(a for a in attempts if a <= now)
    if calls_in_window(recent, now) < CALL_LIMIT:
        return now
    return recent[-CALL_LIMIT] + CALL_WINDOW


def refuse_call(
    now: datetime, attempts: Iterable[datetime], zones: list[str], hours: ContactHours
) -> str | None:
    """Why a call made at `now` breaks the rules, or None when it may be made: the customer
    already had 7 calls in 7 days, or it is a quiet hour in one of their zones."""
    attempts = list(attempts)
    if calls_in_window(attempts, now) >= CALL_LIMIT:
        lifts = limit_lifts_at(attempts, now)
        return (
            f"the customer had {CALL_LIMIT} calls in the last 7 days; "
            f"the next is allowed from {lifts:%Y-%m-%d %H:%M} UTC"
        )
    hours = call_hours(hours)
    quiet = [zone for zone in zones if not hours.allows(now, zone)]
    if quiet:
        local = now.astimezone(ZoneInfo(quiet[0]))
        return (
            f"it is {local:%H:%M} in {quiet[0]}, outside the calling hours "
            f"{hours.start:%H:%M}-{hours.end:%H:%M}"
        )
    return None


def next_call_at(
    now: datetime, attempts: Iterable[datetime], zones: list[str], hours: ContactHours
) -> datetime:
    """When the customer is best called next: the first moment from `now` allowed by the 7 in
    7 days limit and by calling hours in every zone, moved on to the earliest late-morning or
    early-evening local time within a day of it (where the most zones have one). Zones that
    never share calling hours fall back to the first zone, as messages do; with no zone
    known, the first moment the limit allows."""
    hours = call_hours(hours)
    allowed = hours.next_contact_time(limit_lifts_at(attempts, now), zones)
    if not zones:
        return allowed
    used = zones if all(hours.allows(allowed, zone) for zone in zones) else zones[:1]
    first = allowed.astimezone(UTC)
    grid_start = first.replace(minute=first.minute - first.minute % 15, second=0, microsecond=0)
    candidates = [allowed]
    moment = grid_start + _STEP
    while moment <= allowed + _HORIZON:
        candidates.append(moment)
        moment += _STEP
    best, best_score = allowed, 0
    for candidate in candidates:
        if not all(hours.allows(candidate, zone) for zone in used):
            continue
        score = sum(_best_hour(candidate, zone) for zone in used)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _best_hour(moment: datetime, zone: str) -> bool:
    local = moment.astimezone(ZoneInfo(zone)).time()
    return any(start <= local < end for start, end in BEST_HOURS)


UNREACHED = frozenset({CallOutcome.NO_ANSWER, CallOutcome.VOICEMAIL})
"""Outcomes after which the customer is called again (up to the task's attempts)."""


def task_stays_open(outcome: CallOutcome, attempts: int, max_attempts: int) -> bool:
    """True when a task is called again after `attempts` calls, the last ending in `outcome`:
    the customer was not reached and the task has attempts left. Any other outcome (reached,
    a wrong number, a refusal) ends it."""
    return outcome in UNREACHED and attempts < max_attempts
