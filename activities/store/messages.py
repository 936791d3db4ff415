"""The outbox of customer messages, the suppression list, and what went out to a customer."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from activities.store.engine import Database
from activities.store.tables import (
    Customer,
    CustomerProfile,
    Message,
    MessageStatus,
    Suppression,
    contact_key,
    utcnow,
)

# What went out or may have: the weekly cap and the conversation's budget count these.
_COUNTED = [MessageStatus.SENT, MessageStatus.UNCONFIRMED]
_SENT_ON_CHANNELS_SINCE = select(func.count()).where(
    Message.customer_id == bindparam("customer_id"),
    Message.channel.in_(bindparam("channels", expanding=True)),
    Message.status.in_(_COUNTED),
    Message.step_at >= bindparam("since"),
)
_STEPS_SENT_SINCE = (
    select(func.min(Message.step_at))
    .where(
        Message.customer_id == bindparam("customer_id"),
        Message.status.in_(_COUNTED),
        Message.step_at >= bindparam("since"),
    )
    .group_by(Message.case_id, Message.step)
)


class Outbox(Database):
    """Message rows, written before a provider is called and settled after, and the contacts
    that must not be messaged."""

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

    def mark_message(
        self, message_id: int, status: MessageStatus, provider_id: str | None = None
    ) -> None:
        """Record what the provider did with a message."""
        with self.session() as session:
            row = session.get(Message, message_id)
            row.status = status
            row.provider_id = provider_id
            if status == MessageStatus.SENT:
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
        `since` (by the cases' clock: `step_at`), across all their cases. Every message step
        counts: a statement built once, through a plain connection (an ORM session and a
        statement built per call cost it 4 ms more than PostgreSQL takes to count)."""
        with self.engine.connect() as connection:
            return connection.execute(
                _SENT_ON_CHANNELS_SINCE,
                {"customer_id": customer_id, "channels": channels, "since": since},
            ).scalar_one()

    def message_times_since(self, customer_id: str, since: datetime) -> list[datetime]:
        """When each message (a step, on however many channels) that went out to a customer
        since `since` was sent, by the cases' clock: what a new conversation's budget counts
        (through a plain connection, like the weekly cap)."""
        with self.engine.connect() as connection:
            rows = (
                connection.execute(_STEPS_SENT_SINCE, {"customer_id": customer_id, "since": since})
                .scalars()
                .all()
            )
        return sorted(at for at in rows if at is not None)

    def messages_with_customers(
        self, templates: Collection[str]
    ) -> list[tuple[Message, CustomerProfile | None]]:
        """Every message of `templates`, with its customer's details, by case and row."""
        with self.session() as session:
            rows = session.exec(
                select(Message, Customer)
                .join(Customer, Customer.customer_id == Message.customer_id, isouter=True)
                .where(Message.template.in_(templates))
                .order_by(Message.case_id, Message.id)
            ).all()
        return [(message, None if row is None else row.profile()) for message, row in rows]

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

    def suppressions(self, reasons: Collection[str]) -> list[Suppression]:
        """Every suppression for one of `reasons`."""
        with self.session() as session:
            return list(session.exec(select(Suppression).where(Suppression.reason.in_(reasons))))

    @staticmethod
    def _find_suppression(session: Session, channel: str, key: str) -> Suppression | None:
        return session.exec(
            select(Suppression).where(Suppression.channel == channel, Suppression.contact == key)
        ).first()
