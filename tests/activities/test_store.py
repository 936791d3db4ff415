"""The SQLModel case store, on SQLite and on PostgreSQL (`postgres_url`), from an empty schema."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect
from sqlmodel import select

from activities.store import (
    CaseStore,
    Customer,
    CustomerProfile,
    Message,
    SimulatedCharge,
    WebhookEvent,
    WebhookEventStatus,
)
from workflows.models import CaseRecord, CaseStatus, ChargeRequest, ChargeResult, TimelineEntry
from workflows.policy import DeclineClass
from workflows.smart_retry import PlanFacts

TABLES = {
    "customers",
    "cases",
    "charge_attempts",
    "messages",
    "case_events",
    "simulated_charges",
}
OPENED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def _case(status: CaseStatus = CaseStatus.ACTIVE, **changes) -> CaseRecord:
    fields = {
        "case_id": "case-1",
        "invoice_id": "in_1",
        "customer_id": "cus_1",
        "status": status,
        "amount_due": 4900,
        "amount_recovered": 0,
        "currency": "USD",
        "policy": "standard",
        "policy_version": 1,
        "opened_at": OPENED,
        "entries": [],
    }
    return CaseRecord(**(fields | changes))


def _entry(seq: int, kind: str = "note", detail: str = "") -> TimelineEntry:
    return TimelineEntry(seq=seq, at=OPENED + timedelta(hours=seq), kind=kind, detail=detail)


def _charge(attempt: int = 1, amount: int = 4900) -> ChargeRequest:
    return ChargeRequest(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        attempt=attempt,
        amount=amount,
        currency="USD",
        payment_method="pm_card_visa",
    )


def _message(channel: str = "email", body: str = "Hello") -> Message:
    return Message(
        case_id="case-1",
        customer_id="cus_1",
        step="reminder-1",
        channel=channel,
        template="reminder_gentle",
        recipient="cus_1",
        subject="Subject" if channel == "email" else "",
        body=body,
    )


# Schema ------------------------------------------------------------------------------------


def test_schema_is_created_from_empty_and_creating_again_is_harmless(empty_store):
    assert TABLES.isdisjoint(inspect(empty_store.engine).get_table_names())

    empty_store.create_schema()
    empty_store.create_schema()  # every worker start calls it

    inspector = inspect(empty_store.engine)
    assert set(inspector.get_table_names()) >= TABLES
    unique = {
        table: [sorted(c["column_names"]) for c in inspector.get_unique_constraints(table)]
        for table in ("messages", "case_events")
    }
    assert ["case_id", "channel", "step"] in unique["messages"]
    assert ["case_id", "seq"] in unique["case_events"]


# Customers ---------------------------------------------------------------------------------


def test_customer_round_trips_contacts_locale_time_zone_and_payment_method(store):
    profile = CustomerProfile(
        customer_id="cus_1",
        name="Aiko Tanaka",
        email="aiko@example.com",
        phone="+819012345678",
        locale="ja",
        time_zone="Asia/Tokyo",
        payment_method="pm_card_visa",
    )
    store.upsert_customer(profile)

    assert store.get_customer("cus_1") == profile


def test_customer_upsert_replaces_the_stored_details(store):
    store.upsert_customer(CustomerProfile(customer_id="cus_1", email="old@example.com"))
    updated = CustomerProfile(
        customer_id="cus_1",
        email="new@example.com",
        phone="+15551234567",
        locale="en_GB",
        time_zone="Europe/London",
        payment_method="pm_card_mastercard",
    )

    store.upsert_customer(updated)

    assert store.get_customer("cus_1") == updated
    with store.session() as session:
        assert len(session.exec(select(Customer)).all()) == 1


def test_processes_creating_the_same_customer_at_once_both_succeed(store):
    """Two receivers open cases for one new customer at the same moment: one inserts, the
    other finds the row and updates it; neither fails the event."""
    url = store.engine.url.render_as_string(hide_password=False)
    others = [CaseStore(url), CaseStore(url)]
    try:
        for n in range(15):
            customer = f"cus_race_{n}"
            barrier = threading.Barrier(len(others))

            def upsert(each: CaseStore, name: str, customer=customer, barrier=barrier) -> None:
                barrier.wait()
                each.upsert_customer(CustomerProfile(customer_id=customer, name=name))

            with ThreadPoolExecutor(len(others)) as pool:
                futures = [pool.submit(upsert, each, f"n{i}") for i, each in enumerate(others)]
                for future in futures:
                    future.result()  # no IntegrityError
            assert store.get_customer(customer).name in {"n0", "n1"}
    finally:
        for each in others:
            each.engine.dispose()


def test_unknown_customer_is_none(store):
    assert store.get_customer("cus_nobody") is None


# Cases and audit ---------------------------------------------------------------------------


def test_record_case_upserts_the_row_and_stores_each_audit_line_once(store):
    store.record_case(_case(entries=[_entry(1, "opened"), _entry(2, "charge")]))
    closed = OPENED + timedelta(days=3)
    later = _case(
        CaseStatus.RECOVERED,
        amount_recovered=4900,
        closed_at=closed,
        entries=[_entry(2, "charge"), _entry(3, "recovered")],
    )

    store.record_case(later)
    store.record_case(later)  # a retried activity

    row = store.get_case("case-1")
    assert (row.status, row.amount_recovered, row.closed_at) == ("recovered", 4900, closed)
    assert (row.invoice_id, row.customer_id, row.currency) == ("in_1", "cus_1", "USD")
    assert (row.policy, row.policy_version, row.opened_at) == ("standard", 1, OPENED)
    assert store.case_events("case-1") == [
        _entry(1, "opened"),
        _entry(2, "charge"),
        _entry(3, "recovered"),
    ]


def test_audit_lines_of_one_case_do_not_leak_into_another(store):
    store.record_case(_case(entries=[_entry(1, "opened")]))
    store.record_case(_case(case_id="case-2", invoice_id="in_2", entries=[_entry(1, "opened")]))

    assert [e.seq for e in store.case_events("case-1")] == [1]
    assert [e.seq for e in store.case_events("case-2")] == [1]
    assert store.get_case("case-404") is None


# Charge attempts ---------------------------------------------------------------------------


def test_record_attempt_is_idempotent_per_idempotency_key(store):
    request = _charge(attempt=1)
    store.record_attempt(request, ChargeResult(approved=False, decline_code="insufficient_funds"))
    store.record_attempt(request, ChargeResult(approved=True, reference="ch_late"))
    store.record_attempt(_charge(attempt=2), ChargeResult(approved=True, reference="ch_2"))

    attempts = store.attempts("case-1")
    assert [(a.attempt, a.idempotency_key) for a in attempts] == [
        (1, "dunning:case-1:attempt:1"),
        (2, "dunning:case-1:attempt:2"),
    ]
    first = attempts[0]
    assert (first.approved, first.decline_code, first.reference) == (
        False,
        "insufficient_funds",
        None,
    )
    assert (first.amount, first.currency, first.payment_method) == (4900, "USD", "pm_card_visa")


def test_saving_a_simulated_charge_twice_keeps_the_first_answer(store):
    def charge(fingerprint: str, approved: bool) -> SimulatedCharge:
        return SimulatedCharge(
            idempotency_key="dunning:case-1:attempt:1",
            fingerprint=fingerprint,
            approved=approved,
            reference=f"ch_{fingerprint}",
            created_at=OPENED,
        )

    first = store.save_simulated_charge(charge("aaa", approved=True))
    second = store.save_simulated_charge(charge("bbb", approved=False))

    assert (first.fingerprint, second.fingerprint) == ("aaa", "aaa")
    assert second.approved is True
    assert store.simulated_charge("dunning:case-1:attempt:1").reference == "ch_aaa"
    assert store.simulated_charge("dunning:case-1:attempt:2") is None


# Outbox ------------------------------------------------------------------------------------


def test_claim_message_returns_the_same_row_for_the_same_case_step_and_channel(store):
    first = store.claim_message(_message("email", body="first render"))
    again = store.claim_message(_message("email", body="second render"))
    sms = store.claim_message(_message("sms"))

    assert first.id is not None
    assert again.id == first.id
    assert again.body == "first render"
    assert again.status == "pending"
    assert sms.id != first.id
    assert [m.channel for m in store.messages("case-1")] == ["email", "sms"]


def test_mark_message_records_status_and_provider_id(store):
    email = store.claim_message(_message("email"))
    sms = store.claim_message(_message("sms"))

    store.mark_message(email.id, "sent", "sg_123")
    store.mark_message(sms.id, "failed")

    stored = {m.channel: m for m in store.messages("case-1")}
    assert (stored["email"].status, stored["email"].provider_id) == ("sent", "sg_123")
    assert stored["email"].sent_at is not None
    assert (stored["sms"].status, stored["sms"].provider_id, stored["sms"].sent_at) == (
        "failed",
        None,
        None,
    )
    assert store.claim_message(_message("email")).status == "sent"


# Time --------------------------------------------------------------------------------------


def test_datetimes_come_back_timezone_aware_and_at_the_same_instant(store):
    opened = datetime(2026, 3, 2, 18, 30, tzinfo=TOKYO)  # 09:30 UTC
    store.record_case(
        _case(
            opened_at=opened,
            closed_at=opened + timedelta(days=1),
            entries=[TimelineEntry(seq=1, at=opened, kind="opened")],
        )
    )
    store.record_attempt(_charge(), ChargeResult(approved=True))
    message = store.claim_message(_message())
    store.mark_message(message.id, "sent", "outbox:1")

    row = store.get_case("case-1")
    (event,) = store.case_events("case-1")
    (attempt,) = store.attempts("case-1")
    (stored_message,) = store.messages("case-1")
    stamps = [
        row.opened_at,
        row.closed_at,
        row.updated_at,
        event.at,
        attempt.at,
        stored_message.created_at,
        stored_message.sent_at,
    ]
    assert all(stamp.tzinfo is not None for stamp in stamps), stamps
    assert row.opened_at == opened
    assert row.closed_at == opened + timedelta(days=1)
    assert event.at == opened
    now = datetime.now(UTC)
    written_now = [row.updated_at, attempt.at, stored_message.created_at, stored_message.sent_at]
    assert all(now - timedelta(minutes=5) < stamp <= now for stamp in written_now)


# Validation --------------------------------------------------------------------------------


def test_customer_profile_rejects_a_bad_email():
    with pytest.raises(ValidationError) as caught:
        CustomerProfile(customer_id="cus_1", email="aiko.example.com")

    (error,) = caught.value.errors()
    assert error["loc"] == ("email",)
    assert "not a valid email address" in error["msg"]


@pytest.mark.parametrize("phone", ["0612345678", "+33 6 12 34 56 78", "+0612345678", "+1555"])
def test_customer_profile_rejects_a_phone_number_that_is_not_e164(phone):
    with pytest.raises(ValidationError) as caught:
        CustomerProfile(customer_id="cus_1", phone=phone)

    (error,) = caught.value.errors()
    assert error["loc"] == ("phone",)
    assert error["type"] == "string_pattern_mismatch"


def test_customer_profile_accepts_e164_and_a_real_email():
    profile = CustomerProfile(customer_id="cus_1", email="aiko@example.com", phone="+33612345678")

    assert (profile.email, profile.phone) == ("aiko@example.com", "+33612345678")


def test_what_settles_an_invoice_for_the_check_before_each_step(store: CaseStore) -> None:
    failed_at = datetime(2026, 11, 30, 9, tzinfo=UTC)

    def stored(event_id: str, kind: str, invoice_id: str, at: datetime, **data) -> WebhookEvent:
        row, _ = store.claim_webhook_event(
            WebhookEvent(
                provider="billing",
                event_id=event_id,
                type=kind,
                occurred_at=at,
                invoice_id=invoice_id,
                payload={"data": {"invoice_id": invoice_id, **data}},
            )
        )
        return row

    # A payment an hour before the failure was for an earlier try, not this one.
    stored("e1", "invoice.paid", "in_a", failed_at - timedelta(hours=1))
    assert store.invoice_settlement("in_a", failed_at, 900) is None
    # One stamped a little before it (another clock at the biller) settles it.
    stored("e2", "invoice.paid", "in_a", failed_at - timedelta(minutes=2))
    assert store.invoice_settlement("in_a", failed_at, 900).source == "invoice.paid e2"
    # Part of the amount is not a settlement; the whole amount is.
    stored("e3", "payment_succeeded", "in_b", failed_at, amount=400)
    assert store.invoice_settlement("in_b", failed_at, 900) is None
    whole = stored("e4", "payment_succeeded", "in_b", failed_at, amount=900)
    assert store.invoice_settlement("in_b", failed_at, 900).kind == "paid"
    # One the case was already told of was counted by the case.
    store.settle_webhook_event(whole.id, WebhookEventStatus.PROCESSED, "sent")
    assert store.invoice_settlement("in_b", failed_at, 500) is None
    stored("e5", "invoice_voided", "in_c", failed_at + timedelta(days=1))
    assert store.invoice_settlement("in_c", failed_at, 900).kind == "voided"


# Retry history -----------------------------------------------------------------------------


def test_a_scheduled_retry_keeps_what_a_retry_model_learns_from(store: CaseStore) -> None:
    facts = PlanFacts(
        case_id="case-1",
        decline_code="insufficient_funds",
        decline_class=DeclineClass.RETRY_LATER,
        card_brand="visa",
        failed_at=OPENED,
        amount=4900,
        currency="USD",
        time_zones=["Asia/Tokyo"],
        planned_at=OPENED + timedelta(days=1),
        attempt=2,
        declines=2,
        last_charge_at=OPENED + timedelta(hours=20),
        retries_done=1,
        paid_history=[OPENED - timedelta(days=30)],
        model_version=3,
    )
    retry = _charge(attempt=2).model_copy(
        update={
            "scheduled": True,
            "plan_facts": facts,
            "propensity": 0.25,
            "retry_model_version": 3,
        }
    )
    store.record_attempt(_charge(attempt=1), ChargeResult(approved=False, card_brand="visa"))
    store.record_attempt(
        retry, ChargeResult(approved=True, card_brand="jcb", card_country="JP", reference="ch_2")
    )

    first, second = store.attempt_history()
    assert (first.scheduled, first.plan_facts, first.propensity, first.model_version) == (
        False,
        None,
        None,
        None,
    )
    assert (second.scheduled, second.card_brand, second.card_country) == (True, "jcb", "JP")
    assert (second.propensity, second.model_version) == (0.25, 3)
    assert PlanFacts.model_validate(second.plan_facts) == facts


def test_a_customers_payment_history_is_when_their_other_invoices_were_paid(
    store: CaseStore,
) -> None:
    def paid_event(event_id: str, kind: str, invoice_id: str, at: datetime, **ids) -> None:
        store.claim_webhook_event(
            WebhookEvent(
                provider="stripe",
                event_id=event_id,
                type=kind,
                occurred_at=at,
                invoice_id=invoice_id,
                payload={},
                **ids,
            )
        )

    day = timedelta(days=1)
    # Stripe names the customer; the neutral schema's payment names only the invoice, which a
    # case of theirs knows.
    paid_event("e1", "invoice.paid", "in_jan", OPENED - 60 * day, customer_id="cus_1")
    store.record_case(_case(CaseStatus.RECOVERED, case_id="in_feb", invoice_id="in_feb"))
    paid_event("e2", "payment_succeeded", "in_feb", OPENED - 30 * day)
    # Their recovered case's approved charge; an approved charge of a case still open is not.
    store.record_case(_case(CaseStatus.RECOVERED, case_id="in_mar", invoice_id="in_mar"))
    store.record_attempt(
        _charge().model_copy(update={"case_id": "in_mar", "invoice_id": "in_mar"}),
        ChargeResult(approved=True),
    )
    store.record_case(_case(case_id="in_open", invoice_id="in_open"))
    store.record_attempt(
        _charge().model_copy(update={"case_id": "in_open", "invoice_id": "in_open"}),
        ChargeResult(approved=True),
    )
    # Not theirs, not a payment, and the invoice being dunned.
    paid_event("e3", "invoice.paid", "in_other", OPENED, customer_id="cus_2")
    paid_event("e4", "invoice.voided", "in_void", OPENED, customer_id="cus_1")
    paid_event("e5", "invoice.paid", "in_now", OPENED, customer_id="cus_1")

    history = store.payment_history("cus_1", except_invoice="in_now")

    [march] = [a.at for a in store.attempts("in_mar")]
    assert history == [OPENED - 60 * day, OPENED - 30 * day, march]
    assert store.payment_history("cus_1", except_invoice="in_now", limit=2) == history[1:]
