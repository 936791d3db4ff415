"""A synthetic world and case mix, deterministic from a seed, for comparing policies offline.

The model is simple and stated here so its figures can be argued with:

- Failures: mostly soft declines (insufficient funds, do not honor, generic), 13% hard ones
  (expired, stolen, lost card) that only a new card fixes.
- Charges: a soft decline passes on a later try with a chance that depends on the code, the
  days since the failure (same-day retries rarely pass), the customer's local hour (business
  hours are best, nights worst), the weekday and paydays (the 1st, the 15th and the last
  weekday of the month, and the day after each: much better for insufficient funds). Some
  soft declines never pass again (closed account, no money this month).
- Customers: some never react; others update their card or pay within hours or days of a
  message, more likely after firm and final tones and a plain "update your card" request.
  Too many emails and texts in a week annoy: the chance they cancel (or dispute) grows with
  the messages received in the last seven days.

Its population (`SyntheticWorld.population`) is `generate_cases` (the history cohort from
another seed, so other ids), with where the customer and card are from and when their
earlier invoices were paid: 60% of insufficient-funds customers (and a few others) had
earlier invoices fail and be paid on a payday or the day after; the rest paid on the
billing anniversary.

Every draw comes from `random.Random` seeded with the world's seed, the case id and what is
being asked (the profile, charge attempt n, the message step), so an answer never depends
on the order of cases or on what another policy asked before.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from simulation.world import (
    ActionKind,
    ChargeAnswer,
    CustomerAction,
    SentMessage,
    SimCase,
    World,
)
from simulation.worlds.common import months_before
from workflows.policy import Channel, DeclineCodes, Tone

# Decline codes of the failures that open cases, with their share.
FAILURE_MIX = {
    "insufficient_funds": 0.46,
    "do_not_honor": 0.20,
    "generic_decline": 0.21,
    "expired_card": 0.07,
    "stolen_card": 0.03,
    "lost_card": 0.03,
}
HARD_CODES = frozenset({"expired_card", "stolen_card", "lost_card"})

# Chance a retry passes under neutral conditions, and the share of cases it can pass at all.
BASE_SUCCESS = {"insufficient_funds": 0.18, "do_not_honor": 0.24, "generic_decline": 0.26}
CAN_RECOVER = {"insufficient_funds": 0.80, "do_not_honor": 0.60, "generic_decline": 0.65}
NEW_CARD_SUCCESS = 0.92
CHANCE_CAP = 0.95

# Plans: name → (monthly price in cents, share of cases).
PLANS = {
    "basic": (999, 0.50),
    "pro": (2900, 0.35),
    "business": (9900, 0.12),
    "scale": (49900, 0.03),
}
# The customer's zone as billing knows it (None: unknown), with its share.
ZONES = {
    "America/New_York": 0.24,
    "America/Chicago": 0.12,
    "America/Denver": 0.05,
    "America/Los_Angeles": 0.14,
    "Europe/London": 0.10,
    "Europe/Berlin": 0.10,
    "Asia/Tokyo": 0.06,
    "Australia/Sydney": 0.05,
    None: 0.14,
}
# Where a customer with no zone on file really lives.
HIDDEN_ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]
# The country of a zone outside the US, and the card brands there.
COUNTRY_OF_ZONE = {
    "Europe/London": "GB",
    "Europe/Berlin": "DE",
    "Asia/Tokyo": "JP",
    "Australia/Sydney": "AU",
}
BRANDS = {"visa": 0.55, "mastercard": 0.33, "amex": 0.09, "discover": 0.03}
BRANDS_JP = {"visa": 0.40, "jcb": 0.35, "mastercard": 0.20, "amex": 0.05}
# The history cohort's cases come from another seed (the simulator's training seed).
HISTORY_SEED_OFFSET = 1_000_003

# Responses to messages.
NEVER_RESPONDS = 0.35
BASE_RESPONSE = 0.08
TONE_PULL = {None: 1.0, Tone.GENTLE: 1.0, Tone.FIRM: 1.4, Tone.FINAL: 1.9}
TEMPLATE_PULL = {"card_update": 1.8, "authentication_needed": 1.8}
SMS_PULL = 1.25
HARD_DECLINE_PULL = 1.3
MEAN_RESPONSE_DELAY = timedelta(hours=14)
MEAN_ANNOYED_DELAY = timedelta(hours=4)
SOONEST_REACTION = timedelta(minutes=10)
LATEST_REACTION = timedelta(days=6)
# Annoyance: emails and texts in 7 days beyond the customer's tolerance.
INTERRUPTING = {Channel.EMAIL: 1.0, Channel.SMS: 1.0, Channel.IN_APP: 0.0}
CANCEL_BASE, CANCEL_PER_EXCESS = 0.004, 0.05
DISPUTE_BASE, DISPUTE_PER_EXCESS = 0.002, 0.012
WEEK = timedelta(days=7)

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """What the world knows of a customer and their card that billing does not."""

    zone: ZoneInfo
    can_recover: bool
    responsiveness: float
    tolerance: float
    prefers_card_update: float


@dataclass
class Memory:
    """What one customer has been through in this run."""

    received: list[tuple[datetime, float]] = field(default_factory=list)
    decided: bool = False
    card_updated_at: datetime | None = None


class SyntheticWorld:
    """A `World` of issuers and customers drawn from `seed` (see the module's model)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._profiles: dict[str, Profile] = {}
        self._memory: dict[str, Memory] = {}

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        """Approved or declined: a new card mostly passes, a hard-declined card never does,
        a soft decline passes with `success_chance`."""
        code = case.failure.decline_code or "generic_decline"
        memory = self._memory_of(case)
        draw = self._rng(case, f"charge:{attempt}").random()
        if memory.card_updated_at is not None and at >= memory.card_updated_at:
            if draw < NEW_CARD_SUCCESS:
                return ChargeAnswer.approval()
            return ChargeAnswer.declined_with("insufficient_funds")
        if code in HARD_CODES or not self._profile(case).can_recover:
            return ChargeAnswer.declined_with(code)
        if draw < self.success_chance(case, at):
            return ChargeAnswer.approval()
        return ChargeAnswer.declined_with(code)

    def success_chance(self, case: SimCase, at: datetime) -> float:
        """The chance a retry of a recoverable soft decline passes at `at`."""
        code = case.failure.decline_code or "generic_decline"
        local = at.astimezone(self._profile(case).zone)
        chance = BASE_SUCCESS.get(code, 0.2)
        chance *= _recency(at - case.failed_at)
        chance *= _hour_of_day(local.hour)
        chance *= 0.8 if local.weekday() >= 5 else 1.0
        if is_payday(local.date()):
            chance *= 3.0 if code == "insufficient_funds" else 1.2
        return min(chance, CHANCE_CAP)

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        """At most one decision per customer: update the card, pay, dispute or cancel."""
        memory = self._memory_of(case)
        weight = sum(INTERRUPTING[channel] for channel in message.channels)
        memory.received.append((at, weight))
        if memory.decided or message.tone is None:
            return None  # outcome messages close the case; nothing left to decide
        profile = self._profile(case)
        rng = self._rng(case, f"respond:{message.step}")
        received = sum(w for when, w in memory.received if at - when < WEEK)
        excess = max(0.0, received - profile.tolerance)
        cancel = CANCEL_BASE + CANCEL_PER_EXCESS * excess
        dispute = DISPUTE_BASE + DISPUTE_PER_EXCESS * excess
        act = BASE_RESPONSE * profile.responsiveness * TONE_PULL[message.tone]
        act *= TEMPLATE_PULL.get(message.template, 1.0)
        act *= SMS_PULL if Channel.SMS in message.channels else 1.0
        act *= HARD_DECLINE_PULL if case.failure.decline_code in HARD_CODES else 1.0
        draw = rng.random()
        if draw < cancel:
            kind, mean = ActionKind.CANCEL, MEAN_ANNOYED_DELAY
        elif draw < cancel + dispute:
            kind, mean = ActionKind.DISPUTE, MEAN_ANNOYED_DELAY * 6
        elif draw < cancel + dispute + act:
            hard = case.failure.decline_code in HARD_CODES
            prefers_card = 0.85 if hard else profile.prefers_card_update
            kind = ActionKind.UPDATE_CARD if rng.random() < prefers_card else ActionKind.PAY
            mean = MEAN_RESPONSE_DELAY / TONE_PULL[message.tone]
        else:
            return None
        delay = timedelta(seconds=rng.expovariate(1 / mean.total_seconds()))
        action = CustomerAction(
            kind=kind, at=at + min(max(delay, SOONEST_REACTION), LATEST_REACTION)
        )
        memory.decided = True
        if kind is ActionKind.UPDATE_CARD:
            memory.card_updated_at = action.at
        return action

    def population(self, n: int, start: datetime, cohort: str) -> list[SimCase]:
        """`generate_cases` for `cohort` (history: from another seed, so other ids), with the
        billing facts it leaves out: countries, card brand and earlier payments."""
        if cohort not in ("live", "history"):
            raise ValueError(f"cohort must be 'live' or 'history', not {cohort!r}")
        seed = self.seed if cohort == "live" else self.seed + HISTORY_SEED_OFFSET
        return [self._with_billing_facts(case) for case in generate_cases(n, seed, start)]

    def _with_billing_facts(self, case: SimCase) -> SimCase:
        rng = self._rng(case, "billing")
        zone = self._profile(case).zone
        country = COUNTRY_OF_ZONE.get(zone.key, "US")
        struggles = 0.6 if case.failure.decline_code == "insufficient_funds" else 0.1
        struggles = rng.uniform(0.4, 1.0) if rng.random() < struggles else rng.uniform(0, 0.1)
        paid = []
        for months in range(min(case.tenure_days or 0, 240) // 30, 0, -1):
            billed = months_before(case.failed_at, months)
            at = billed + timedelta(seconds=rng.randrange(5, 600))
            if rng.random() < struggles:  # failed, and paid when money came
                day = billed.astimezone(zone).date() + timedelta(days=1)
                while not _payday(day):
                    day += timedelta(days=1)
                day += timedelta(days=rng.choice([0, 0, 0, 1]))
                clock = time(rng.randrange(7, 22), rng.randrange(60))
                at = datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
            if at < case.failed_at:
                paid.append(at)
        return case.model_copy(
            update={
                "country": country,
                "card_country": country if rng.random() < 0.95 else "US",
                "card_brand": _weighted(rng, BRANDS_JP if country == "JP" else BRANDS),
                "paid_history": sorted(paid),
            }
        )

    def _profile(self, case: SimCase) -> Profile:
        profile = self._profiles.get(case.id)
        if profile is None:
            rng = self._rng(case, "profile")
            code = case.failure.decline_code or "generic_decline"
            zone = case.time_zone or rng.choice(HIDDEN_ZONES)
            loyal = 1.0 + min(case.tenure_days or 0, 1000) / 2000  # long customers care more
            responds = rng.random() >= NEVER_RESPONDS
            profile = Profile(
                zone=ZoneInfo(zone),
                can_recover=rng.random() < CAN_RECOVER.get(code, 0.0),
                responsiveness=rng.uniform(0.6, 1.6) * loyal if responds else 0.0,
                tolerance=rng.uniform(2.5, 5.5) * loyal,
                prefers_card_update=rng.uniform(0.3, 0.7),
            )
            self._profiles[case.id] = profile
        return profile

    def _memory_of(self, case: SimCase) -> Memory:
        return self._memory.setdefault(case.id, Memory())

    def _rng(self, case: SimCase, question: str) -> random.Random:
        return random.Random(f"{self.seed}:{case.id}:{question}")


def factory(seed: int) -> World:
    """The synthetic world for `seed` (import path ``simulation.synthetic:factory``)."""
    return SyntheticWorld(seed)


def generate_cases(n: int, seed: int, start: datetime) -> list[SimCase]:
    """`n` failed USD payments spread over four weeks from `start`, the same for the same
    arguments: case `i` is drawn from its own generator, so `n` only adds or drops cases."""
    if n < 0:
        raise ValueError("the number of cases must not be negative")
    if start.tzinfo is None:
        raise ValueError("start must carry a time zone (e.g. 2026-01-05T00:00+00:00)")
    return [_case(i, seed, start) for i in range(n)]


def _case(index: int, seed: int, start: datetime) -> SimCase:
    rng = random.Random(f"{seed}:case:{index}")
    code = _weighted(rng, FAILURE_MIX)
    plan = _weighted(rng, {name: share for name, (_, share) in PLANS.items()})
    return SimCase(
        id=f"sim-{seed}-{index:06d}",
        customer_id=f"cus-sim-{seed}-{index:06d}",
        amount=PLANS[plan][0],
        currency="USD",
        failure=DeclineCodes(decline_code=code),
        failed_at=start + timedelta(seconds=rng.randrange(28 * 24 * 3600)),
        time_zone=_weighted(rng, ZONES),
        plan=plan,
        tenure_days=int(rng.expovariate(1 / 300)),
    )


def _weighted(rng: random.Random, shares: dict[T, float]) -> T:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def is_payday(day: date) -> bool:
    """The 1st, the 15th, the last weekday of the month, or the day after one of them."""
    return _payday(day) or _payday(day - timedelta(days=1))


def _payday(day: date) -> bool:
    last = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
    while last.weekday() >= 5:
        last -= timedelta(days=1)
    return day.day in (1, 15) or day == last


def _recency(since_failure: timedelta) -> float:
    days = since_failure / timedelta(days=1)
    if days < 0.5:
        return 0.35  # the same money is still missing
    if days < 1:
        return 0.75
    if days < 10:
        return 1.0
    return 0.8 if days < 20 else 0.6


def _hour_of_day(hour: int) -> float:
    if 8 <= hour < 18:
        return 1.25
    if 18 <= hour < 22:
        return 1.0
    return 0.85 if 6 <= hour < 8 else 0.6
