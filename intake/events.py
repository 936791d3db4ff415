"""The billing event: a failed invoice payment as any billing system describes it, checked
once by every door (POST /events, Stripe webhooks, `dunning start`, the Python API)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from activities.store import CustomerProfile
from workflows.models import ID_PATTERN
from workflows.values import (
    MAX_AMOUNT,
    MAX_CLOCK_SKEW,
    MAX_FAILURE_AGE,
    CountryCode,
    Currency,
    MinorAmount,
)

# Decline, advice and network codes and card brands: short printable tokens, nothing else.
CODE_PATTERN = r"^[A-Za-z0-9_.-]+$"


def check_occurred(at: datetime, now: datetime | None = None) -> datetime:
    """`at` if it is not further ahead of now than `MAX_CLOCK_SKEW`; ValueError otherwise."""
    now = now or datetime.now(UTC)
    if at > now + MAX_CLOCK_SKEW:
        raise ValueError(
            f"{at:%Y-%m-%dT%H:%M:%SZ} is in the future (more than "
            f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead of our clock)"
        )
    return at


def check_failed_at(at: datetime, now: datetime | None = None) -> datetime:
    """A failure time within the window a case can open on: at most `MAX_CLOCK_SKEW` ahead
    and `MAX_FAILURE_AGE` behind now; ValueError otherwise."""
    now = now or datetime.now(UTC)
    check_occurred(at, now)
    if at < now - MAX_FAILURE_AGE:
        raise ValueError(
            f"{at:%Y-%m-%dT%H:%M:%SZ} is more than {MAX_FAILURE_AGE.days} days ago: "
            "too old to open a case"
        )
    return at


class InvalidEvent(ValueError):
    """A billing event whose content breaks a rule; the message names the field and the rule.

    Final: the same content can never open a case, so it is recorded as rejected."""


class BillingEvent(BaseModel):
    """A failed invoice payment, as any billing system can describe it.

    The one model every door (POST /events, Stripe webhooks, `dunning start`, `start_case`)
    checks a failure against, so no value that passes can later break the case."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(pattern=ID_PATTERN)
    subscription_id: str | None = Field(default=None, pattern=ID_PATTERN)
    customer: CustomerProfile
    amount_due: MinorAmount
    currency: Currency
    decline_code: str | None = Field(default=None, pattern=CODE_PATTERN, max_length=100)
    advice_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=100, description="Stripe's."
    )
    network_decline_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=20, description="Visa 05"
    )
    network_advice_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=20, description="MC 03"
    )
    card_brand: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=30, description="visa, mastercard"
    )
    card_country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="Where the card was issued, ISO-3166: US."
    )
    failed_at: AwareDatetime | None = Field(
        default=None,
        description=f"Defaults to now; at most {MAX_FAILURE_AGE.days} days ago and "
        f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead. The schedule starts when the case opens.",
    )
    policy: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_-]{1,50}$",
        description="Defaults to the one config/segments.toml gives the case.",
    )
    policy_version: int | None = Field(
        default=None, strict=True, ge=1, le=10_000, description="Defaults to the newest."
    )
    plan: str | None = Field(default=None, max_length=100, description="For segment rules.")
    tenure_days: int | None = Field(
        default=None, strict=True, ge=0, le=36_500, description="For segment rules."
    )
    lifetime_value: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_AMOUNT * 1000, description="Minor units."
    )
    region: CountryCode | None = Field(default=None, description="For segment rules.")

    @field_validator("failed_at")
    @classmethod
    def _within_window(cls, value: datetime | None) -> datetime | None:
        return None if value is None else check_failed_at(value)
