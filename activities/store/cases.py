"""Customers, cases with their audit trail, and charge attempts."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from activities.store.engine import Database
from activities.store.tables import (
    Case,
    CaseEvent,
    ChargeAttempt,
    Customer,
    CustomerProfile,
    utcnow,
)
from workflows.models import CaseRecord, ChargeRequest, ChargeResult, TimelineEntry


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

    def attempt_history(self) -> list[tuple[ChargeAttempt, Case, Customer | None]]:
        """Every charge attempt with its case and the case's customer (None when unknown),
        by case and attempt: what retry timing is trained on."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChargeAttempt, Case, Customer)
                    .join(Case, Case.case_id == ChargeAttempt.case_id)
                    .join(Customer, Customer.customer_id == Case.customer_id, isouter=True)
                    .order_by(ChargeAttempt.case_id, ChargeAttempt.attempt)
                ).all()
            )


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
