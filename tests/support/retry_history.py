"""A synthetic retry history with one thing to learn: retries at 17:00 in the customer's own
time zone pass far more often than at any other hour. A model fitted on it must plan its
retries at 17:00; one that does not has learned nothing.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from activities.store import Case, CaseStore, ChargeAttempt
from workflows.policy import DeclineClass
from workflows.smart_retry import SLOT_HOURS, AttemptRecord, PlanFacts

GOOD_HOUR = SLOT_HOURS[1]
ZONE = "America/New_York"
START = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)


def synthetic_history(cases: int, seed: int = 1) -> list[AttemptRecord]:
    """Up to three retries for each of `cases` soft-declined cases over two months, at one of
    the planner's local hours: 70% pass at GOOD_HOUR, 5% at the others."""
    draw = random.Random(seed)
    zone = ZoneInfo(ZONE)
    history = []
    for number in range(cases):
        failed_at = START + timedelta(hours=draw.randrange(24 * 60))
        last = failed_at
        for attempt in range(1, 4):
            day = (last + timedelta(days=1)).astimezone(zone).date()
            hour = draw.choice(SLOT_HOURS)
            at = datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(UTC)
            approved = draw.random() < (0.7 if hour == GOOD_HOUR else 0.05)
            facts = PlanFacts(
                case_id=f"in_syn_{number}",
                decline_code="insufficient_funds",
                decline_class=DeclineClass.RETRY_LATER,
                card_brand="visa",
                card_country="US",
                failed_at=failed_at,
                amount=4900,
                currency="USD",
                time_zones=[ZONE],
                planned_at=at,
                attempt=attempt,
                declines=attempt,
                last_charge_at=None if attempt == 1 else last,
                retries_done=attempt - 1,
            )
            history.append(AttemptRecord(facts=facts, at=at, approved=approved))
            last = at
            if approved:
                break
    return history


def seed_store(store: CaseStore, history: list[AttemptRecord]) -> None:
    """Store `history` as a worker would have: each case's row and its scheduled retries."""
    with store.session() as session:
        for case_id in {record.facts.case_id for record in history}:
            session.add(
                Case(
                    case_id=case_id,
                    invoice_id=case_id,
                    customer_id=f"cus_{case_id}",
                    status="active",
                    amount_due=4900,
                    currency="USD",
                    policy="smart",
                    policy_version=1,
                    opened_at=START,
                    updated_at=START,
                )
            )
        for record in history:
            facts = record.facts
            session.add(
                ChargeAttempt(
                    case_id=facts.case_id,
                    attempt=facts.attempt,
                    idempotency_key=f"dunning:{facts.case_id}:attempt:{facts.attempt}",
                    amount=facts.amount,
                    currency=facts.currency,
                    payment_method="pm_card_visa",
                    approved=record.approved,
                    decline_code=None if record.approved else "insufficient_funds",
                    at=record.at,
                    scheduled=True,
                    card_brand="visa",
                    card_country="US",
                    propensity=record.propensity,
                    plan_facts=facts.model_dump(mode="json"),
                )
            )
        session.commit()


def local_hour(at: datetime) -> int:
    """`at`'s hour in the synthetic customers' zone."""
    return at.astimezone(ZoneInfo(ZONE)).hour
