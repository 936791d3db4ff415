"""Customers, cases with their audit trail, and charge attempts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from activities.store.engine import Database
from activities.store.inbox import SETTLEMENT_KINDS
from activities.store.tables import (
    Case,
    CaseEvent,
    ChargeAttempt,
    Customer,
    CustomerProfile,
    WebhookEvent,
    WebhookEventStatus,
    utcnow,
)
from workflows.models import (
    CaseRecord,
    CaseStatus,
    CaseUpdate,
    ChargeRequest,
    ChargeResult,
    TimelineEntry,
)

PAID_EVENT_TYPES = [kind for kind, settled in SETTLEMENT_KINDS.items() if settled == "paid"]
"""Billing events saying an invoice was paid (Stripe's `invoice.paid`, ...)."""


class CaseRecords(Database):
    """Customers' contact details, case rows and audit lines, and charge attempts."""

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
        return None if row is None else row.profile()

    def customers(self, after: str | None = None, limit: int = 200) -> list[CustomerProfile]:
        """Up to `limit` customers by id, from the first after `after`: a page of a scan
        over every customer the store knows."""
        query = select(Customer).order_by(Customer.customer_id).limit(limit)
        if after is not None:
            query = query.where(Customer.customer_id > after)
        with self.session() as session:
            return [row.profile() for row in session.exec(query)]

    # Cases and audit -----------------------------------------------------------------------

    def record_case(self, record: CaseRecord | CaseUpdate) -> None:
        """Upsert the case row (a `CaseUpdate` changes the row its opening wrote) and add
        audit lines not already stored."""
        try:
            self._record_case(record)
        except IntegrityError:
            # A timed-out attempt of the same activity wrote first: now it is an update.
            self._record_case(record)

    def _record_case(self, record: CaseRecord | CaseUpdate) -> None:
        with self.session() as session:
            row = session.get(Case, record.case_id)
            if row is None and isinstance(record, CaseUpdate):
                raise LookupError(f"case {record.case_id} has no row to update")
            row = row or Case(
                case_id=record.case_id, opened_at=record.opened_at, **_case_ids(record)
            )
            for field in ("status", "amount_due", "amount_recovered", "closed_at"):
                setattr(row, field, getattr(record, field))
            # Rows of cases recorded before these were kept gain them on their next record.
            for field in ("failed_at", "late_fee"):
                if getattr(record, field, None) is not None:
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

    def customer_cases(self, customer_id: str, status: str) -> list[Case]:
        """A customer's cases that stand at `status` (e.g. collections), by invoice."""
        with self.session() as session:
            found = select(Case).where(Case.customer_id == customer_id, Case.status == status)
            return list(session.exec(found.order_by(Case.invoice_id)).all())

    def customer_events(self, kinds: Collection[str]) -> list[tuple[str, CaseEvent]]:
        """Every audit line of `kinds`, with the customer of its case, oldest first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(Case.customer_id, CaseEvent)
                    .join(Case, Case.case_id == CaseEvent.case_id)
                    .where(CaseEvent.kind.in_(kinds))
                    .order_by(CaseEvent.at)
                )
            )

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
            scheduled=request.scheduled,
            card_brand=result.card_brand,
            card_country=result.card_country,
            propensity=request.propensity,
            model_version=request.retry_model_version,
            plan_facts=request.plan_facts.model_dump(mode="json") if request.plan_facts else None,
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

    def attempt_recorded(self, idempotency_key: str) -> bool:
        """Whether the attempt with this key has been charged and stored."""
        with self.session() as session:
            found = select(ChargeAttempt.id).where(ChargeAttempt.idempotency_key == idempotency_key)
            return session.exec(found).first() is not None

    def charge_times_on_card(self, payment_method: str, since: datetime) -> list[datetime]:
        """When the card was charged since `since`, by any case: what a network's reattempt
        cap counts."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChargeAttempt.at).where(
                        ChargeAttempt.payment_method == payment_method, ChargeAttempt.at >= since
                    )
                ).all()
            )

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

    def attempt_history(self) -> list[ChargeAttempt]:
        """Every charge attempt, by case and attempt: what retry models are trained on."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChargeAttempt).order_by(ChargeAttempt.case_id, ChargeAttempt.attempt)
                )
            )

    def payment_history(
        self, customer_id: str, except_invoice: str, limit: int = 12
    ) -> list[datetime]:
        """When the customer's other invoices were paid, oldest first, at most the latest
        `limit`: from stored billing events (an invoice paid) and the approved charges of
        their recovered cases. One moment per invoice: when it was last paid (a plan's last
        installment)."""
        their_invoices = select(Case.invoice_id).where(Case.customer_id == customer_id)
        with self.session() as session:
            events = session.exec(
                select(WebhookEvent.invoice_id, WebhookEvent.occurred_at).where(
                    WebhookEvent.type.in_(PAID_EVENT_TYPES),
                    WebhookEvent.status != WebhookEventStatus.REJECTED,
                    or_(
                        WebhookEvent.customer_id == customer_id,
                        WebhookEvent.invoice_id.in_(their_invoices),
                    ),
                )
            ).all()
            charges = session.exec(
                select(Case.invoice_id, ChargeAttempt.at)
                .join(Case, Case.case_id == ChargeAttempt.case_id)
                .where(
                    Case.customer_id == customer_id,
                    Case.status == CaseStatus.RECOVERED,
                    ChargeAttempt.approved,
                )
            ).all()
        paid: dict[str, datetime] = {}
        for invoice, at in [*events, *charges]:
            if invoice and invoice != except_invoice:
                paid[invoice] = max(at, paid.get(invoice, at))
        return sorted(paid.values())[-limit:]


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
