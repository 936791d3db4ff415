"""Smart retry timing: charge when a retry is most likely to pass, learnt from past attempts.

The model is smoothed success rates. For every feature of a charge time (decline class and
code, card brand, local hour, weekday, payday, days since the failure, attempt number, amount
band) it counts how many past attempts with that value were approved. A value seen rarely is
pulled toward the overall rate, so a lucky handful of attempts cannot steer a schedule. A
candidate time's score combines the rates of its values in odds space (naive Bayes). The
planner tries every hour of the case's window and keeps the best-scoring ones that respect
the policy's spacing, contact hours and the card network's cap.

Pure (no I/O but the time-zone database, no Temporal import): the workflow's activity, the
training command and the offline simulator all call `fit` and `plan_retries` unchanged.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.policy import DeclineClass, DeclineCodes, Policy

MIN_HISTORY = 200
"""Fewer attempts than this and the model is noise: cases keep the policy's fixed schedule."""

PRIOR_STRENGTH = 20.0
"""Pseudo-attempts at the base rate added to every feature value (Beta smoothing)."""

SLOT = timedelta(hours=1)
"""Candidate charge times are whole hours after the failure: keeps the failure's minute, so
cases that failed at different minutes do not all charge at the top of the hour."""

BEFORE_COLLECTIONS = timedelta(days=1)
"""The last retry leaves this much room for its reminders before collections."""

UNKNOWN = "unknown"


class Payday(StrEnum):
    """Where a day falls in the pay cycle; insufficient funds clears around paydays."""

    FIRST = "1st"
    FIFTEENTH = "15th"
    LAST_WEEKDAY = "last_weekday"
    OTHER = "other"


def payday(day: datetime) -> Payday:
    """The pay-cycle bucket of a (local) date: the 1st, the 15th, the month's last weekday."""
    if day.day == 1:
        return Payday.FIRST
    if day.day == 15:
        return Payday.FIFTEENTH
    last = calendar.monthrange(day.year, day.month)[1]
    while calendar.weekday(day.year, day.month, last) >= 5:  # Saturday, Sunday
        last -= 1
    return Payday.LAST_WEEKDAY if day.day == last else Payday.OTHER


def days_since_bucket(elapsed: timedelta) -> str:
    """How long after the failure: ``0d``, ``1-2d``, ``3-6d``, ``7-13d``, ``14d+``."""
    days = elapsed.days
    for upper, label in ((1, "0d"), (3, "1-2d"), (7, "3-6d"), (14, "7-13d")):
        if days < upper:
            return label
    return "14d+"


def amount_band(amount: int, currency: str) -> str:
    """The amount's order of magnitude in minor units, per currency: ``USD 1000-9999``."""
    digits = len(str(max(amount, 1)))
    return f"{currency.upper()} {10 ** (digits - 1)}-{10**digits - 1}"


def attempt_bucket(attempt: int) -> str:
    """The attempt number; five and beyond are one bucket."""
    return str(attempt) if attempt < 5 else "5+"


class RetryFeatures(BaseModel):
    """What the model knows of one candidate charge: the case's decline, the card, and when.

    Times are local to the customer (their first known zone; UTC when none is known)."""

    model_config = ConfigDict(frozen=True)

    decline_class: str
    decline_code: str
    card_brand: str
    local_hour: int = Field(ge=0, le=23)
    weekday: int = Field(ge=0, le=6, description="Monday is 0.")
    payday: Payday
    days_since_failure: str
    attempt: str
    amount_band: str

    @classmethod
    def at(
        cls,
        moment: datetime,
        *,
        failed_at: datetime,
        attempt: int,
        decline_class: DeclineClass | str | None,
        decline_code: str | None,
        card_brand: str | None,
        amount: int,
        currency: str,
        time_zone: str | None,
    ) -> RetryFeatures:
        """The features of charging at `moment` (attempt number `attempt` of the case)."""
        local = moment.astimezone(ZoneInfo(time_zone) if time_zone else UTC)
        return cls(
            decline_class=str(decline_class or UNKNOWN),
            decline_code=(decline_code or UNKNOWN).strip().lower(),
            card_brand=(card_brand or UNKNOWN).strip().lower(),
            local_hour=local.hour,
            weekday=local.weekday(),
            payday=payday(local),
            days_since_failure=days_since_bucket(moment - failed_at),
            attempt=attempt_bucket(attempt),
            amount_band=amount_band(amount, currency),
        )

    def values(self) -> dict[str, str]:
        """Feature name → value, as the model keys its counts."""
        return {name: str(value) for name, value in self.model_dump(mode="json").items()}


FEATURES = list(RetryFeatures.model_fields)


class AttemptRecord(BaseModel):
    """One past charge attempt and the facts of its case: what `fit` learns from."""

    at: AwareDatetime
    approved: bool
    attempt: int = Field(ge=1, description="The attempt's number within its case.")
    failed_at: AwareDatetime = Field(description="When the case's payment failed (or opened).")
    decline_code: str | None = None
    decline_class: DeclineClass | None = None
    card_brand: str | None = None
    amount: int
    currency: str
    time_zone: str | None = None
    case_id: str = ""

    def features(self) -> RetryFeatures:
        """The features of this attempt's charge time."""
        return RetryFeatures.at(
            self.at,
            failed_at=self.failed_at,
            attempt=self.attempt,
            decline_class=self.decline_class,
            decline_code=self.decline_code,
            card_brand=self.card_brand,
            amount=self.amount,
            currency=self.currency,
            time_zone=self.time_zone,
        )


class RetryModel(BaseModel):
    """Smoothed success rates per feature value, fitted from attempt history. Versioned: a
    case's plan names the version that chose its times."""

    version: int = Field(ge=1)
    trained_at: AwareDatetime
    trained_on: int = Field(ge=0, description="Number of attempts in the history.")
    base_rate: float = Field(gt=0, lt=1, description="(approved + 1) / (attempts + 2).")
    prior_strength: float = Field(default=PRIOR_STRENGTH, gt=0)
    counts: dict[str, dict[str, tuple[int, int]]] = Field(
        default_factory=dict, description="Feature → value → (approved, attempts)."
    )

    def rate(self, feature: str, value: str) -> float:
        """The smoothed success rate of one feature value; the base rate for an unseen one."""
        successes, trials = self.counts.get(feature, {}).get(value, (0, 0))
        m = self.prior_strength
        return (successes + m * self.base_rate) / (trials + m)

    def evidence(self, feature: str, value: str) -> float:
        """How much one value moves the log-odds of success from the base rate."""
        return _logit(self.rate(feature, value)) - _logit(self.base_rate)

    def score(self, features: RetryFeatures) -> float:
        """The estimated chance that a charge with these features is approved.

        With p0 the base rate, m the prior strength and (s, n) the approved and total
        attempts seen with a feature's value::

            r(value) = (s + m * p0) / (n + m)
            logit(score) = logit(p0) + sum over features of (logit(r(value)) - logit(p0))

        where logit(p) = ln(p / (1 - p)). Each feature multiplies the base odds by its
        value's odds ratio, as in naive Bayes. Features are not independent (an attempt
        number and the days since the failure move together), so the figure is
        overconfident as a probability; what planning uses is the ranking of times.
        """
        return _sigmoid(self._log_odds(features.values()))

    def _log_odds(self, values: dict[str, str]) -> float:
        base = _logit(self.base_rate)
        return base + sum(self.evidence(name, value) for name, value in values.items())


def fit(history: list[AttemptRecord], version: int, now: datetime) -> RetryModel:
    """Count approvals per feature value over `history`; deterministic for a given input,
    whatever its order."""
    counts: dict[str, dict[str, list[int]]] = {name: {} for name in FEATURES}
    approved = 0
    for record in history:
        approved += record.approved
        for name, value in record.features().values().items():
            tally = counts[name].setdefault(value, [0, 0])
            tally[0] += record.approved
            tally[1] += 1
    return RetryModel(
        version=version,
        trained_at=now,
        trained_on=len(history),
        base_rate=(approved + 1) / (len(history) + 2),
        counts={
            name: {value: (s, n) for value, (s, n) in sorted(values.items())}
            for name, values in counts.items()
        },
    )


class PlanFacts(DeclineCodes):
    """What the planner knows of a case: its failure, amount and where the customer is."""

    case_id: str = ""
    failed_at: AwareDatetime
    amount: int = Field(gt=0)
    currency: str
    time_zones: list[str] = Field(
        default_factory=list, description="Where the customer may be; contact hours hold in all."
    )
    opened_at: AwareDatetime | None = Field(
        default=None, description="When the case started: no retry is planned before it."
    )


class RetryPlan(BaseModel):
    """The retry times of one case as offsets from its failure, and who chose them."""

    offsets: list[timedelta]
    model_version: int | None = None
    reason: str


def plan_retries(model: RetryModel | None, facts: PlanFacts, policy: Policy) -> RetryPlan:
    """Choose the case's retry times: as many as `policy.retries` (the retry budget), each in
    the case window (from `min_retry_gap` after the failure to a day before collections),
    inside contact hours in every zone of `facts.time_zones`, `min_retry_gap` apart and
    within the card network's cap. Every hour of the window is a candidate; the best-scoring
    feasible one is taken until the budget is spent, then the times are sorted.

    A never-retry decline gets no retries. With no model, one fitted on fewer than
    `MIN_HISTORY` attempts, or a window with no room, the plan is the policy's fixed
    schedule, and `reason` says why."""
    decline_class = policy.declines.classify(facts)
    if decline_class is DeclineClass.NEVER_RETRY:
        code = facts.decline_code or facts.network_decline_code or "this decline"
        return RetryPlan(offsets=[], reason=f"no retries: {code} is never retried")
    if model is None:
        return _fixed(policy, "no retry model")
    if model.trained_on < MIN_HISTORY:
        return _fixed(policy, f"only {model.trained_on} attempts of history")

    candidates = _candidates(facts, policy)
    if not candidates:
        return _fixed(policy, "no contact-hours slot in the case window")
    zone = facts.time_zones[0] if facts.time_zones else None
    rules = policy.declines.network(facts.card_brand)
    cap = None if rules is None or rules.max_attempts is None else rules.max_attempts
    # Everything but the attempt number is fixed per slot: score it once.
    fixed_part: dict[timedelta, float] = {}
    for offset in candidates:
        values = RetryFeatures.at(
            facts.failed_at + offset,
            failed_at=facts.failed_at,
            attempt=1,
            decline_class=decline_class,
            decline_code=facts.decline_code,
            card_brand=facts.card_brand,
            amount=facts.amount,
            currency=facts.currency,
            time_zone=zone,
        ).values()
        del values["attempt"]
        fixed_part[offset] = model._log_odds(values)
    by_attempt = {n: model.evidence("attempt", attempt_bucket(n)) for n in range(1, 6)}

    chosen: list[timedelta] = []
    budget = min(len(policy.retries), policy.max_charge_attempts)
    while len(chosen) < budget:
        best: tuple[float, timedelta] | None = None
        for offset in candidates:
            if any(abs(offset - c) < policy.min_retry_gap for c in chosen):
                continue
            if cap is not None and not _within_cap([*chosen, offset], cap, rules.window):
                continue
            # Its attempt number, were it added now: one after every chosen earlier time.
            attempt = 1 + sum(c < offset for c in chosen)
            score = fixed_part[offset] + by_attempt[min(attempt, 5)]
            if best is None or score > best[0]:  # ties keep the earlier time
                best = (score, offset)
        if best is None:
            break
        chosen.append(best[1])

    reason = f"smart schedule from model v{model.version} ({model.trained_on} attempts)"
    if len(chosen) < budget:
        fitted = f"only {len(chosen)} of {budget} retries fit"
        reason += f"; {fitted} (spacing, contact hours, network cap)"
    return RetryPlan(offsets=sorted(chosen), model_version=model.version, reason=reason)


def _fixed(policy: Policy, why: str) -> RetryPlan:
    return RetryPlan(offsets=list(policy.retries), reason=f"fixed schedule: {why}")


def _candidates(facts: PlanFacts, policy: Policy) -> list[timedelta]:
    """Whole hours after the failure, inside the case window and contact hours in every
    zone; zones that never share an hour fall back to the first zone, as messages do."""
    first = max(policy.min_retry_gap, SLOT)
    if facts.opened_at is not None:
        first = max(first, facts.opened_at - facts.failed_at)
    last = policy.collections_after - BEFORE_COLLECTIONS
    hours = range(math.ceil(first / SLOT), math.floor(last / SLOT) + 1)
    window = [SLOT * h for h in hours]
    hours_rule = policy.contact_hours
    if not hours_rule.enabled or not facts.time_zones:
        return window
    for zones in (facts.time_zones, facts.time_zones[:1]):
        allowed = [
            o for o in window if all(hours_rule.allows(facts.failed_at + o, z) for z in zones)
        ]
        if allowed:
            return allowed
    return []


def _within_cap(offsets: Iterable[timedelta], cap: int, window: timedelta) -> bool:
    """True when no span of `window` holds more than `cap` of the times."""
    times = sorted(offsets)
    return all(
        sum(start <= t < start + window for t in times[i:]) <= cap for i, start in enumerate(times)
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    if x < 0:  # never exp() of a large positive number
        return math.exp(x) / (1 + math.exp(x))
    return 1 / (1 + math.exp(-x))
