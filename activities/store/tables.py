"""The store's tables: customers, cases and their audit trail, charge attempts, messages and
suppressions, received billing events, and the simulated gateway's charges.

Every write is idempotent (keyed by case and attempt, case and step and channel, case and
audit sequence), so a retried activity never writes a row twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, EmailStr
from pydantic import Field as Check
from sqlalchemy import JSON, Column, DateTime, Index, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel

from workflows.models import ID_PATTERN
from workflows.values import LOCALE_PATTERN, CountryCode, PhoneNumber, TimeZoneName


def utcnow() -> datetime:
    """The current time, timezone-aware, for rows written outside workflows."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware instant, stored in UTC and read back aware on every database.

    SQLite keeps no offset: it would store a +09:00 time's wall clock and hand it back naive,
    nine hours off. Converting to UTC on the way in makes the stored value the instant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps instants, give a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: written in UTC above
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _timestamp(**kwargs):
    return Field(sa_column=Column(UTCDateTime(), **kwargs))


class CustomerProfile(BaseModel):
    """A customer's contact details: the only place a name, email or phone number lives."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Check(pattern=ID_PATTERN)
    name: str | None = Check(default=None, max_length=200)
    email: EmailStr | None = Check(default=None, max_length=254)
    phone: PhoneNumber | None = None
    locale: str = Check(
        default="en",
        pattern=LOCALE_PATTERN,
        description="BCP-47, e.g. en, ja-JP, zh-Hans.",
    )
    time_zone: TimeZoneName | None = None
    payment_method: str | None = Check(default=None, pattern=ID_PATTERN)
    country: CountryCode | None = Check(
        default=None, description="Where the customer is: their segment for message timing."
    )


class Customer(SQLModel, table=True):
    """Customers and how to reach them."""

    __tablename__ = "customers"
    customer_id: str = Field(primary_key=True)
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str = "en"
    time_zone: str | None = None
    payment_method: str | None = None
    updated_at: datetime = _timestamp(nullable=False)
    country: str | None = None

    def profile(self) -> CustomerProfile:
        """The row's details. Checked on the way in; a row written before a rule was added
        must still be readable."""
        return CustomerProfile.model_construct(**self.model_dump(exclude={"updated_at"}))


class Case(SQLModel, table=True):
    """One dunning case per failed invoice, kept current by the workflow."""

    __tablename__ = "cases"
    case_id: str = Field(primary_key=True)
    invoice_id: str = Field(index=True)
    customer_id: str = Field(index=True)
    subscription_id: str | None = Field(default=None, index=True)
    segment: str | None = None
    variant: str | None = None
    decline_code: str | None = None
    decline_class: str | None = None
    status: str = Field(index=True)
    amount_due: int
    amount_recovered: int = 0
    currency: str
    policy: str
    policy_version: int
    opened_at: datetime = _timestamp(nullable=False)
    closed_at: datetime | None = _timestamp(nullable=True)
    updated_at: datetime = _timestamp(nullable=False)
    failed_at: datetime | None = _timestamp(nullable=True)
    late_fee: int | None = Field(default=None, description="Added for the next invoice.")


class ChargeAttempt(SQLModel, table=True):
    """Each charge attempt and the gateway's answer; a scheduled retry also keeps what the
    retry planner knew before it, which is what a retry model learns from."""

    __tablename__ = "charge_attempts"
    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    attempt: int
    idempotency_key: str = Field(unique=True)
    amount: int
    currency: str
    payment_method: str | None = None
    approved: bool
    decline_code: str | None = None
    reference: str | None = Field(default=None, index=True)
    at: datetime = _timestamp(nullable=False)
    scheduled: bool = Field(
        default=False, description="A retry of the case's schedule, not a new card's charge."
    )
    card_brand: str | None = None
    card_country: str | None = None
    propensity: float | None = Field(
        default=None, description="The chance the retry's time had of being chosen."
    )
    model_version: int | None = Field(default=None, description="The case's retry model.")
    plan_facts: dict | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="A scheduled retry's `PlanFacts` as they were just before the charge.",
    )


class MessageStatus(StrEnum):
    """What became of a message row; stored as these strings."""

    PENDING = "pending"
    """Written before the provider call; left so, a try died mid-call."""
    SENT = "sent"
    """The provider accepted it."""
    FAILED = "failed"
    """The provider rejected it for good."""
    REFUSED = "refused"
    """The provider said "not now": a retry may send it."""
    UNCONFIRMED = "unconfirmed"
    """A try died mid-call: it may have gone out, so it counts as sent."""
    WITHHELD = "withheld"
    """The invoice was settled just before it went out."""


class Message(SQLModel, table=True):
    """The outbox: one row per (case, step, channel), written before the provider is called."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("case_id", "step", "channel"),
        # The weekly cap counts a customer's sent messages per channel since a time.
        Index(
            "ix_messages_customer_id_channel_status_step_at",
            "customer_id",
            "channel",
            "status",
            "step_at",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    customer_id: str
    step: str
    channel: str
    template: str
    recipient: str
    subject: str = ""
    body: str
    status: str = MessageStatus.PENDING
    provider_id: str | None = Field(default=None, index=True)
    delivery: str | None = Field(
        default=None, description="What the provider reported later: delivered, bounced, ..."
    )
    delivery_at: datetime | None = _timestamp(nullable=True)
    step_at: datetime | None = _timestamp(nullable=True)
    created_at: datetime = _timestamp(nullable=False)
    sent_at: datetime | None = _timestamp(nullable=True)
    hour_propensity: float | None = Field(
        default=None, description="The chance a reminder's hour had (learned timing; None: 1)."
    )
    channel_propensity: float | None = Field(
        default=None, description="The chance a reminder's channels had (None: 1)."
    )


class Suppression(SQLModel, table=True):
    """A contact that must not be messaged on a channel: opted out, unsubscribed, bounced,
    invalid. One table fed by Twilio STOP, SendGrid events, provider errors and support."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "contact"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str
    contact: str = Field(description="Email (lower case), E.164 number, or customer id.")
    reason: str
    source: str
    created_at: datetime = _timestamp(nullable=False)


CASE_SCOPE = "case"
"""The `channel` of a suppression whose `contact` is a case id: no message about that case, on
any channel (the preferences page's "only this invoice")."""


def contact_key(contact: str) -> str:
    """How a contact is keyed in the suppression table: email addresses in lower case."""
    return contact.strip().lower() if "@" in contact else contact.strip()


class CaseEvent(SQLModel, table=True):
    """The audit trail: everything that happened to a case, who did it and why."""

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    seq: int
    at: datetime = _timestamp(nullable=False)
    kind: str
    actor: str
    detail: str = ""


class SimulatedCharge(SQLModel, table=True):
    """The simulated gateway's memory of idempotency keys, as Stripe keeps them."""

    __tablename__ = "simulated_charges"
    idempotency_key: str = Field(primary_key=True)
    fingerprint: str
    approved: bool
    decline_code: str | None = None
    reference: str
    created_at: datetime = _timestamp(nullable=False)


class WebhookEventStatus(StrEnum):
    """What became of a received billing event."""

    PENDING = "pending"
    """Stored, not acted on yet (or Temporal was unreachable): a redelivery acts on it."""
    PROCESSED = "processed"
    """A case was opened or told."""
    IGNORED = "ignored"
    """Nothing to do: an unmapped type, no case for it, a finished case, an invoice paid."""
    FAILED = "failed"
    """Acting on the event broke on our side; `detail` says why. A redelivery or the sweeper
    retries it."""
    REJECTED = "rejected"
    """The event's content breaks a rule (a bad value, an unknown policy); `detail` names the
    field and the rule. Final: retrying the same content cannot succeed."""


class WebhookEvent(SQLModel, table=True):
    """A billing event as received (Stripe webhook or POST /events), once per provider and id.

    Stored before the receiver answers 2xx, so a delivery is never lost, and consulted for
    dedupe and for events that arrive out of order (an invoice paid before it failed)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        # Events about an invoice since its failure (settlement), and an invoice's events.
        Index("ix_webhook_events_invoice_id_type_occurred_at", "invoice_id", "type", "occurred_at"),
        # The sweeper's unfinished events whose claim has lapsed, and events by status.
        Index("ix_webhook_events_status_claimed_until", "status", "claimed_until"),
    )
    id: int | None = Field(default=None, primary_key=True)
    provider: str
    event_id: str
    type: str = Field(index=True)
    status: str = Field(default=WebhookEventStatus.PENDING)
    detail: str = ""
    invoice_id: str | None = None
    customer_id: str | None = Field(default=None, index=True)
    subscription_id: str | None = Field(default=None, index=True)
    occurred_at: datetime = _timestamp(nullable=False)
    received_at: datetime = _timestamp(nullable=False)
    processed_at: datetime | None = _timestamp(nullable=True)
    claimed_until: datetime | None = _timestamp(nullable=True)
    deliveries: int = 0
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class WebhookClaim(StrEnum):
    """Whether a delivery of an event should act on it."""

    NEW = "new"
    """First delivery: act."""
    RETRY = "retry"
    """Delivered before but still pending or failed: act again."""
    DONE = "done"
    """Already processed or ignored: a duplicate, do nothing."""
    BUSY = "busy"
    """Another delivery of the same event is acting on it right now."""


class CallTaskStatus(StrEnum):
    """Where a call task stands; stored as these strings."""

    OPEN = "open"
    """A person should call the customer, from `call_after` on."""
    DONE = "done"
    """The calls are over: the customer was reached, or `max_attempts` calls were not."""
    CANCELLED = "cancelled"
    """The case finished first: nobody calls a customer who has paid."""


class CallTask(SQLModel, table=True):
    """A task for a person to phone the customer about a case: one per (case, call step)."""

    __tablename__ = "call_tasks"
    __table_args__ = (UniqueConstraint("case_id", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    customer_id: str = Field(index=True)
    step: str = Field(description="The case's call step, e.g. call-1.")
    created_at: datetime = _timestamp(nullable=False)
    call_after: datetime = _timestamp(nullable=False)
    status: str = Field(default=CallTaskStatus.OPEN, index=True)
    max_attempts: int
    attempts: int = 0
    last_outcome: str | None = None
    actor: str | None = Field(default=None, description="Who made the last call.")
    note: str = Field(default="", description="The agent's words: may name people, never leaves.")


class CallAttempt(SQLModel, table=True):
    """Each call made to a customer: what Regulation F's 7 calls in 7 days counts."""

    __tablename__ = "call_attempts"
    __table_args__ = (Index("ix_call_attempts_customer_id_at", "customer_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(index=True)
    customer_id: str
    at: datetime = _timestamp(nullable=False)
    outcome: str
    actor: str


class OutboundEventStatus(StrEnum):
    """Where an outbound case event stands."""

    PENDING = "pending"
    """Not delivered yet: the delivery loop tries it at `next_attempt_at`."""
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    FAILED = "failed"
    """Every attempt failed; `dunning webhooks redeliver` sends it again."""
    STORED = "stored"
    """Kept only: no OUTBOUND_WEBHOOK_URL was set when it happened."""


class OutboundEvent(SQLModel, table=True):
    """A case event for the product (config/case-event.schema.json), once per event id: the
    outbox its deliveries are made from."""

    __tablename__ = "outbound_events"
    __table_args__ = (
        # The delivery loop's due events.
        Index("ix_outbound_events_status_next_attempt_at", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    case_id: str = Field(index=True)
    type: str
    status: str = Field(default=OutboundEventStatus.PENDING)
    created_at: datetime = _timestamp(nullable=False)
    attempts: int = 0
    next_attempt_at: datetime | None = _timestamp(nullable=True)
    delivered_at: datetime | None = _timestamp(nullable=True)
    last_error: str = ""
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class OutboundDelivery(SQLModel, table=True):
    """One attempt to deliver an outbound event: the delivery log."""

    __tablename__ = "outbound_deliveries"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(index=True)
    at: datetime = _timestamp(nullable=False)
    status_code: int | None = None
    error: str = ""
    duration_ms: int = 0


class SimulatedCard(SQLModel, table=True):
    """A card the simulated gateway holds for a customer, with its expiry: what pre-dunning
    reads where Stripe would give the customer's default payment method."""

    __tablename__ = "simulated_cards"
    payment_method: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    brand: str | None = None
    last4: str | None = None
    exp_month: int
    exp_year: int
    updated_at: datetime = _timestamp(nullable=False)


class SimulatedSubscription(SQLModel, table=True):
    """A subscription the simulated gateway bills, with when its period renews: pre-dunning
    warns before a yearly one renews."""

    __tablename__ = "simulated_subscriptions"
    subscription_id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    interval: str = Field(description="month or year, as Stripe's price intervals.")
    renews_at: datetime = _timestamp(nullable=False)
    status: str = "active"
    updated_at: datetime = _timestamp(nullable=False)
