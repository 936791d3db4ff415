"""Dunning policies: the schedule of retries and reminders a case follows.

Policies are data the business edits (`config/policies/*.toml`); this module only defines their
shape and validates them, so a bad file fails at load with a clear message instead of
mid-case. No I/O and no Temporal import: the workflow and the offline tools share it.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeclineTable(_Strict):
    """Decline code → class, kept as data (`config/declines.toml`), not code."""

    default: DeclineClass = DeclineClass.RETRY_LATER
    codes: dict[str, DeclineClass] = Field(default_factory=dict)

    @field_validator("codes")
    @classmethod
    def _normalise_codes(cls, codes: dict[str, DeclineClass]) -> dict[str, DeclineClass]:
        # `classify` looks codes up in lower case: a key written "Lost_Card" must still match.
        normalised: dict[str, DeclineClass] = {}
        for code, decline_class in codes.items():
            key = code.strip().lower()
            if normalised.setdefault(key, decline_class) is not decline_class:
                raise ValueError(f"{key!r} is listed twice with different classes")
        return normalised

    def classify(self, decline_code: str | None) -> DeclineClass:
        """The class of a decline code; unknown codes get the table's default."""
        if decline_code is None:
            return self.default
        return self.codes.get(decline_code.strip().lower(), self.default)


class Reminder(_Strict):
    """A message sent `after` the failure (plus any time the case spent paused)."""

    after: timedelta
    tone: Tone
    channels: list[Channel] = Field(min_length=1)


class Policy(_Strict):
    """A versioned dunning schedule. A running case keeps the version it started with."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: int = Field(ge=1)
    description: str = ""
    retries: list[timedelta] = Field(description="Offsets from the failure of scheduled retries.")
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
    outcome_messages: dict[Outcome, list[Channel]] = Field(default_factory=dict)
    declines: DeclineTable = Field(default_factory=DeclineTable)

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
        if len(self.retries) > self.max_charge_attempts:
            raise ValueError("retries: more scheduled retries than max_charge_attempts allows")
        return self
