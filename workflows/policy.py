"""Dunning policies: the schedule of retries and reminders a case follows.

Policies are data the business edits (`config/policies/*.toml`); this module only defines their
shape and validates them, so a bad file fails at load with a clear message instead of
mid-case. No I/O and no Temporal import: the workflow and the offline tools share it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workflows.contact_hours import ContactHours


class Channel(StrEnum):
    """Where a message reaches the customer."""

    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class Tone(StrEnum):
    """How insistent a reminder is; a policy climbs this ladder, never down it."""

    GENTLE = "gentle"
    FIRM = "firm"
    FINAL = "final"


class DeclineClass(StrEnum):
    """What a decline means for the next charge."""

    RETRY_LATER = "retry_later"
    """Soft decline (insufficient funds, issuer unavailable): the same card may pass later."""
    NEVER_RETRY = "never_retry"
    """Hard decline (stolen, lost, closed): only a new payment method can pay."""
    NEEDS_CUSTOMER_ACTION = "needs_customer_action"
    """The issuer wants the customer present (e.g. 3-D Secure): send the link, do not charge."""


class Outcome(StrEnum):
    """How a case ends."""

    RECOVERED = "recovered"
    CANCELLED = "cancelled"
    COLLECTIONS = "collections"


class WriteBackAction(StrEnum):
    """What the biller is told when a case ends."""

    MARK_UNCOLLECTIBLE = "mark_uncollectible"
    MARK_PAID_OUT_OF_BAND = "mark_paid_out_of_band"
    CANCEL_SUBSCRIPTION_NOW = "cancel_subscription_now"
    CANCEL_SUBSCRIPTION_AT_PERIOD_END = "cancel_subscription_at_period_end"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeclineCodes(BaseModel):
    """Every code an issuer, a network or the gateway gave for a decline."""

    model_config = ConfigDict(extra="forbid")

    decline_code: str | None = Field(default=None, max_length=100)
    advice_code: str | None = Field(default=None, max_length=100, description="Stripe's.")
    network_decline_code: str | None = Field(default=None, max_length=20, description="Visa 05")
    network_advice_code: str | None = Field(default=None, max_length=20, description="MC 03")
    card_brand: str | None = Field(default=None, max_length=30, description="visa, mastercard")
    card_country: str | None = Field(
        default=None, max_length=2, description="Where the card was issued, ISO-3166: US."
    )


class NetworkRules(_Strict):
    """A card network's rules on reattempts, enforced per card."""

    never_retry_decline_codes: list[str] = Field(default_factory=list)
    never_retry_advice_codes: list[str] = Field(default_factory=list)
    max_attempts: int | None = Field(default=None, ge=1, description="Reattempts per window.")
    window: timedelta = timedelta(days=30)

    def allows_at(self, charged_at: list[datetime]) -> datetime | None:
        """When the card may be charged again after charges at `charged_at`, or None while
        the cap is not reached (then it may be charged now)."""
        if self.max_attempts is None or len(charged_at) < self.max_attempts:
            return None
        return sorted(charged_at)[-self.max_attempts] + self.window


def _lower_keys(table: dict[str, DeclineClass]) -> dict[str, DeclineClass]:
    # Codes are looked up in lower case: a key written "Lost_Card" must still match.
    normalised: dict[str, DeclineClass] = {}
    for code, decline_class in table.items():
        key = code.strip().lower()
        if normalised.setdefault(key, decline_class) is not decline_class:
            raise ValueError(f"{key!r} is listed twice with different classes")
    return normalised


_SEVERITY = [DeclineClass.RETRY_LATER, DeclineClass.NEEDS_CUSTOMER_ACTION, DeclineClass.NEVER_RETRY]


class DeclineTable(_Strict):
    """Decline codes → class, kept as data (`config/declines.toml`), not code.

    Every rule that matches is heard and the most severe wins: a soft decline code with a
    network's "do not retry" advice is never retried."""

    default: DeclineClass = DeclineClass.RETRY_LATER
    codes: dict[str, DeclineClass] = Field(default_factory=dict)
    advice_codes: dict[str, DeclineClass] = Field(default_factory=dict)
    networks: dict[str, NetworkRules] = Field(default_factory=dict)

    _normalise = field_validator("codes", "advice_codes")(_lower_keys)

    def classify(self, codes: DeclineCodes | str | None) -> DeclineClass:
        """The class of a decline; unknown codes get the table's default."""
        if not isinstance(codes, DeclineCodes):
            codes = DeclineCodes(decline_code=codes)
        found = []
        if codes.decline_code:
            found.append(self.codes.get(codes.decline_code.strip().lower(), self.default))
        if codes.advice_code and codes.advice_code.strip().lower() in self.advice_codes:
            found.append(self.advice_codes[codes.advice_code.strip().lower()])
        network = self.network(codes.card_brand)
        if network is not None and (
            codes.network_decline_code in network.never_retry_decline_codes
            or codes.network_advice_code in network.never_retry_advice_codes
        ):
            found.append(DeclineClass.NEVER_RETRY)
        return max(found, key=_SEVERITY.index, default=self.default)

    def network(self, card_brand: str | None) -> NetworkRules | None:
        """The rules of a card's network, if the table has any."""
        return self.networks.get((card_brand or "").strip().lower())


class Reminder(_Strict):
    """A message sent `after` the failure (plus any time the case spent paused)."""

    after: timedelta
    tone: Tone
    channels: list[Channel] = Field(min_length=1)


class CallStep(_Strict):
    """A task for a person to phone the customer, `after` the failure (plus any time the case
    spent held); the task stays open until the call reaches them or `max_attempts` calls did
    not. Calls keep Regulation F's limits: see `workflows/calls.py`."""

    after: timedelta
    max_attempts: int = Field(default=3, ge=1, le=7, description="Call attempts per task.")


class PlanOffer(_Strict):
    """A payment plan a policy offers: the amount due in `installments` equal parts, the first
    charged when the customer accepts, the others every `every`."""

    installments: int = Field(ge=2, le=12)
    every: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    min_installment: int = Field(
        default=1, ge=1, description="Minor units; smaller installments are not offered."
    )
    retries: list[timedelta] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(days=3)],
        max_length=5,
        description="When a declined installment is tried again, from its due date; after the "
        "last one the plan ends and dunning resumes for what is left.",
    )

    @model_validator(mode="after")
    def _retries_fit(self) -> PlanOffer:
        if self.retries != sorted(self.retries) or any(r <= timedelta(0) for r in self.retries):
            raise ValueError("retries: positive offsets in increasing order")
        if self.retries and self.retries[-1] >= self.every:
            raise ValueError("retries: the last must come before the next installment (every)")
        return self


class LateFee(_Strict):
    """A fee added once per case `after` the failure (plus any time the case was held):
    `fixed` minor units of the case's currency, or `percent` of what is still due then,
    at most `cap` minor units. Some jurisdictions limit or forbid late fees: check first."""

    after: timedelta = Field(gt=timedelta(0))
    fixed: int | None = Field(default=None, gt=0, description="Minor units, e.g. 500 = $5.00.")
    percent: Decimal | None = Field(default=None, gt=0, le=100, description="Of the amount due.")
    cap: int | None = Field(
        default=None, gt=0, description="Minor units; the fee never exceeds it."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> LateFee:
        if (self.fixed is None) == (self.percent is None):
            raise ValueError("late_fee: give exactly one of `fixed` and `percent`")
        return self


class Policy(_Strict):
    """A versioned dunning schedule. A running case keeps the version it started with."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: int = Field(ge=1)
    description: str = ""
    retries: list[timedelta] = Field(description="Offsets from the failure of scheduled retries.")
    retry_timing: Literal["fixed", "smart"] = Field(
        default="fixed",
        description="fixed: charge at `retries`. smart: as many retries as `retries` lists, at "
        "the times a model of past attempts rates best (the fixed ones while it has too little "
        "history).",
    )
    exploration: float = Field(
        default=0.0,
        ge=0,
        le=0.2,
        description="Smart timing: the share of retry decisions that try a time drawn evenly "
        "from the feasible ones, so the model learns about times its own choices never visit.",
    )
    message_timing: Literal["as_written", "learned"] = Field(
        default="as_written",
        description="as_written: reminders go when due, on their channels. learned: a case "
        "follows the send hour, channel order and final-notice escalation its customer's "
        "segment has shown to work (as written where nothing was shown); contact hours, "
        "opt-outs and the weekly cap still hold.",
    )
    message_exploration: float = Field(
        default=0.0,
        ge=0,
        le=0.2,
        description="Learned message timing: the share of reminders sent at an hour and on "
        "channels drawn evenly, so the model learns about choices it would not make.",
    )
    min_retry_gap: timedelta = Field(
        description="Least time between two charges, so a resumed case does not charge in bursts."
    )
    retry_after_method_update: timedelta = Field(
        description="How soon to charge after the customer gives a new payment method."
    )
    max_charge_attempts: int = Field(ge=1, description="Hard cap on charges in one case.")
    reminders: list[Reminder]
    collections_after: timedelta = Field(
        description="When the schedule is exhausted and the case goes to collections."
    )
    contact_hours: ContactHours = Field(
        default_factory=ContactHours, description="Local hours in which messages may go out."
    )
    outcome_messages: dict[Outcome, list[Channel]] = Field(default_factory=dict)
    write_back: dict[Outcome, list[WriteBackAction]] = Field(
        default_factory=dict,
        description="What the biller is told per outcome (mark uncollectible, cancel, ...).",
    )
    declines: DeclineTable = Field(default_factory=DeclineTable)
    payment_plans: list[PlanOffer] = Field(
        default_factory=list, description="Plans the recovery page offers; none: no plan."
    )
    conversation: bool = Field(
        default=False,
        description="Reminders go through the customer's conversation, which merges those of "
        "all their open cases into one message and keeps the weekly budget for them all; off, "
        "each case sends its own (the weekly cap still counts across cases).",
    )
    conversation_window: timedelta = Field(
        default=timedelta(days=1),
        gt=timedelta(0),
        description="The conversation sends reminders due within this long of each other as "
        "one message, and no two messages closer than this.",
    )
    promise_within: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="How far ahead a customer may promise to pay; unset: no promise offered.",
    )
    late_fee: LateFee | None = Field(
        default=None, description="A fee added once per case; unset (the default): no fee."
    )
    calls: list[CallStep] = Field(
        default_factory=list, description="Tasks for a person to phone the customer; none: no call."
    )
    grace_period: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="How long the customer keeps full access after the failure (held time "
        "does not count); its end publishes `case.grace_ending`. Unset: no such event.",
    )
    restrict_access_after: timedelta | None = Field(
        default=None,
        gt=timedelta(0),
        description="When the product should restrict access, from the failure (held time "
        "does not count): publishes `case.access_restricted`. Unset: access is never restricted.",
    )

    @property
    def label(self) -> str:
        """Short name shown to operators, e.g. ``standard v1``."""
        return f"{self.name} v{self.version}"

    @model_validator(mode="after")
    def _check_schedule(self) -> Policy:
        for name in ("min_retry_gap", "retry_after_method_update", "collections_after"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name}: must not be negative")
        for name, offsets in (
            ("retries", self.retries),
            ("reminders", [r.after for r in self.reminders]),
            ("calls", [c.after for c in self.calls]),
        ):
            if any(o < timedelta(0) for o in offsets):
                raise ValueError(f"{name}: offsets must not be negative")
            if offsets != sorted(offsets):
                raise ValueError(f"{name}: offsets must be in increasing order")
            if offsets and offsets[-1] >= self.collections_after:
                raise ValueError(f"{name}: every offset must come before collections_after")
        tones = [list(Tone).index(r.tone) for r in self.reminders]
        if tones != sorted(tones):
            raise ValueError("reminders: the tone ladder only climbs (gentle → firm → final)")
        if len({offer.installments for offer in self.payment_plans}) < len(self.payment_plans):
            raise ValueError("payment_plans: one offer per number of installments")
        if len(self.retries) > self.max_charge_attempts:
            raise ValueError("retries: more scheduled retries than max_charge_attempts allows")
        if self.late_fee is not None and self.late_fee.after >= self.collections_after:
            raise ValueError("late_fee.after: must come before collections_after")
        self._check_access()
        return self

    def _check_access(self) -> None:
        """Access is restricted no sooner than the grace period ends, and both before the
        case goes to collections."""
        for name in ("grace_period", "restrict_access_after"):
            value = getattr(self, name)
            if value is not None and value > self.collections_after:
                raise ValueError(f"{name}: must not come after collections_after")
        grace, restrict = self.grace_period, self.restrict_access_after
        if grace is not None and restrict is not None and restrict < grace:
            raise ValueError("restrict_access_after: must not come before the grace period ends")
