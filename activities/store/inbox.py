"""The inbox of received billing events: stored once, claimed by one delivery at a time,
settled, swept; and what they say about invoices and open cases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from activities.store.engine import Database
from activities.store.tables import (
    Case,
    WebhookClaim,
    WebhookEvent,
    WebhookEventStatus,
    utcnow,
)
from workflows.models import CaseStatus, InvoiceSettled
from workflows.values import MAX_CLOCK_SKEW

# A case in one of these may still charge or message: billing events about it must reach it.
OPEN_CASE_STATUSES = [
    CaseStatus.ACTIVE,
    CaseStatus.AWAITING_PAYMENT_METHOD,
    CaseStatus.AWAITING_CUSTOMER_ACTION,
    CaseStatus.PAUSED,
    CaseStatus.DISPUTED,
]


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


class EventInbox(Database):
    """Received billing events: dedupe, claims, settlement, and the sweeper's queries."""

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
