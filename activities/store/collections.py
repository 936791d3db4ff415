"""The cases sent to collections, with what an agency needs to pursue each: the case row,
the customer's contact details, every charge attempt and every message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from activities.store.engine import Database
from activities.store.tables import Case, ChargeAttempt, Customer, CustomerProfile, Message
from workflows.models import CaseStatus


@dataclass(frozen=True)
class CollectionsCase:
    """One case handed to collections, as the store knows it."""

    case: Case
    customer: CustomerProfile | None
    attempts: list[ChargeAttempt]
    messages: list[Message]


class CollectionsBook(Database):
    """Reads the cases that ended in collections."""

    def sent_to_collections(self, since: datetime | None = None) -> list[CollectionsCase]:
        """Cases that went to collections (at `since` or later), oldest hand-off first, each
        with its customer, charge attempts (in order) and messages (oldest first)."""
        with self.session() as session:
            query = select(Case, Customer).join(
                Customer, Customer.customer_id == Case.customer_id, isouter=True
            )
            query = query.where(Case.status == CaseStatus.COLLECTIONS)
            if since is not None:
                query = query.where(Case.closed_at >= since)
            rows = session.exec(query.order_by(Case.closed_at, Case.case_id)).all()
            ids = [case.case_id for case, _ in rows]
            attempts = session.exec(
                select(ChargeAttempt)
                .where(ChargeAttempt.case_id.in_(ids))
                .order_by(ChargeAttempt.case_id, ChargeAttempt.attempt)
            ).all()
            messages = session.exec(
                select(Message).where(Message.case_id.in_(ids)).order_by(Message.id)
            ).all()
        return [
            CollectionsCase(
                case=case,
                customer=None if customer is None else customer.profile(),
                attempts=[a for a in attempts if a.case_id == case.case_id],
                messages=[m for m in messages if m.case_id == case.case_id],
            )
            for case, customer in rows
        ]
