"""What the worlds in this package share: pay schedules, a customer's hidden profile, and a
base world whose mechanics each world tunes with its own figures and hooks.

The shared mechanics, so each world's docstring only has to give its figures:

- A case's customer is drawn from the world's seed and the case id alone (`draw_profile`),
  so the same id is the same customer whichever cohort or case is asked about first. The
  case (its decline, plan, zone, card) and its `paid_history` are drawn from that profile.
- Insufficient funds clears with money: a retry's chance is multiplied by `money_factor`,
  set by the days since the customer's latest payday after the failure (their own schedule,
  in their own zone), and low while no payday has come since the failure. Other soft
  declines feel paydays a little (`PAYDAY_OTHER`).
- A retry's chance is `BASE_SUCCESS[code]` times the local hour's `hour_factor`, the
  `recency_factor` of the days since the failure, `ATTEMPT_DECAY` per earlier charge and
  `WEEKEND` on Saturdays and Sundays, capped at `CHANCE_CAP`. A customer's soft decline can
  pass at all with `CAN_RECOVER[code]`; hard declines never pass; a new card mostly does.
- Earlier invoices: each failed with the customer's `struggles` share and was paid when
  money came (on a payday or a day or two after, at one of `PAYER_HOURS`); the others were
  paid on the billing anniversary, which says nothing of paydays.
- Messages: a message weighs `irritation` (by channel and local hour) for seven days; its
  excess over the customer's tolerance raises the chance they cancel, dispute or stop a
  channel. Otherwise they may update their card or pay, more likely after firm tones, on
  their preferred channel and at a good local hour (`arrival_factor`). An expired card the
  card updater replaces comes back as an update on the first message, on the updater's day.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import ClassVar, Protocol, TypeVar
from zoneinfo import ZoneInfo

from simulation.world import ActionKind, ChargeAnswer, CustomerAction, SentMessage, SimCase
from workflows.policy import Channel, DeclineCodes, Tone

COHORTS = ("live", "history")
HARD_CODES = frozenset(
    {"expired_card", "stolen_card", "lost_card", "pickup_card", "restricted_card", "fraudulent"}
)
WINDOW = timedelta(days=28)
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
SOONEST_REACTION = timedelta(minutes=10)
LATEST_REACTION = timedelta(days=6)
OPT_OUTABLE = (Channel.EMAIL, Channel.SMS)

T = TypeVar("T")


def weighted(rng: random.Random, shares: Mapping[T, float]) -> T:
    """One key of `shares`, drawn with its share as weight."""
    return rng.choices(list(shares), weights=list(shares.values()))[0]


# Pay schedules --------------------------------------------------------------------------------


class PaySchedule(Protocol):
    """When a customer's money arrives."""

    def is_payday(self, day: date) -> bool: ...


def last_payday(schedule: PaySchedule, day: date, within: int = 62) -> date | None:
    """The latest payday on or before `day` (None if none in `within` days)."""
    for back in range(within + 1):
        if schedule.is_payday(day - timedelta(days=back)):
            return day - timedelta(days=back)
    return None


def next_payday(schedule: PaySchedule, day: date, within: int = 62) -> date | None:
    """The first payday on or after `day` (None if none in `within` days)."""
    for ahead in range(within + 1):
        if schedule.is_payday(day + timedelta(days=ahead)):
            return day + timedelta(days=ahead)
    return None


def last_day(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def working_day_before(day: date) -> date:
    """`day`, or the Friday before it when it falls on a weekend (how payroll moves paydays)."""
    while day.weekday() >= 5:
        day -= DAY
    return day


@dataclass(frozen=True)
class Weekly:
    """Paid every week on `weekday` (0 Monday … 4 Friday)."""

    weekday: int = 4

    def is_payday(self, day: date) -> bool:
        return day.weekday() == self.weekday


@dataclass(frozen=True)
class Biweekly:
    """Paid every other week, on the weekday of `anchor` and 14-day steps from it."""

    anchor: date

    def is_payday(self, day: date) -> bool:
        return (day - self.anchor).days % 14 == 0


@dataclass(frozen=True)
class MonthDays:
    """Paid on these days of each month (`31` meaning the last), moved to the working day
    before when one falls on a weekend. (1, 15), (15, 31), (25,), (31,) or any day."""

    days: tuple[int, ...]

    def is_payday(self, day: date) -> bool:
        if day.weekday() >= 5:
            return False
        # The working day on or before a nominal day (in the month before, for a Sunday 1st).
        for ahead in range(3):
            nominal = day + timedelta(days=ahead)
            if self._nominal(nominal) and working_day_before(nominal) == day:
                return True
        return False

    def _nominal(self, day: date) -> bool:
        end = last_day(day.year, day.month).day
        return any(day.day == min(d, end) for d in self.days)


@dataclass(frozen=True)
class Irregular:
    """Paid at random gaps of `shortest` to `longest` days: a gig worker's payouts. The
    days are drawn per 8-week block from `key`, so any stretch of time can be asked about."""

    key: str
    shortest: int = 2
    longest: int = 11

    def is_payday(self, day: date) -> bool:
        block = day.toordinal() // 56
        return day in _irregular_block(self.key, self.shortest, self.longest, block)


@lru_cache(maxsize=65536)
def _irregular_block(key: str, shortest: int, longest: int, block: int) -> frozenset[date]:
    rng = random.Random(f"{key}:block:{block}")
    first, end = block * 56, (block + 1) * 56
    ordinal = first + rng.randrange(longest)
    days = set()
    while ordinal < end:
        days.add(date.fromordinal(ordinal))
        ordinal += rng.randint(shortest, longest)
    return frozenset(days)


# Customers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A customer as the world knows them and billing does not (except what the case shows)."""

    zone: str
    zone_known: bool
    country: str
    card_brand: str
    card_country: str
    schedule: PaySchedule
    code: str
    plan: str
    tenure_days: int
    struggles: float  # the share of earlier invoices that waited for a payday
    recover: float  # the soft decline can pass at all iff this < CAN_RECOVER[code]
    responsiveness: float
    tolerance: float
    prefers: Channel
    prefers_card_update: float
    updater_after: timedelta | None = None


@dataclass
class Memory:
    """What one customer has been through in this run."""

    received: list[tuple[datetime, float]] = field(default_factory=list)
    messages: int = 0
    opted_out: set[Channel] = field(default_factory=set)
    decided: bool = False
    card_updated_at: datetime | None = None


class CommonWorld:
    """A `PopulatedWorld` whose figures and hooks each world module sets (see the module)."""

    name: ClassVar[str]
    currency: ClassVar[str]
    FAILURE_MIX: ClassVar[dict[str, float]]
    PLANS: ClassVar[dict[str, tuple[int, float]]]  # name → (amount in minor units, share)
    BASE_SUCCESS: ClassVar[dict[str, float]]
    CAN_RECOVER: ClassVar[dict[str, float]]
    NEW_CARD_SUCCESS: ClassVar[float] = 0.9
    CHANCE_CAP: ClassVar[float] = 0.9
    ATTEMPT_DECAY: ClassVar[float] = 0.9
    WEEKEND: ClassVar[float] = 1.0
    # Insufficient funds by days since the latest payday after the failure (last one holds
    # on), and while no payday has come since the failure.
    AFTER_PAYDAY: ClassVar[tuple[float, ...]] = (3.0, 2.5, 1.8, 1.2, 1.0, 0.8)
    NO_NEW_MONEY: ClassVar[float] = 0.35
    PAYDAY_OTHER: ClassVar[float] = 1.15
    PAYER_HOURS: ClassVar[dict[int, float]] = {h: 1.0 for h in range(8, 22)}
    # Messages.
    NEVER_RESPONDS: ClassVar[float] = 0.35
    BASE_RESPONSE: ClassVar[float] = 0.08
    TONE_PULL: ClassVar[dict[Tone | None, float]] = {
        None: 1.0,
        Tone.GENTLE: 1.0,
        Tone.FIRM: 1.4,
        Tone.FINAL: 1.9,
    }
    TEMPLATE_PULL: ClassVar[dict[str, float]] = {"card_update": 1.8, "authentication_needed": 1.8}
    PREFERRED_PULL: ClassVar[float] = 1.5
    OTHER_PULL: ClassVar[float] = 0.8
    HARD_DECLINE_PULL: ClassVar[float] = 1.3
    MEAN_RESPONSE_DELAY: ClassVar[timedelta] = timedelta(hours=14)
    MEAN_ANNOYED_DELAY: ClassVar[timedelta] = timedelta(hours=4)
    CANCEL_BASE: ClassVar[float] = 0.004
    CANCEL_PER_EXCESS: ClassVar[float] = 0.05
    DISPUTE_BASE: ClassVar[float] = 0.002
    DISPUTE_PER_EXCESS: ClassVar[float] = 0.012
    OPT_OUT_BASE: ClassVar[float] = 0.003
    OPT_OUT_PER_EXCESS: ClassVar[float] = 0.04
    CONTACT_HOURS: ClassVar[tuple[int, int]] = (8, 21)

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._profiles: dict[str, Profile] = {}
        self._memory: dict[str, Memory] = {}

    # Hooks a world sets --------------------------------------------------------------------

    def draw_profile(self, rng: random.Random, key: str) -> Profile:
        """The hidden customer behind a case id (`key` seeds any further draws)."""
        raise NotImplementedError

    def hour_factor(self, hour: int) -> float:
        """How a retry's chance moves with the customer's local hour."""
        return 1.0

    def recency_factor(self, days: float) -> float:
        """How a retry's chance moves with the days since the failure."""
        if days < 0.5:
            return 0.35  # the same money is still missing
        if days < 1:
            return 0.75
        return 1.0 if days < 10 else 0.75

    def arrival_factor(self, hour: int) -> float:
        """How the chance a customer acts on a message moves with its local arrival hour."""
        return 1.0

    def irritation(self, channel: Channel, hour: int) -> float:
        """How much a message on `channel` arriving at local `hour` annoys."""
        weight = {Channel.EMAIL: 1.0, Channel.SMS: 1.0, Channel.IN_APP: 0.0}[channel]
        start, end = self.CONTACT_HOURS
        return weight if start <= hour < end else weight * 1.5

    def reaction_at(
        self, profile: Profile, kind: ActionKind, at: datetime, mean: timedelta, rng: random.Random
    ) -> datetime:
        """When a customer who decided at `at` acts."""
        delay = timedelta(seconds=rng.expovariate(1 / mean.total_seconds()))
        return at + min(max(delay, SOONEST_REACTION), LATEST_REACTION)

    # The population ------------------------------------------------------------------------

    def population(self, n: int, start: datetime, cohort: str) -> list[SimCase]:
        """`n` failed payments over the four weeks from `start`: see the module's model."""
        if cohort not in COHORTS:
            raise ValueError(f"cohort must be one of {COHORTS}, not {cohort!r}")
        if n < 0:
            raise ValueError("the number of cases must not be negative")
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        return [self._case(f"{self.name}-{self.seed}-{cohort}-{i:06d}", start) for i in range(n)]

    def _case(self, case_id: str, start: datetime) -> SimCase:
        profile = self.profile_of(case_id)
        rng = self._rng(case_id, f"case:{start.isoformat()}")
        failed_at = self._failed_at(profile, start, rng)
        return SimCase(
            id=case_id,
            customer_id=f"cus-{case_id}",
            amount=self.PLANS[profile.plan][0],
            currency=self.currency,
            failure=DeclineCodes(decline_code=profile.code),
            failed_at=failed_at,
            time_zone=profile.zone if profile.zone_known else None,
            plan=profile.plan,
            tenure_days=profile.tenure_days,
            card_brand=profile.card_brand,
            card_country=profile.card_country,
            country=profile.country,
            paid_history=self._history(profile, failed_at, rng),
        )

    def _failed_at(self, profile: Profile, start: datetime, rng: random.Random) -> datetime:
        """The billing time; an insufficient-funds failure is likelier late in the pay cycle
        (the later of two draws in the cycle), as money runs out before payday."""
        draws = [start + timedelta(seconds=rng.randrange(int(WINDOW.total_seconds())))]
        if profile.code != "insufficient_funds":
            return draws[0]
        draws.append(start + timedelta(seconds=rng.randrange(int(WINDOW.total_seconds()))))
        zone = ZoneInfo(profile.zone)

        def into_cycle(at: datetime) -> int:
            local = at.astimezone(zone).date()
            payday = last_payday(profile.schedule, local)
            return 62 if payday is None else (local - payday).days

        return max(draws, key=into_cycle)

    def _history(self, profile: Profile, failed_at: datetime, rng: random.Random) -> list[datetime]:
        zone = ZoneInfo(profile.zone)
        paid = []
        for months in range(min(profile.tenure_days // 30, 8), 0, -1):
            billed = months_before(failed_at, months)
            if rng.random() < profile.struggles:
                after = billed.astimezone(zone).date() + DAY
                payday = next_payday(profile.schedule, after)
                if payday is None:
                    continue
                day = payday + timedelta(days=weighted(rng, {0: 0.7, 1: 0.2, 2: 0.1}))
                clock = time(weighted(rng, self.PAYER_HOURS), rng.randrange(60))
                at = datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
            else:
                at = billed + timedelta(seconds=rng.randrange(5, 600))
            if at < failed_at:
                paid.append(at)
        return sorted(paid)

    # Charges -------------------------------------------------------------------------------

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        """Approved or declined: a new card mostly passes, a hard-declined card never does,
        a soft decline passes with `success_chance` if the customer's can pass at all."""
        code = case.failure.decline_code or "generic_decline"
        memory = self._memory_of(case)
        draw = self._rng(case.id, f"charge:{attempt}").random()
        if memory.card_updated_at is not None and at >= memory.card_updated_at:
            if draw < self.NEW_CARD_SUCCESS:
                return ChargeAnswer.approval()
            return ChargeAnswer.declined_with("insufficient_funds")
        if code in HARD_CODES or self.profile(case).recover >= self.CAN_RECOVER.get(code, 0.0):
            return ChargeAnswer.declined_with(code)
        if draw < self.success_chance(case, attempt, at):
            return ChargeAnswer.approval()
        return ChargeAnswer.declined_with(code)

    def success_chance(self, case: SimCase, attempt: int, at: datetime) -> float:
        """The chance the `attempt`-th charge of a recoverable soft decline passes at `at`."""
        code = case.failure.decline_code or "generic_decline"
        zone = self.zone_of(case)
        local = at.astimezone(zone)
        chance = self.BASE_SUCCESS.get(code, 0.15)
        chance *= self.hour_factor(local.hour)
        chance *= self.recency_factor((at - case.failed_at) / DAY)
        chance *= self.ATTEMPT_DECAY ** max(attempt - 1, 0)
        chance *= self.WEEKEND if local.weekday() >= 5 else 1.0
        chance *= self.money_factor(code, self.days_since_new_money(case, at))
        return min(chance, self.CHANCE_CAP)

    def days_since_new_money(self, case: SimCase, at: datetime) -> int | None:
        """Days since the customer's latest payday after the failure; None if none yet."""
        zone = self.zone_of(case)
        today = at.astimezone(zone).date()
        payday = last_payday(self.profile(case).schedule, today)
        if payday is None or payday <= case.failed_at.astimezone(zone).date():
            return None
        return (today - payday).days

    def money_factor(self, code: str, days: int | None) -> float:
        """How paydays move a retry's chance: much for insufficient funds, a little else."""
        if code == "insufficient_funds":
            if days is None:
                return self.NO_NEW_MONEY
            return self.AFTER_PAYDAY[min(days, len(self.AFTER_PAYDAY) - 1)]
        return self.PAYDAY_OTHER if days is not None and days <= 1 else 1.0

    # Messages ------------------------------------------------------------------------------

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        """At most one decision per customer (update the card, pay, dispute, cancel), or
        stopping a channel that annoys: see the module's model."""
        memory = self._memory_of(case)
        profile = self.profile(case)
        hour = at.astimezone(self.zone_of(case)).hour
        channels = [c for c in message.channels if c not in memory.opted_out]
        if not channels:
            return None  # they no longer read this channel
        weights = {c: self.irritation(c, hour) for c in channels}
        memory.received.append((at, sum(weights.values())))
        memory.messages += 1
        if memory.decided or message.tone is None:
            return None  # outcome messages close the case; nothing left to decide
        updated = self._card_updater(case, profile, memory, at)
        if updated is not None:
            return updated
        rng = self._rng(case.id, f"respond:{message.step}")
        received = sum(w for when, w in memory.received if at - when < WEEK)
        excess = max(0.0, received - profile.tolerance)
        cancel = self.CANCEL_BASE + self.CANCEL_PER_EXCESS * excess
        dispute = self.DISPUTE_BASE + self.DISPUTE_PER_EXCESS * excess
        stoppable = {c: w for c, w in weights.items() if c in OPT_OUTABLE and w > 0}
        opt_out = self.OPT_OUT_BASE + self.OPT_OUT_PER_EXCESS * excess if stoppable else 0.0
        hard = case.failure.decline_code in HARD_CODES
        act = self.BASE_RESPONSE * profile.responsiveness * self.TONE_PULL[message.tone]
        act *= self.TEMPLATE_PULL.get(message.template, 1.0)
        act *= self.PREFERRED_PULL if profile.prefers in channels else self.OTHER_PULL
        act *= self.arrival_factor(hour)
        act *= self.HARD_DECLINE_PULL if hard else 1.0
        draw = rng.random()
        if draw < opt_out:
            channel = weighted(rng, stoppable)
            memory.opted_out.add(channel)
            return CustomerAction(
                kind=ActionKind.OPT_OUT, at=at + SOONEST_REACTION, channel=channel
            )
        draw -= opt_out
        if draw < cancel:
            kind, mean = ActionKind.CANCEL, self.MEAN_ANNOYED_DELAY
        elif draw < cancel + dispute:
            kind, mean = ActionKind.DISPUTE, self.MEAN_ANNOYED_DELAY * 6
        elif draw < cancel + dispute + act:
            prefers_card = 0.85 if hard else profile.prefers_card_update
            kind = ActionKind.UPDATE_CARD if rng.random() < prefers_card else ActionKind.PAY
            mean = self.MEAN_RESPONSE_DELAY / self.TONE_PULL[message.tone]
        else:
            return None
        action = CustomerAction(kind=kind, at=self.reaction_at(profile, kind, at, mean, rng))
        memory.decided = True
        if kind is ActionKind.UPDATE_CARD:
            memory.card_updated_at = action.at
        return action

    def _card_updater(
        self, case: SimCase, profile: Profile, memory: Memory, at: datetime
    ) -> CustomerAction | None:
        """The network's card updater replaces an expired card some days after the failure:
        it reaches the case as an update, answered on the first message."""
        if case.failure.decline_code != "expired_card" or profile.updater_after is None:
            return None
        if memory.messages > 1:
            return None
        memory.decided = True
        memory.card_updated_at = max(at, case.failed_at + profile.updater_after)
        return CustomerAction(kind=ActionKind.UPDATE_CARD, at=memory.card_updated_at)

    # Profiles and draws --------------------------------------------------------------------

    def profile(self, case: SimCase) -> Profile:
        """The hidden customer behind `case`."""
        return self.profile_of(case.id)

    def profile_of(self, case_id: str) -> Profile:
        profile = self._profiles.get(case_id)
        if profile is None:
            profile = self.draw_profile(self._rng(case_id, "profile"), f"{self.seed}:{case_id}")
            self._profiles[case_id] = profile
        return profile

    def zone_of(self, case: SimCase) -> ZoneInfo:
        """Where the customer lives: the case's zone, else the one billing does not know."""
        return ZoneInfo(case.time_zone or self.profile(case).zone)

    def _memory_of(self, case: SimCase) -> Memory:
        return self._memory.setdefault(case.id, Memory())

    def _rng(self, case_id: str, question: str) -> random.Random:
        return random.Random(f"{self.name}:{self.seed}:{case_id}:{question}")


def months_before(at: datetime, months: int) -> datetime:
    """The same day and time `months` earlier (the month's last day when it is shorter)."""
    total = at.year * 12 + at.month - 1 - months
    year, month = divmod(total, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)
