"""What customers tell us on the recovery page: why they have not paid, in their own words.

The words are the customer's and may name people, illnesses or money troubles: they live
here and only here. The case's workflow hears the reason alone (`FeedbackGiven`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from activities.store.engine import Database
from activities.store.tables import UTCDateTime, utcnow
from workflows.models import FeedbackReason

# What the page lets a customer type; a longer text is refused, never cut short silently.
FEEDBACK_TEXT_LIMIT = 1000
# A submission key is the form's own random id: a token_urlsafe(16) is 22 characters.
SUBMISSION_KEY_LIMIT = 64


class CustomerFeedback(SQLModel, table=True):
    """One answer to "tell us why", once per (case, submission): a form sent twice (a double
    click, a reload after POST) is stored once."""

    __tablename__ = "customer_feedback"
    __table_args__ = (UniqueConstraint("case_id", "submission"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    customer_id: str
    submission: str = Field(description="The form's random key; the same for a resubmission.")
    reason: str = Field(description="A `FeedbackReason` value.")
    text: str = Field(default="", description="The customer's words, at most 1000 characters.")
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class FeedbackBook(Database):
    """The customers' reasons and words, kept out of every workflow history."""

    def record_feedback(
        self,
        case_id: str,
        customer_id: str,
        reason: FeedbackReason,
        text: str,
        submission: str,
    ) -> tuple[CustomerFeedback, bool]:
        """Store an answer once per (case, submission): the stored row and True when this call
        stored it, False when the same submission was stored before (its first answer is kept).
        `ValueError` for text over `FEEDBACK_TEXT_LIMIT` characters or a bad submission key."""
        reason = FeedbackReason(reason)
        text = text.strip()
        if len(text) > FEEDBACK_TEXT_LIMIT:
            raise ValueError(f"the text is longer than {FEEDBACK_TEXT_LIMIT} characters")
        if not submission or len(submission) > SUBMISSION_KEY_LIMIT:
            raise ValueError("a submission key of 1 to 64 characters is needed")
        with self.session() as session:
            earlier = self._find_feedback(session, case_id, submission)
            if earlier is not None:
                return earlier, False
            row = CustomerFeedback(
                case_id=case_id,
                customer_id=customer_id,
                submission=submission,
                reason=reason.value,
                text=text,
                created_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # the same submission, stored concurrently
                return self._find_feedback(session, case_id, submission), False
            return row, True

    def feedback_for(self, case_id: str) -> list[CustomerFeedback]:
        """A case's answers, oldest first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(CustomerFeedback)
                    .where(CustomerFeedback.case_id == case_id)
                    .order_by(CustomerFeedback.id)
                )
            )

    @staticmethod
    def _find_feedback(session: Session, case_id: str, submission: str) -> CustomerFeedback | None:
        return session.exec(
            select(CustomerFeedback).where(
                CustomerFeedback.case_id == case_id, CustomerFeedback.submission == submission
            )
        ).first()
