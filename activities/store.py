"""The case store: customers, cases, charge attempts, messages and the audit trail.

SQLite by default, any SQLAlchemy URL (PostgreSQL in production) through `DATABASE_URL`.
Contact details live here and only here: workflows hold the customer id.
Every write is idempotent (keyed by case and attempt, case and step and channel, case and
audit sequence), so a retried activity never writes a row twice.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel, ConfigDict, EmailStr
from pydantic import Field as Check
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
    inspect,
    or_,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from workflows.models import (
    ID_PATTERN,
    CaseRecord,
    CaseStatus,
    ChargeRequest,
    ChargeResult,
    InvoiceSettled,
    TimelineEntry,
)
from workflows.values import LOCALE_PATTERN, MAX_CLOCK_SKEW, PhoneNumber, TimeZoneName

# A case in one of these may still charge or message: billing events about it must reach it.
OPEN_CASE_STATUSES = [
    CaseStatus.ACTIVE,
    CaseStatus.AWAITING_PAYMENT_METHOD,
    CaseStatus.AWAITING_CUSTOMER_ACTION,
    CaseStatus.PAUSED,
    CaseStatus.DISPUTED,
]


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


class ChargeAttempt(SQLModel, table=True):
    """Each charge attempt and the gateway's answer."""

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
    status: str = "pending"
    provider_id: str | None = Field(default=None, index=True)
    delivery: str | None = Field(
        default=None, description="What the provider reported later: delivered, bounced, ..."
    )
    delivery_at: datetime | None = _timestamp(nullable=True)
    step_at: datetime | None = _timestamp(nullable=True)
    created_at: datetime = _timestamp(nullable=False)
    sent_at: datetime | None = _timestamp(nullable=True)


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


# Billing events that settle an invoice for good, as each provider names them.
SETTLEMENT_KINDS: dict[str, Literal["paid", "voided", "written_off"]] = {
    "invoice.paid": "paid",
    "payment_succeeded": "paid",
    "invoice.voided": "voided",
    "invoice_voided": "voided",
    "invoice.marked_uncollectible": "written_off",
}

# Statuses no delivery acts on again: a redelivery is answered as a duplicate.
FINAL_STATUSES = (
    WebhookEventStatus.PROCESSED,
    WebhookEventStatus.IGNORED,
    WebhookEventStatus.REJECTED,
)


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


log = logging.getLogger("dunning.store")
# Alembic's INFO lines (plugins, dialect) come on every start; `upgrade` logs what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).with_name("migrations")
# The revision a database made by `create_all`, before migrations existed, is at.
FIRST_REVISION = "0001"
# Any fixed number, the same in every process that migrates a PostgreSQL database.
MIGRATION_LOCK_KEY = 7_464_100_001
# How long a SQLite writer waits for another process's write to finish before "locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
POSTGRES_CONNECT_TIMEOUT_S = 10


def migrations(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (no alembic.ini to ship or find), migrating
    `connection`, or the store `DATABASE_URL` names when none is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class CaseStore:
    """Typed access to the store; safe to share between activity threads."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options: dict = {}
        if database_url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False}
        elif database_url.startswith("postgresql"):
            # A dropped connection is replaced, not handed to an activity; an unreachable
            # server fails the start in seconds instead of hanging.
            options["pool_pre_ping"] = True
            options["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        # hide_parameters: a database error must not carry an email or a phone into a log.
        self.engine: Engine = create_engine(database_url, hide_parameters=True, **options)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def create_schema(self) -> None:
        """Create the newest schema straight from the models and stamp it so: the tests'
        throwaway stores. Every real start uses `upgrade`; tests/test_migrations.py proves
        both give the same schema."""
        with self.engine.begin() as connection:
            SQLModel.metadata.create_all(connection)
            command.stamp(migrations(connection), "head")

    def upgrade(self, revision: str = "head") -> str:
        """Migrate the schema to `revision` (the newest by default); the revision it is at.

        Every start calls it. Processes starting together take turns under a lock (a
        PostgreSQL advisory lock, a file lock beside a SQLite file), so a later one finds
        nothing left to do. A database made by `create_all` before migrations existed is
        recognised and stamped at the first revision, then upgraded."""
        with self._migration_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; migrations run inside it.
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            config = migrations(connection)
            version = MigrationContext.configure(connection)
            before = version.get_current_revision()
            if before is None and inspect(connection).has_table("cases"):
                command.stamp(config, FIRST_REVISION)  # made by create_all
                before = FIRST_REVISION
            command.upgrade(config, revision)
            after = version.get_current_revision()
            if after != before:
                log.info("store schema upgraded from %s to %s", before or "empty", after)
            return after

    def _migration_lock(self) -> AbstractContextManager[None]:
        """Across processes on SQLite (PostgreSQL's lock is taken in the transaction)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return nullcontext()
        return _file_lock(Path(f"{database}.lock"))

    def session(self) -> Session:
        """A new session; use it as a context manager."""
        return Session(self.engine, expire_on_commit=False)

    # Customers -----------------------------------------------------------------------------

    def upsert_customer(self, profile: CustomerProfile) -> None:
        """Create or update a customer's contact details. Safe when two processes create the
        same customer at once: the one that loses the insert updates the winner's row."""
        for _ in range(2):
            with self.session() as session:
                row = session.get(Customer, profile.customer_id) or Customer(
                    customer_id=profile.customer_id
                )
                for field, value in profile.model_dump(exclude={"customer_id"}).items():
                    setattr(row, field, value)
                row.updated_at = utcnow()
                session.add(row)
                try:
                    session.commit()
                    return
                except IntegrityError:
                    session.rollback()  # inserted by another process since we looked
        raise RuntimeError(f"customer {profile.customer_id} could not be stored")

    def get_customer(self, customer_id: str) -> CustomerProfile | None:
        """A customer's contact details, or None for an unknown customer."""
        with self.session() as session:
            row = session.get(Customer, customer_id)
        if row is None:
            return None
        # Checked on the way in; a row written before a rule was added must still be readable.
        return CustomerProfile.model_construct(**row.model_dump(exclude={"updated_at"}))

    # Cases and audit -----------------------------------------------------------------------

    def record_case(self, record: CaseRecord) -> None:
        """Upsert the case row and add audit lines not already stored."""
        try:
            self._record_case(record)
        except IntegrityError:
            # A timed-out attempt of the same activity wrote first: now it is an update.
            self._record_case(record)

    def _record_case(self, record: CaseRecord) -> None:
        with self.session() as session:
            row = session.get(Case, record.case_id) or Case(
                case_id=record.case_id, opened_at=record.opened_at, **_case_ids(record)
            )
            for field in ("status", "amount_due", "amount_recovered", "closed_at"):
                setattr(row, field, getattr(record, field))
            row.updated_at = utcnow()
            session.add(row)
            known = set(
                session.exec(select(CaseEvent.seq).where(CaseEvent.case_id == record.case_id))
            )
            for entry in record.entries:
                if entry.seq not in known:
                    session.add(CaseEvent(case_id=record.case_id, **entry.model_dump()))
            session.commit()

    def get_case(self, case_id: str) -> Case | None:
        """The case row, or None."""
        with self.session() as session:
            return session.get(Case, case_id)

    def case_events(self, case_id: str) -> list[TimelineEntry]:
        """The stored audit trail of a case, oldest first."""
        with self.session() as session:
            rows = session.exec(
                select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
            ).all()
        return [
            TimelineEntry(seq=r.seq, at=r.at, kind=r.kind, actor=r.actor, detail=r.detail)
            for r in rows
        ]

    # Charges -------------------------------------------------------------------------------

    def record_attempt(self, request: ChargeRequest, result: ChargeResult) -> None:
        """Store an attempt's answer once, however often the activity runs."""
        row = ChargeAttempt(
            case_id=request.case_id,
            attempt=request.attempt,
            idempotency_key=request.idempotency_key,
            amount=request.amount,
            currency=request.currency,
            payment_method=request.payment_method,
            approved=result.approved,
            decline_code=result.decline_code,
            reference=result.reference,
            at=utcnow(),
        )
        with self.session() as session:
            if session.exec(
                select(ChargeAttempt).where(
                    ChargeAttempt.idempotency_key == request.idempotency_key
                )
            ).first():
                return
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # a concurrent retry stored it first

    def attempts(self, case_id: str) -> list[ChargeAttempt]:
        """A case's charge attempts, in order."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChargeAttempt)
                    .where(ChargeAttempt.case_id == case_id)
                    .order_by(ChargeAttempt.attempt)
                )
            )

    # Messages ------------------------------------------------------------------------------

    def claim_message(self, message: Message) -> Message:
        """The row for (case, step, channel): the stored one if any, else `message`, stored."""
        with self.session() as session:
            existing = self._find_message(session, message.case_id, message.step, message.channel)
            if existing is not None:
                return existing
            message.created_at = utcnow()
            session.add(message)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return self._find_message(session, message.case_id, message.step, message.channel)
            session.refresh(message)
            return message

    def mark_message(self, message_id: int, status: str, provider_id: str | None = None) -> None:
        """Record what the provider did with a message."""
        with self.session() as session:
            row = session.get(Message, message_id)
            row.status = status
            row.provider_id = provider_id
            if status == "sent":
                row.sent_at = utcnow()
            session.add(row)
            session.commit()

    def messages(self, case_id: str) -> list[Message]:
        """A case's messages, oldest first."""
        with self.session() as session:
            return list(
                session.exec(select(Message).where(Message.case_id == case_id).order_by(Message.id))
            )

    def message(self, case_id: str, step: str, channel: str) -> Message | None:
        """The message row of (case, step, channel), if one was written."""
        with self.session() as session:
            return self._find_message(session, case_id, step, channel)

    def record_delivery(self, provider_id: str, delivery: str) -> bool:
        """Note what the provider later said of a message (delivered, bounced, ...); False
        when no message has that provider id."""
        with self.session() as session:
            row = session.exec(select(Message).where(Message.provider_id == provider_id)).first()
            if row is None:
                return False
            row.delivery = delivery
            row.delivery_at = utcnow()
            session.add(row)
            session.commit()
            return True

    def messages_to_customer_since(
        self, customer_id: str, since: datetime, channels: list[str]
    ) -> int:
        """Messages on `channels` that went out (or may have: unconfirmed) to a customer since
        `since` (by the cases' clock: `step_at`), across all their cases."""
        with self.session() as session:
            return session.exec(
                select(func.count()).where(
                    Message.customer_id == customer_id,
                    Message.channel.in_(channels),
                    Message.status.in_(["sent", "unconfirmed"]),
                    Message.step_at >= since,
                )
            ).one()

    @staticmethod
    def _find_message(session: Session, case_id: str, step: str, channel: str) -> Message | None:
        return session.exec(
            select(Message).where(
                Message.case_id == case_id, Message.step == step, Message.channel == channel
            )
        ).first()

    # Suppressions --------------------------------------------------------------------------

    def suppress(self, channel: str, contact: str, reason: str, source: str) -> None:
        """Stop messages to `contact` on `channel` (idempotent; the latest reason is kept)."""
        key = contact_key(contact)
        with self.session() as session:
            row = self._find_suppression(session, channel, key) or Suppression(
                channel=channel, contact=key, reason=reason, source=source
            )
            row.reason, row.source, row.created_at = reason, source, utcnow()
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # suppressed concurrently: the contact is suppressed

    def lift_suppression(self, channel: str, contact: str) -> bool:
        """Allow messages again (START, opt-in); False when nothing was suppressed."""
        with self.session() as session:
            row = self._find_suppression(session, channel, contact_key(contact))
            if row is None:
                return False
            session.delete(row)
            session.commit()
            return True

    def suppression(self, channel: str, contact: str) -> Suppression | None:
        """Why `contact` may not be messaged on `channel`, or None."""
        with self.session() as session:
            return self._find_suppression(session, channel, contact_key(contact))

    @staticmethod
    def _find_suppression(session: Session, channel: str, key: str) -> Suppression | None:
        return session.exec(
            select(Suppression).where(Suppression.channel == channel, Suppression.contact == key)
        ).first()

    # Simulated gateway ---------------------------------------------------------------------

    def simulated_charge(self, key: str) -> SimulatedCharge | None:
        """What the simulated gateway answered for an idempotency key, if it has seen it."""
        with self.session() as session:
            return session.get(SimulatedCharge, key)

    def save_simulated_charge(self, charge: SimulatedCharge) -> SimulatedCharge:
        """Remember an answer; when a concurrent call stored one first, that one wins."""
        with self.session() as session:
            session.add(charge)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return session.get(SimulatedCharge, charge.idempotency_key)
            return charge

    # Billing events -----------------------------------------------------------------------

    def claim_webhook_event(
        self, event: WebhookEvent, lease: timedelta = timedelta(minutes=1)
    ) -> tuple[WebhookEvent, WebhookClaim]:
        """Store a received event (once per provider and event id) and claim it for this
        delivery for `lease`; the claim says whether to act. Safe under concurrent deliveries:
        of two at once, one acts and the other is told BUSY."""
        now = utcnow()
        with self.session() as session:
            row = self._find_webhook_event(session, event.provider, event.event_id)
            if row is None:
                event.status = WebhookEventStatus.PENDING
                event.received_at = now
                event.claimed_until = now + lease
                event.deliveries = 1
                session.add(event)
                try:
                    session.commit()
                except IntegrityError:
                    session.rollback()  # a concurrent delivery stored it first
                else:
                    session.refresh(event)
                    return event, WebhookClaim.NEW
                row = self._find_webhook_event(session, event.provider, event.event_id)
            if row.status in FINAL_STATUSES:
                return row, WebhookClaim.DONE
            claimed = session.exec(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id == row.id,
                    or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until < now),
                )
                .values(claimed_until=now + lease, deliveries=WebhookEvent.deliveries + 1)
            )
            session.commit()
            if claimed.rowcount != 1:
                return row, WebhookClaim.BUSY
            session.refresh(row)
            return row, WebhookClaim.RETRY

    def settle_webhook_event(self, row_id: int, status: WebhookEventStatus, detail: str) -> None:
        """Record what became of an event and release its claim; PENDING leaves it for a
        redelivery."""
        with self.session() as session:
            row = session.get(WebhookEvent, row_id)
            row.status = status
            row.detail = detail[:1000]
            row.claimed_until = None
            if status is not WebhookEventStatus.PENDING:
                row.processed_at = utcnow()
            session.add(row)
            session.commit()

    def webhook_event(self, provider: str, event_id: str) -> WebhookEvent | None:
        """A stored event, or None."""
        with self.session() as session:
            return self._find_webhook_event(session, provider, event_id)

    def webhook_events(self, invoice_id: str | None = None) -> list[WebhookEvent]:
        """Stored events, oldest first; only those about `invoice_id` when given."""
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if invoice_id is not None:
            query = query.where(WebhookEvent.invoice_id == invoice_id)
        with self.session() as session:
            return list(session.exec(query))

    def invoice_events_since(
        self, invoice_id: str, types: list[str], since: datetime
    ) -> list[WebhookEvent]:
        """Events of `types` about an invoice that happened at or after `since`, in any status:
        an invoice paid before its failure was delivered must still stop the case."""
        with self.session() as session:
            return list(
                session.exec(
                    select(WebhookEvent)
                    .where(
                        WebhookEvent.invoice_id == invoice_id,
                        WebhookEvent.type.in_(types),
                        WebhookEvent.occurred_at >= since,
                    )
                    .order_by(WebhookEvent.occurred_at)
                )
            )

    def invoice_settlement(
        self, invoice_id: str, failed_at: datetime, amount_due: int
    ) -> InvoiceSettled | None:
        """Whether a stored event settled the invoice at or after its failure (less the clock
        skew between the biller's systems), in any status: a payment that reached us before
        its case existed still stops the case.

        A biller's payment of part of the invoice (`payment_succeeded` below `amount_due`) does
        not; nor does one already delivered to the case, which counted it then."""
        rows = self.invoice_events_since(
            invoice_id, list(SETTLEMENT_KINDS), failed_at - MAX_CLOCK_SKEW
        )
        for row in rows:
            if row.type == "payment_succeeded":
                amount = (row.payload.get("data") or {}).get("amount")
                told = row.status == WebhookEventStatus.PROCESSED
                if told or not isinstance(amount, int) or amount < amount_due:
                    continue
            source = f"{row.type} {row.event_id}"
            return InvoiceSettled(kind=SETTLEMENT_KINDS[row.type], source=source)
        return None

    def open_case_ids(
        self,
        *,
        customer_id: str | None = None,
        subscription_id: str | None = None,
        opened_by: tuple[str, ...] = (),
    ) -> list[str]:
        """Cases that may still be running for a customer or a subscription (give one).

        Open case rows, plus cases opened by stored events of the types `opened_by` that have
        no row yet (a case writes its row when it first waits); a case found here may have
        finished since, which its workflow will say."""
        if (customer_id is None) == (subscription_id is None):
            raise ValueError("give customer_id or subscription_id")
        case_column = Case.customer_id if customer_id else Case.subscription_id
        event_column = WebhookEvent.customer_id if customer_id else WebhookEvent.subscription_id
        wanted = customer_id or subscription_id
        with self.session() as session:
            known = {
                row.case_id: row.status
                for row in session.exec(select(Case).where(case_column == wanted))
            }
            opened = session.exec(
                select(WebhookEvent.invoice_id).where(
                    event_column == wanted,
                    WebhookEvent.type.in_(list(opened_by)),
                    WebhookEvent.status == WebhookEventStatus.PROCESSED,
                )
            )
            unrecorded = {invoice for invoice in opened if invoice and invoice not in known}
        open_rows = {case for case, status in known.items() if status in OPEN_CASE_STATUSES}
        return sorted(open_rows | unrecorded)

    def case_ids_for_charges(self, references: list[str]) -> list[str]:
        """Cases with a charge attempt whose gateway reference (charge or payment intent id)
        is one of `references`."""
        if not references:
            return []
        with self.session() as session:
            rows = session.exec(
                select(ChargeAttempt.case_id).where(ChargeAttempt.reference.in_(references))
            )
            return sorted(set(rows))

    def webhook_events_to_retry(
        self,
        providers: list[str],
        received_before: datetime,
        max_deliveries: int | None = None,
    ) -> list[WebhookEvent]:
        """Events of `providers` no delivery finished (pending or failed), received before
        `received_before`, whose claim has lapsed and, with `max_deliveries`, that were
        delivered fewer times; oldest first."""
        now = utcnow()
        query = (
            select(WebhookEvent)
            .where(
                WebhookEvent.provider.in_(providers),
                WebhookEvent.status.in_([WebhookEventStatus.PENDING, WebhookEventStatus.FAILED]),
                WebhookEvent.received_at < received_before,
                or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until < now),
            )
            .order_by(WebhookEvent.id)
        )
        if max_deliveries is not None:
            query = query.where(WebhookEvent.deliveries < max_deliveries)
        with self.session() as session:
            return list(session.exec(query))

    def find_webhook_events(
        self,
        *,
        statuses: list[str] | None = None,
        invoice_id: str | None = None,
        event_ids: list[str] | None = None,
        providers: list[str] | None = None,
        limit: int | None = None,
    ) -> list[WebhookEvent]:
        """Stored events, newest first, narrowed by status, invoice, event id and provider."""
        query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
        if providers is not None:
            query = query.where(WebhookEvent.provider.in_(providers))
        if statuses is not None:
            query = query.where(WebhookEvent.status.in_(statuses))
        if invoice_id is not None:
            query = query.where(WebhookEvent.invoice_id == invoice_id)
        if event_ids is not None:
            query = query.where(WebhookEvent.event_id.in_(event_ids))
        with self.session() as session:
            return list(session.exec(query))

    @staticmethod
    def _find_webhook_event(session: Session, provider: str, event_id: str) -> WebhookEvent | None:
        return session.exec(
            select(WebhookEvent).where(
                WebhookEvent.provider == provider, WebhookEvent.event_id == event_id
            )
        ).first()


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers go on while one process writes; the busy timeout makes a second
    writer wait its turn instead of failing with "database is locked"."""
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` held for the block, by this process alone."""
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
        yield


def _case_ids(record: CaseRecord) -> dict:
    return record.model_dump(
        include={
            "invoice_id",
            "customer_id",
            "subscription_id",
            "segment",
            "variant",
            "decline_code",
            "decline_class",
            "currency",
            "policy",
            "policy_version",
        }
    )
