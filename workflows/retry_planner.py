"""The retry planner: candidate times, their features, and the choice among them.

The candidates are `SLOT_HOURS` of every local day left in the case window, inside contact
hours, `min_retry_gap` after the last charge and within the card network's cap. A retry
model (`workflows.retry_model`) rates them; the planner takes the best-rated times for the
retries still in the budget, earlier ones preferred at equal odds (`DAILY_DISCOUNT`: a
customer waiting for their service may leave), and the case charges at the first. After a
decline the case asks again with what the decline taught. A share of decisions
(`policy.exploration`) charge at a time drawn evenly from the feasible ones instead, and the
plan records the chance its first time had of being chosen.

With no model, one fitted on fewer than `MIN_HISTORY` attempts, or no room in the window,
the plan is the policy's fixed schedule (still explored, so a new install gathers the
history its first model learns from), and `reason` says why.

Pure (no I/O but the time-zone database, no Temporal import) and vectorised with numpy: the
simulator plans thousands of cases a second. Not imported by the workflow (its sandbox would
load numpy once per run): the `plan_retries` activity and the simulator call it.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from workflows.policy import DeclineClass, Policy
from workflows.smart_retry import (
    HISTORY_USED,
    SLOT_HOURS,
    UNKNOWN,
    AttemptRecord,
    FeatureBlock,
    FeatureRow,
    PlanFacts,
    RetryPlan,
    RetryScorer,
    uniform,
    usable,
)

DAILY_DISCOUNT = 0.97
"""A retry's odds count this much less per day of waiting: at equal odds, sooner is better."""

BEFORE_COLLECTIONS = timedelta(days=1)
"""The last retry leaves this much room for its reminders before collections."""

_DAY = timedelta(days=1)
_COLUMNS = 6  # epoch seconds, local hour, weekday, day of month, days to month end, ordinal


class Slots:
    """Candidate charge times as one row each: the time (epoch seconds) and the customer's
    local calendar at it (hour, weekday, day of month, days to the month's end, date)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    @property
    def epochs(self) -> np.ndarray:
        return self.table[:, 0]

    def times(self) -> list[datetime]:
        """The candidate times, earliest first."""
        return [datetime.fromtimestamp(int(e), UTC) for e in self.epochs]


def plan_retries(scorer: RetryScorer | None, facts: PlanFacts, policy: Policy) -> RetryPlan:
    """Choose the case's remaining retry times: at most the retries left in the budget, in
    the case window (a day before collections), `min_retry_gap` apart, in contact hours and
    within the card network's cap."""
    slots = candidate_slots(facts, policy)
    able = usable(scorer)
    chances = scorer.success_chances([feature_block(slots, facts)]) if able else None
    return choose_retries(scorer, slots, chances, facts, policy)


def candidate_slots(facts: PlanFacts, policy: Policy) -> Slots:
    """Every time a retry may be planned at, earliest first (none for a never-retry decline
    or a spent budget)."""
    if _never_retry(facts, policy) or _retries_left(facts, policy) <= 0:
        return Slots(np.empty((0, _COLUMNS)))
    zone = _zone(facts)
    start = _earliest(facts, policy).timestamp()
    end = (facts.failed_at + policy.collections_after - BEFORE_COLLECTIONS).timestamp()
    tz = ZoneInfo(zone)
    minute = facts.failed_at.astimezone(tz).minute  # cases spread over the hour
    hours = policy.contact_hours
    rule = (hours.start, hours.end) if hours.enabled else None
    others = tuple(facts.time_zones[1:])
    first = datetime.fromtimestamp(start, tz).date().toordinal()
    last = datetime.fromtimestamp(end, tz).date().toordinal()
    days = [_day_table(zone, ordinal, rule, others) for ordinal in range(first, last + 1)]
    table = np.concatenate(days) if days else np.empty((0, _COLUMNS))
    table[:, 0] += 60 * minute
    table = table[(table[:, 0] >= start) & (table[:, 0] <= end)]
    if not len(table) and others:  # zones that never share an hour: the first zone's
        return candidate_slots(facts.model_copy(update={"time_zones": [zone]}), policy)
    return Slots(table)


@functools.lru_cache(maxsize=65536)
def _day_table(
    zone: str, ordinal: int, rule: tuple[time, time] | None, others: tuple[str, ...]
) -> np.ndarray:
    """The slots of one local day on the hour: `SLOT_HOURS` inside contact hours (`rule`) in
    `zone` and every zone of `others` (for any minute of the hour, as the case's minute moves
    them). Cached: cases share zones and days; callers get a copy to change."""
    day = date.fromordinal(ordinal)
    rows = []
    for hour in SLOT_HOURS:
        at = datetime.combine(day, time(hour), ZoneInfo(zone)).astimezone(UTC)
        if rule is None or all(
            rule[0] <= t.astimezone(ZoneInfo(z)).time() < rule[1]
            for z in (zone, *others)
            for t in (at, at + timedelta(minutes=59))
        ):
            rows.append(_calendar_row(at, zone))
    table = np.array(rows, dtype=np.float64).reshape(len(rows), _COLUMNS)
    table.flags.writeable = False
    return table


def _calendar_row(at: datetime, zone: str) -> list[float]:
    local = at.astimezone(ZoneInfo(zone))
    day = local.date()
    month_days = calendar.monthrange(day.year, day.month)[1]
    return [
        at.timestamp(),
        local.hour,
        local.weekday(),
        day.day,
        month_days - day.day,
        day.toordinal(),
    ]


def feature_block(slots: Slots, facts: PlanFacts) -> FeatureBlock:
    """The features of charging the case at each of `slots`: the case's own part once, and
    the time's (since the failure and the last charge, the local calendar, and the days since
    the customer's usual paydays, NaN when they never paid before) per slot."""
    table = slots.table
    count = len(table)
    times = np.empty((count, 10))
    epoch, day, ordinal = table[:, 0], table[:, 3], table[:, 5]
    times[:, 0] = (epoch - facts.failed_at.timestamp()) / 3600
    times[:, 1] = (epoch - (facts.last_charge_at or facts.failed_at).timestamp()) / 3600
    times[:, 2:6] = table[:, 1:5]
    paid = _paid_dates(facts.paid_history, _zone(facts))
    if paid:
        paid_day = np.array([p.day for p in paid], dtype=np.float64)
        since = ordinal[:, None] - np.array([p.toordinal() for p in paid], dtype=np.float64)
        times[:, 6] = len(paid)
        times[:, 7] = np.mod(day[:, None] - paid_day, 31).min(axis=1)
        times[:, 8] = np.mod(since, 7).min(axis=1)
        times[:, 9] = np.mod(since, 14).min(axis=1)
    else:
        times[:, 6] = 0.0
        times[:, 7:] = np.nan
    return FeatureBlock(case_features(facts), times)


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


def attempt_features(record: AttemptRecord) -> FeatureBlock:
    """The features of a past retry's charge time: what a model learns from."""
    zone = _zone(record.facts)
    return feature_block(Slots(np.array([_calendar_row(record.at, zone)])), record.facts)


def choose_retries(
    scorer: RetryScorer | None,
    slots: Slots,
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
        return _explore(plan, slots, facts, policy)
    if not len(slots):
        offsets = _fixed(facts, policy, left)
        return RetryPlan(offsets=offsets, reason="fixed schedule: no slot left in the window")
    chosen = _best(slots.epochs, np.asarray(chances), facts, policy, left)
    reason = f"smart schedule from model v{scorer.version} ({scorer.trained_on} attempts)"
    if len(chosen) < left:
        reason += f"; only {len(chosen)} of {left} retries fit (spacing, hours, network cap)"
    plan = RetryPlan(
        offsets=[_offset(epoch, facts) for epoch in chosen],
        model_version=scorer.version,
        reason=reason,
        propensity=1.0,
    )
    return _explore(plan, slots, facts, policy)


def _best(
    epochs: np.ndarray, chances: np.ndarray, facts: PlanFacts, policy: Policy, left: int
) -> list[float]:
    """Greedy: the best-valued slot that keeps the spacing and the network's cap, until the
    budget is spent; ties keep the earlier time. Sorted."""
    rules = policy.declines.network(facts.card_brand)
    cap = None if rules is None else rules.max_attempts
    if cap is not None and facts.declines + left <= cap:
        cap = None  # the whole budget fits under the cap: no need to count
    window = rules.window.total_seconds() if rules is not None else 0.0
    value = chances * DAILY_DISCOUNT ** ((epochs - epochs[0]) / 86400)
    gap = policy.min_retry_gap.total_seconds()
    chosen: list[float] = []
    for index in np.lexsort((epochs, -value)):
        if len(chosen) == left:
            break
        epoch = float(epochs[index])
        if any(abs(epoch - c) < gap for c in chosen):
            continue
        if cap is not None and not _within_cap([*chosen, epoch], cap - facts.declines, window):
            continue
        chosen.append(epoch)
    return sorted(chosen)


def _explore(plan: RetryPlan, slots: Slots, facts: PlanFacts, policy: Policy) -> RetryPlan:
    """With chance `policy.exploration`, move the plan's first retry to a slot drawn evenly
    from `slots`; either way record the chance the first retry had of landing where it did."""
    share = policy.exploration
    if share <= 0 or not plan.offsets or not len(slots):
        return plan
    epochs = slots.epochs
    planned = (facts.failed_at + plan.offsets[0]).timestamp()
    evenly = share / len(epochs)
    if uniform(facts.case_id, facts.attempt, "explore") >= share:
        chance = (1 - share) + (evenly if planned in epochs else 0.0)
        return plan.model_copy(update={"propensity": chance})
    index = int(uniform(facts.case_id, facts.attempt, "slot") * len(epochs))
    pick = float(epochs[min(index, len(epochs) - 1)])
    chance = evenly + ((1 - share) if pick == planned else 0.0)
    gap = policy.min_retry_gap
    first = _offset(pick, facts)
    rest = [o for o in plan.offsets[1:] if abs(o - first) >= gap]
    return plan.model_copy(
        update={
            "offsets": sorted([first, *rest]),
            "propensity": chance,
            "explored": True,
            "reason": f"{plan.reason}; exploring: first retry drawn from {len(epochs)} times",
        }
    )


def _offset(epoch: float, facts: PlanFacts) -> timedelta:
    return datetime.fromtimestamp(int(epoch), UTC) - facts.failed_at


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


def _within_cap(epochs: Iterable[float], cap: int, window: float) -> bool:
    """True when no span of `window` seconds holds more than `cap` of the times."""
    ordered = sorted(epochs)
    return all(
        sum(start <= t < start + window for t in ordered[i:]) <= cap
        for i, start in enumerate(ordered)
    )
