"""The store's view of the cases sent to collections, on SQLite and PostgreSQL: only those
cases, oldest hand-off first, `--since` by the hand-off day, each with its customer, its charge
attempts in order and its messages oldest first, never another case's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.store import CaseStore, CustomerProfile, Message, MessageStatus
from workflows.models import CaseRecord, CaseStatus, ChargeRequest, ChargeResult

FAILED = datetime(2026, 11, 1, 9, tzinfo=UTC)


def case(case_id: str, status: CaseStatus, closed_days: int | None, customer: str) -> CaseRecord:
    return CaseRecord(
        case_id=case_id,
        invoice_id=case_id,
        customer_id=customer,
        amount_due=4000,
        amount_recovered=980,
        currency="EUR",
        status=status,
        policy="standard",
        policy_version=1,
        opened_at=FAILED + timedelta(minutes=1),
        closed_at=None if closed_days is None else FAILED + timedelta(days=closed_days),
        failed_at=FAILED,
        late_fee=250 if case_id == "in_a" else None,
    )


def attempt(case_id: str, number: int, approved: bool) -> tuple[ChargeRequest, ChargeResult]:
    return (
        ChargeRequest(
            case_id=case_id,
            invoice_id=case_id,
            customer_id="cus_1",
            attempt=number,
            amount=4000,
            currency="EUR",
        ),
        ChargeResult(approved=approved, decline_code=None if approved else "insufficient_funds"),
    )


def message(case_id: str, step: str) -> Message:
    return Message(
        case_id=case_id,
        customer_id="cus_1",
        step=step,
        channel="email",
        template=step,
        recipient="ann@example.com",
        body="...",
        step_at=FAILED,
    )


def test_cases_sent_to_collections_with_their_customer_attempts_and_messages(
    store: CaseStore,
) -> None:
    store.upsert_customer(
        CustomerProfile(
            customer_id="cus_1",
            name="Ann",
            email="ann@example.com",
            phone="+33612345678",
            locale="fr-FR",
            time_zone="Europe/Paris",
            country="FR",
        )
    )
    store.record_case(case("in_b", CaseStatus.COLLECTIONS, 12, "cus_1"))
    store.record_case(case("in_a", CaseStatus.COLLECTIONS, 10, "cus_1"))
    store.record_case(case("in_gone", CaseStatus.COLLECTIONS, 11, "cus_unknown"))
    store.record_case(case("in_paid", CaseStatus.RECOVERED, 3, "cus_1"))
    store.record_case(case("in_open", CaseStatus.ACTIVE, None, "cus_1"))
    for case_id in ("in_a", "in_b", "in_paid"):
        for number in (2, 1):
            store.record_attempt(*attempt(case_id, number, approved=case_id == "in_paid"))
    for step in ("reminder_gentle", "final_notice"):
        row = store.claim_message(message("in_a", step))
        store.mark_message(row.id, MessageStatus.SENT, "sg_1")
    store.claim_message(message("in_b", "reminder_gentle"))
    store.claim_message(message("in_paid", "reminder_gentle"))

    found = store.sent_to_collections()

    assert [c.case.case_id for c in found] == ["in_a", "in_gone", "in_b"]
    a, gone, b = found
    assert a.case.failed_at == FAILED and a.case.late_fee == 250
    assert a.case.closed_at == FAILED + timedelta(days=10)
    assert a.customer.email == "ann@example.com" and a.customer.country == "FR"
    assert gone.customer is None and gone.attempts == [] and gone.messages == []
    assert [(x.case_id, x.attempt, x.approved) for x in a.attempts] == [
        ("in_a", 1, False),
        ("in_a", 2, False),
    ]
    assert [(m.template, m.status) for m in a.messages] == [
        ("reminder_gentle", MessageStatus.SENT),
        ("final_notice", MessageStatus.SENT),
    ]
    assert [m.case_id for m in b.messages] == ["in_b"]

    since = store.sent_to_collections(FAILED + timedelta(days=11))
    assert [c.case.case_id for c in since] == ["in_gone", "in_b"]
    assert store.sent_to_collections(FAILED + timedelta(days=13)) == []


def test_a_case_row_keeps_its_failure_and_fee_when_later_records_lack_them(
    store: CaseStore,
) -> None:
    store.record_case(case("in_a", CaseStatus.ACTIVE, None, "cus_1"))
    older = case("in_a", CaseStatus.COLLECTIONS, 10, "cus_1").model_copy(
        update={"failed_at": None, "late_fee": None}
    )
    store.record_case(older)

    row = store.get_case("in_a")
    assert (row.status, row.failed_at, row.late_fee) == ("collections", FAILED, 250)
