"""Smart retry timing: what a case tells the planner, what the planner answers, and what a
retry model learns from. Charges go when a retry is most likely to pass, re-planned after
every decline (`workflows.retry_planner` chooses; `workflows.retry_model` rates).

What a model sees of a candidate time (`FEATURES`): the decline's code and class, the card's
brand and country, the currency, the attempt and declines so far, the amount's size, the
hours since the failure and the last charge, the customer's local hour, weekday and day of
month, and where the time falls in *this customer's* pay cycle as their earlier payments
show it (days after the day of month they paid on before, and after the weekday of a weekly
or fortnightly pay).

Exploration: a small share of decisions (`policy.exploration`) charge at a time drawn evenly
from the feasible ones, and the plan records the chance its time had of being chosen.
Training weighs each attempt by the inverse of that chance, so what a model learns of days
and hours the greedy choice never visits is not left to survivors' luck.

Pure and light (pydantic and the standard library only): the workflow imports this module
for `PlanFacts` and `RetryPlan`; numpy and scikit-learn stay out of its sandbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

from pydantic import AwareDatetime, BaseModel, Field

from workflows.policy import DeclineClass, DeclineCodes

MIN_HISTORY = 200
"""Fewer attempts than this and the model is noise: cases keep the policy's fixed schedule."""

SLOT_HOURS = (9, 14, 19)
"""Local hours a retry may be planned at: morning, afternoon, evening. Three a day keep
planning cheap (the simulator plans thousands of cases a second); contact hours still decide
which of them are allowed."""

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
"""The model's inputs, in order: a `FeatureBlock`'s case part, then its time part."""

FeatureRow = list[str | float | None]
"""The features of a case that do not depend on the time: categories and case numbers."""


class FeatureBlock(NamedTuple):
    """The features of charging one case at each of several times: the case's own part once,
    and one row of the time's features per time (a numpy array, so many cases rate fast)."""

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


def uniform(case_id: str, attempt: int, question: str) -> float:
    """A number in [0, 1) fixed by the case, the attempt (or step) and the question: every
    exploration draw (retry times here, messages in `workflows.message_timing`), so a
    replayed or retried decision agrees with itself."""
    digest = hashlib.sha256(f"{case_id}:{attempt}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def usable(scorer: RetryScorer | None) -> bool:
    """True for a model fitted on enough history to plan with."""
    return scorer is not None and scorer.trained_on >= MIN_HISTORY


class AttemptRecord(BaseModel):
    """One past retry and what was known when it was planned: what a model learns from.

    `facts` are the case's as the planner saw them before the charge; `propensity` is the
    chance the charge's time had of being chosen (1 when no exploration chose it)."""

    facts: PlanFacts
    at: AwareDatetime
    approved: bool
    propensity: float = Field(default=1.0, gt=0, le=1)
