"""Smart retry timing: charge when a retry is most likely to pass, re-planned after every decline.

A retry model (`workflows.retry_model`, gradient-boosted trees fitted on this business's own
attempts) rates candidate charge times. The candidates are a few local hours of every day
left in the case window, inside contact hours, `min_retry_gap` after the last charge and
within the card network's cap. The planner takes the best-rated times for the retries still
in the budget, earlier ones preferred at equal odds (`DAILY_DISCOUNT`: a customer waiting
for their service may leave), and the case charges at the first of them. After a decline
the case asks again, with what the decline taught: the attempt number, the declines so far.

What the model sees of a candidate time (`feature_row`): the decline's code and class, the
card's brand and country, the amount, the attempt and declines so far, the hours since the
failure and the last charge, the customer's local hour, weekday and day of month, and where
the time falls in *this customer's* pay cycle as their earlier payments show it (days after
the day of month they paid on before, and after the weekday of a weekly or fortnightly pay).

Exploration: a small share of decisions (`policy.exploration`) charge at a time drawn evenly
from the feasible ones instead, and the plan records the probability its time had of being
chosen. Training weighs each attempt by the inverse of that probability, so what the model
learns of days and hours the greedy choice never visits is not left to survivors' luck.

With no model, one fitted on fewer than `MIN_HISTORY` attempts, or no room in the window,
the plan is the policy's fixed schedule (still explored, so a new install gathers the
history its first model learns from), and `reason` says why.

Pure: no I/O but the time-zone database and no Temporal import. The scorer is passed in, so
the workflow's activity, the training command and the simulator plan with the same code.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, Field

from workflows.policy import DeclineClass, DeclineCodes, Policy

MIN_HISTORY = 200
"""Fewer attempts than this and the model is noise: cases keep the policy's fixed schedule."""

SLOT_HOURS = (9, 13, 17, 20)
"""Local hours a retry may be planned at: morning, midday, afternoon, evening. Four a day
keep planning cheap; contact hours still decide which of them are allowed."""

DAILY_DISCOUNT = 0.97
"""A retry's odds count this much less per day of waiting: at equal odds, sooner is better."""

BEFORE_COLLECTIONS = timedelta(days=1)
"""The last retry leaves this much room for its reminders before collections."""

HISTORY_USED = 6
"""The customer's most recent payments the pay-cycle features look at."""

UNKNOWN = "unknown"

CATEGORICAL = ("decline_code", "decline_class", "card_brand", "card_country", "currency")
NUMERIC = (
    "attempt",
    "declines",
    "amount_digits",
    "hours_since_failure",
    "hours_since_last_charge",
    "local_hour",
    "weekday",
    "day_of_month",
    "days_to_month_end",
    "payments_known",
    "days_after_paid_day_of_month",
    "days_after_paid_weekday",
    "days_after_paid_fortnight",
)
FEATURES = (*CATEGORICAL, *NUMERIC)
"""The model's inputs, in the order of a `feature_row`."""

FeatureRow = list[str | float | None]
"""The features of a case that do not depend on the time: categories and case numbers."""


class Slot(NamedTuple):
    """A candidate charge time, with the customer's local calendar at it."""

    at: datetime
    hour: int
    weekday: int
    day: int
    days_to_month_end: int
    ordinal: int


class FeatureBlock(NamedTuple):
    """The features of charging one case at each of several times: the case's own part once,
    and one row of `TIME_FEATURES` per time (a numpy array, so many cases rate fast)."""

    case: FeatureRow
    times: Any


class RetryScorer(Protocol):
    """A fitted retry model as the planner uses it."""

    @property
    def version(self) -> int: ...

    @property
    def trained_on(self) -> int: ...

    def success_chances(self, blocks: Sequence[FeatureBlock]) -> list[float]:
        """The chance that each time of each block passes, in order, blocks one after another."""
        ...


class PlanFacts(DeclineCodes):
    """What the planner knows of a case when it plans: its failure, the charges since, the
    card, the amount, where the customer is and when they paid before.

    The decline codes are the latest decline's (the opening failure's before any retry)."""

    case_id: str = ""
    failed_at: AwareDatetime = Field(description="The schedule's origin: offsets count from it.")
    amount: int = Field(gt=0)
    currency: str
    time_zones: list[str] = Field(
        default_factory=list, description="Where the customer may be; contact hours hold in all."
    )
    opened_at: AwareDatetime | None = Field(
        default=None, description="When the case started: no retry is planned before it."
    )
    planned_at: AwareDatetime | None = Field(
        default=None, description="Now: no retry is planned before it (default: opened_at)."
    )
    attempt: int = Field(default=1, ge=1, description="The number the next retry will have.")
    declines: int = Field(default=1, ge=0, description="Declines so far, the failure included.")
    last_charge_at: AwareDatetime | None = Field(
        default=None, description="The last charge of the case (default: the failure)."
    )
    retries_done: int = Field(default=0, ge=0, description="Scheduled retries already made.")
    decline_class: DeclineClass | None = Field(
        default=None, description="The latest decline's class under the case's policy."
    )
    paid_history: list[AwareDatetime] = Field(
        default_factory=list, description="When the customer's earlier invoices were paid."
    )
    model_version: int | None = Field(
        default=None, description="The model the case was first planned with: kept for its life."
    )


class RetryPlan(BaseModel):
    """The case's remaining retry times as offsets from its failure, and who chose them."""

    offsets: list[timedelta]
    model_version: int | None = None
    reason: str
    propensity: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The chance the first time had of being chosen (explored plans < 1).",
    )
    explored: bool = False


def plan_retries(scorer: RetryScorer | None, facts: PlanFacts, policy: Policy) -> RetryPlan:
    """Choose the case's remaining retry times: at most the retries left in the budget, in
    the case window (a day before collections), `min_retry_gap` apart, in contact hours and
    within the card network's cap. See the module's docstring for how."""
    slots = candidate_slots(facts, policy)
    able = usable(scorer)
    chances = scorer.success_chances([feature_block(slots, facts)]) if able else None
    return choose_retries(scorer, slots, chances, facts, policy)


def candidate_slots(facts: PlanFacts, policy: Policy) -> list[Slot]:
    """Every time a retry may be planned at, earliest first (none for a never-retry decline
    or a spent budget)."""
    if _never_retry(facts, policy) or _retries_left(facts, policy) <= 0:
        return []
    zone = _zone(facts)
    start = _earliest(facts, policy)
    end = facts.failed_at + policy.collections_after - BEFORE_COLLECTIONS
    minute = facts.failed_at.astimezone(ZoneInfo(zone)).minute  # cases spread over the hour
    hours = policy.contact_hours
    rule = (hours.start, hours.end) if hours.enabled else None
    others = tuple(facts.time_zones[1:])
    day = start.astimezone(ZoneInfo(zone)).date()
    last = end.astimezone(ZoneInfo(zone)).date()
    slots: list[Slot] = []
    while day <= last:
        slots += [s for s in _day_slots(zone, day, minute, rule, others) if start <= s.at <= end]
        day += _DAY
    if not slots and others:  # zones that never share an hour: the first zone's, as messages
        return candidate_slots(facts.model_copy(update={"time_zones": [zone]}), policy)
    return slots


@functools.lru_cache(maxsize=65536)
def _day_slots(
    zone: str, day: date, minute: int, rule: tuple[time, time] | None, others: tuple[str, ...]
) -> tuple[Slot, ...]:
    """The slots of one local day: `SLOT_HOURS` at `minute`, inside contact hours (`rule`)
    in `zone` and every zone of `others`. Cached: cases share zones and days."""
    slots = []
    for hour in SLOT_HOURS:
        at = datetime.combine(day, time(hour, minute), ZoneInfo(zone)).astimezone(UTC)
        if rule is None or all(
            rule[0] <= at.astimezone(ZoneInfo(z)).time() < rule[1] for z in (zone, *others)
        ):
            slots.append(slot_at(at, zone))
    return tuple(slots)


def slot_at(at: datetime, zone: str) -> Slot:
    """`at` with the local calendar of `zone`."""
    local = at.astimezone(ZoneInfo(zone))
    day = local.date()
    month_days = calendar.monthrange(day.year, day.month)[1]
    return Slot(at, local.hour, local.weekday(), day.day, month_days - day.day, day.toordinal())


def feature_block(slots: Sequence[Slot], facts: PlanFacts) -> FeatureBlock:
    """The features of charging the case at each of `slots`."""
    import numpy as np  # here, not at the top: the workflow sandbox imports this module

    failed = facts.failed_at.timestamp()
    last = (facts.last_charge_at or facts.failed_at).timestamp()
    times = np.array(
        [
            (s.at.timestamp(), s.hour, s.weekday, s.day, s.days_to_month_end, s.ordinal)
            for s in slots
        ],
        dtype=np.float64,
    ).reshape(len(slots), 6)
    at, ordinal, day = times[:, 0], times[:, 5], times[:, 3]
    paid = _paid_dates(facts.paid_history, _zone(facts))
    if paid:
        paid_day = np.array([p.day for p in paid], dtype=np.float64)
        paid_ordinal = np.array([p.toordinal() for p in paid], dtype=np.float64)
        since = ordinal[:, None] - paid_ordinal[None, :]
        cycle = [
            np.full(len(slots), float(len(paid))),
            np.mod(day[:, None] - paid_day[None, :], 31).min(axis=1),
            np.mod(since, 7).min(axis=1),
            np.mod(since, 14).min(axis=1),
        ]
    else:
        cycle = [np.zeros(len(slots))] + [np.full(len(slots), np.nan)] * 3
    columns = [(at - failed) / 3600, (at - last) / 3600, *times[:, 1:5].T, *cycle]
    return FeatureBlock(case_features(facts), np.column_stack(columns))


def case_features(facts: PlanFacts) -> FeatureRow:
    """The features that do not depend on the time: categories, attempt, amount."""
    return [
        (facts.decline_code or UNKNOWN).strip().lower(),
        str(facts.decline_class or UNKNOWN),
        (facts.card_brand or UNKNOWN).strip().lower(),
        (facts.card_country or UNKNOWN).upper(),
        facts.currency.upper(),
        float(facts.attempt),
        float(facts.declines),
        float(len(str(facts.amount))),  # the amount's order of magnitude, in minor units
    ]


def choose_retries(
    scorer: RetryScorer | None,
    slots: Sequence[Slot],
    chances: Sequence[float] | None,
    facts: PlanFacts,
    policy: Policy,
) -> RetryPlan:
    """The plan from rated `slots` (`chances`, None with no usable model): the best-rated
    times for the retries left, or the fixed schedule; explored in `policy.exploration` of
    decisions, by a draw fixed by the case and attempt (so a retried activity agrees)."""
    if _never_retry(facts, policy):
        code = facts.decline_code or facts.network_decline_code or "this decline"
        return RetryPlan(offsets=[], reason=f"no retries: {code} is never retried")
    left = _retries_left(facts, policy)
    if left <= 0:
        return RetryPlan(offsets=[], reason="no retries left in the budget")
    if chances is None or scorer is None:  # no model fit to plan with
        why = _why_fixed(scorer)
        offsets = _fixed(facts, policy, left)
        plan = RetryPlan(offsets=offsets, reason=f"fixed schedule: {why}", propensity=1.0)
        return _explore(plan, [slot.at for slot in slots], facts, policy)
    if not slots:
        offsets = _fixed(facts, policy, left)
        return RetryPlan(offsets=offsets, reason="fixed schedule: no slot left in the window")
    chosen = _best([slot.at for slot in slots], chances, facts, policy, left)
    reason = f"smart schedule from model v{scorer.version} ({scorer.trained_on} attempts)"
    if len(chosen) < left:
        reason += f"; only {len(chosen)} of {left} retries fit (spacing, hours, network cap)"
    plan = RetryPlan(
        offsets=[at - facts.failed_at for at in chosen],
        model_version=scorer.version,
        reason=reason,
        propensity=1.0,
    )
    return _explore(plan, [slot.at for slot in slots], facts, policy)


def _best(
    slots: Sequence[datetime],
    chances: Sequence[float],
    facts: PlanFacts,
    policy: Policy,
    left: int,
) -> list[datetime]:
    """Greedy: the best-valued slot that keeps the spacing and the network's cap, until the
    budget is spent; ties keep the earlier time. Sorted."""
    rules = policy.declines.network(facts.card_brand)
    cap = None if rules is None else rules.max_attempts
    origin = slots[0]
    valued = sorted(
        (
            (-chance * DAILY_DISCOUNT ** ((at - origin) / _DAY), at)
            for at, chance in zip(slots, chances, strict=True)
        ),
    )
    chosen: list[datetime] = []
    for _, at in valued:
        if len(chosen) == left:
            break
        if any(abs(at - c) < policy.min_retry_gap for c in chosen):
            continue
        if cap is not None and not _within_cap([*chosen, at], cap - facts.declines, rules.window):
            continue
        chosen.append(at)
    return sorted(chosen)


def _explore(
    plan: RetryPlan, slots: Sequence[datetime], facts: PlanFacts, policy: Policy
) -> RetryPlan:
    """With chance `policy.exploration`, move the plan's first retry to a slot drawn evenly
    from `slots`; either way record the chance the first retry had of landing where it did."""
    share = policy.exploration
    if share <= 0 or not plan.offsets or not slots:
        return plan
    planned = facts.failed_at + plan.offsets[0]
    evenly = share / len(slots)
    draw = _uniform(facts.case_id, facts.attempt, "explore")
    if draw >= share:
        chance = (1 - share) + (evenly if planned in slots else 0.0)
        return plan.model_copy(update={"propensity": chance})
    pick = slots[
        min(int(_uniform(facts.case_id, facts.attempt, "slot") * len(slots)), len(slots) - 1)
    ]
    chance = evenly + ((1 - share) if pick == planned else 0.0)
    rest = [o for o in plan.offsets[1:] if abs(facts.failed_at + o - pick) >= policy.min_retry_gap]
    return plan.model_copy(
        update={
            "offsets": sorted([pick - facts.failed_at, *rest]),
            "propensity": chance,
            "explored": True,
            "reason": f"{plan.reason}; exploring: first retry drawn from {len(slots)} times",
        }
    )


def _uniform(case_id: str, attempt: int, question: str) -> float:
    """A number in [0, 1) fixed by the case, the attempt and the question."""
    digest = hashlib.sha256(f"{case_id}:{attempt}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _earliest(facts: PlanFacts, policy: Policy) -> datetime:
    """No retry before now, nor within `min_retry_gap` of the failure or the last charge."""
    return max(
        facts.failed_at + max(policy.min_retry_gap, timedelta(hours=1)),
        (facts.last_charge_at or facts.failed_at) + policy.min_retry_gap,
        facts.planned_at or facts.opened_at or facts.failed_at,
    )


def _fixed(facts: PlanFacts, policy: Policy, left: int) -> list[timedelta]:
    """The policy's fixed retries not yet made, but none already behind the earliest time."""
    earliest = _earliest(facts, policy) - facts.failed_at
    remaining = policy.retries[facts.retries_done : facts.retries_done + left]
    return [offset for offset in remaining if offset >= earliest]


def usable(scorer: RetryScorer | None) -> bool:
    """True for a model fitted on enough history to plan with."""
    return scorer is not None and scorer.trained_on >= MIN_HISTORY


def _why_fixed(scorer: RetryScorer | None) -> str:
    if scorer is None:
        return "no retry model"
    return f"only {scorer.trained_on} attempts of history"


def _never_retry(facts: PlanFacts, policy: Policy) -> bool:
    return policy.declines.classify(facts) is DeclineClass.NEVER_RETRY


def _retries_left(facts: PlanFacts, policy: Policy) -> int:
    budget = min(len(policy.retries), policy.max_charge_attempts)
    return budget - facts.retries_done


def _zone(facts: PlanFacts) -> str:
    return facts.time_zones[0] if facts.time_zones else "UTC"


def _paid_dates(history: Iterable[datetime], zone: str) -> list[date]:
    tz = ZoneInfo(zone)
    return [moment.astimezone(tz).date() for moment in sorted(history)[-HISTORY_USED:]]


def _within_cap(times: Iterable[datetime], cap: int, window: timedelta) -> bool:
    """True when no span of `window` holds more than `cap` of the times."""
    ordered = sorted(times)
    return all(
        sum(start <= t < start + window for t in ordered[i:]) <= cap
        for i, start in enumerate(ordered)
    )


_DAY = timedelta(days=1)


class AttemptRecord(BaseModel):
    """One past retry and what was known when it was planned: what a model learns from.

    `facts` are the case's as the planner saw them before the charge; `propensity` is the
    chance the charge's time had of being chosen (1 when no exploration chose it)."""

    facts: PlanFacts
    at: AwareDatetime
    approved: bool
    propensity: float = Field(default=1.0, gt=0, le=1)

    def features(self) -> FeatureBlock:
        """The features of this attempt's charge time (the time needs no slot hour)."""
        return feature_block([slot_at(self.at, _zone(self.facts))], self.facts)
