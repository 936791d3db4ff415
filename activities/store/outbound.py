"""The outbox of case events for the product (signed outbound webhooks) and their delivery log.

An event is stored once per event id, claimed for one delivery at a time (a lease, so a
delivery that died is tried again once it lapses), and every attempt leaves a log row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from activities.store.engine import Database
from activities.store.tables import (
    OutboundDelivery,
    OutboundEvent,
    OutboundEventStatus,
)


class EventOutbox(Database):
    """Outbound case events: stored once, claimed per delivery, each attempt logged."""

    def store_outbound_event(self, event: OutboundEvent) -> tuple[OutboundEvent, bool]:
        """Store an event once per event id: the stored row, and True when this call stored
        it (False: stored before, by an earlier try of the same activity)."""
        with self.session() as session:
            earlier = self._find_outbound_event(session, event.event_id)
            if earlier is not None:
                return earlier, False
            session.add(event)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # the same event, stored concurrently
                return self._find_outbound_event(session, event.event_id), False
            session.refresh(event)
            return event, True

    def outbound_event(self, event_id: str) -> OutboundEvent | None:
        """A stored event by its id, or None."""
        with self.session() as session:
            return self._find_outbound_event(session, event_id)

    def find_outbound_events(
        self,
        statuses: list[str] | None = None,
        case_id: str | None = None,
        limit: int = 50,
    ) -> list[OutboundEvent]:
        """Stored events, newest first, optionally of some statuses or one case."""
        query = select(OutboundEvent).order_by(OutboundEvent.id.desc()).limit(limit)
        if statuses:
            query = query.where(OutboundEvent.status.in_([str(s) for s in statuses]))
        if case_id is not None:
            query = query.where(OutboundEvent.case_id == case_id)
        with self.session() as session:
            return list(session.exec(query))

    def outbound_events_due(self, now: datetime, limit: int = 100) -> list[OutboundEvent]:
        """Pending events whose next attempt has come, oldest first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(OutboundEvent)
                    .where(
                        OutboundEvent.status == OutboundEventStatus.PENDING,
                        OutboundEvent.next_attempt_at <= now,
                    )
                    .order_by(OutboundEvent.next_attempt_at, OutboundEvent.id)
                    .limit(limit)
                )
            )

    def claim_outbound_event(self, row: OutboundEvent, until: datetime) -> bool:
        """Take a due event for one delivery until `until`: True when this caller got it, False
        when another delivery loop took (or settled) it since `row` was read."""
        with self.session() as session:
            claimed = session.exec(
                update(OutboundEvent)
                .where(
                    OutboundEvent.id == row.id,
                    OutboundEvent.status == OutboundEventStatus.PENDING,
                    OutboundEvent.next_attempt_at == row.next_attempt_at,
                )
                .values(next_attempt_at=until)
            )
            session.commit()
            return claimed.rowcount == 1

    def log_delivery(
        self,
        event_id: str,
        attempt: OutboundDelivery,
        status: OutboundEventStatus,
        next_attempt_at: datetime | None,
    ) -> OutboundEvent:
        """Log one attempt and settle the event as it left it: delivered, pending until
        `next_attempt_at`, or failed. The event's row afterwards."""
        with self.session() as session:
            row = self._find_outbound_event(session, event_id)
            session.add(attempt)
            row.attempts += 1
            row.status = status
            row.next_attempt_at = next_attempt_at
            row.last_error = attempt.error
            if status is OutboundEventStatus.DELIVERED:
                row.delivered_at = attempt.at
            session.add(row)
            session.commit()
            session.refresh(row)
            return row

    def outbound_deliveries(self, event_id: str) -> list[OutboundDelivery]:
        """An event's delivery log, oldest first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(OutboundDelivery)
                    .where(OutboundDelivery.event_id == event_id)
                    .order_by(OutboundDelivery.id)
                )
            )

    @staticmethod
    def _find_outbound_event(session: Session, event_id: str) -> OutboundEvent | None:
        return session.exec(select(OutboundEvent).where(OutboundEvent.event_id == event_id)).first()
