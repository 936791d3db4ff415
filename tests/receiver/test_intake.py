"""Trustworthy intake: every bad value refused at the door, every race with a payment closed.

Each value here was once accepted with 200 and later broke its case (a workflow task failing
forever, a stalled notify, a report that could not add up) or charged a paid invoice. Now the
door names the field and the rule, the event is stored as rejected (never retried), and a
settled invoice is never charged or messaged, whatever order the events arrive in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.store import CustomerProfile
from config.policies import find_policy, load_policies
from config.settings import Settings
from intake.cases import CaseOpener, workflow_id_for
from intake.events import BillingEvent, InvalidEvent
from tests.support.harness import Dunning, status_when
from tests.support.receiver import (
    Receiver,
    accepted,
    case_handle,
    invoice,
    neutral_event,
    neutral_failure,
    new_invoice_id,
    paid,
    refused,
    stripe_event,
)
from workflows.case import CaseState
from workflows.decide import Notify, decide
from workflows.models import CaseStatus, InvoiceSettled
from workflows.policy import Outcome
from workflows.steps import fold_settlement
from workflows.values import MAX_AMOUNT


def failure_data(**data: object) -> dict:
    """A payment_failed event's data with `data` laid over a good one."""
    good = {
        "invoice_id": new_invoice_id(),
        "customer": {"customer_id": "cus_n", "email": "neo@example.com"},
        "amount_due": 2500,
        "currency": "usd",
    }
    return {**good, **data}


# Values refused at the door ------------------------------------------------------------------

BAD_FAILURES = [
    ({"failed_at": "9999-12-31T00:00:00Z"}, "data.failed_at", "in the future"),
    ({"failed_at": "2000-01-01T00:00:00Z"}, "data.failed_at", "too old to open a case"),
    ({"customer": {"customer_id": "c", "time_zone": "Mars/Olympus"}}, "time_zone", "IANA"),
    ({"currency": "XYZ"}, "data.currency", "ISO-4217"),
    ({"currency": "YEN"}, "data.currency", "ISO-4217"),
    ({"amount_due": 2**63 - 1}, "data.amount_due", f"less than or equal to {MAX_AMOUNT}"),
    ({"amount_due": 10**30}, "data.amount_due", "less than or equal"),
    ({"amount_due": "4980"}, "data.amount_due", "valid integer"),
    ({"amount_due": True}, "data.amount_due", "valid integer"),
    ({"amount_due": 49.8}, "data.amount_due", "valid integer"),
    ({"customer": {"customer_id": "c", "payment_method": "pm bad!"}}, "payment_method", "pattern"),
    ({"customer": {"customer_id": "c", "phone": "+1555"}}, "phone", "pattern"),
    ({"customer": {"customer_id": "c", "email": "not-an-email"}}, "email", "email"),
    ({"policy_version": 0}, "data.policy_version", "greater than or equal to 1"),
    ({"policy": "no_such_policy"}, "policy", "unknown policy 'no_such_policy'"),
    ({"policy": "standard", "policy_version": 99}, "policy_version", "has no version 99"),
    ({"region": "XX"}, "data.region", "ISO-3166"),
]


@pytest.mark.parametrize(("data", "field", "rule"), BAD_FAILURES)
async def test_a_bad_value_is_refused_naming_its_field_and_stored_as_rejected(
    offline: Receiver, data: dict, field: str, rule: str
) -> None:
    event = neutral_event("payment_failed", failure_data(**data))
    reason = refused(await offline.billing(event), 400, field)
    assert rule in reason
    row = offline.stored(event, "billing")
    assert row.status == "rejected"
    # A redelivery of the same content is answered as what it is, not retried.
    again = accepted(await offline.billing(event), "duplicate")
    assert again["detail"].startswith("already rejected")


@pytest.mark.parametrize(
    ("created", "words"),
    [
        (int(datetime(9999, 12, 31, tzinfo=UTC).timestamp()), "created"),
        (10**17, "created"),
        (10**30, "created"),
        (int((datetime.now(UTC) + timedelta(hours=1)).timestamp()), "in the future"),
    ],
    ids=["year-9999", "1e17", "1e30", "in-an-hour"],  # stable across pytest-xdist's workers
)
async def test_stripe_event_from_the_future_is_refused(
    offline: Receiver, created: int, words: str
) -> None:
    event = stripe_event("invoice.payment_failed", invoice(new_invoice_id()), created=created)
    refused(await offline.stripe(event), 400, words)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"amount_due": 2**63, "amount_remaining": 2**63}, "less than or equal"),
        ({"amount_due": 10**30, "amount_remaining": 10**30}, "less than or equal"),
        ({"currency": "xyz"}, "ISO-4217"),
    ],
)
async def test_stripe_failure_with_a_bad_value_is_rejected(
    offline: Receiver, fields: dict, words: str
) -> None:
    event = stripe_event("invoice.payment_failed", invoice(new_invoice_id(), **fields))
    refused(await offline.stripe(event), 400, words)
    assert offline.stored(event).status == "rejected"


@pytest.mark.parametrize("amount_paid", [49.8, "4980", True, 2**63])
async def test_a_payment_that_is_no_whole_amount_is_rejected_not_a_cancellation(
    offline: Receiver, amount_paid: object
) -> None:
    event = stripe_event("invoice.paid", paid(new_invoice_id(), amount=amount_paid))
    refused(await offline.stripe(event), 400, "amount_paid")
    assert offline.stored(event).status == "rejected"


def test_the_python_starter_checks_the_same_model() -> None:
    with pytest.raises(ValueError, match="time_zone"):
        BillingEvent(
            invoice_id="in_1",
            customer=CustomerProfile(customer_id="c", time_zone="Mars/Olympus"),
            amount_due=100,
            currency="USD",
        )
    with pytest.raises(ValueError, match="valid integer"):
        BillingEvent.model_validate(
            {
                "invoice_id": "in_1",
                "customer": {"customer_id": "c"},
                "amount_due": "100",
                "currency": "USD",
            }
        )
    event = BillingEvent(
        invoice_id="in_1", customer=CustomerProfile(customer_id="c"), amount_due=100, currency="usd"
    )
    assert event.currency == "USD"
    with pytest.raises(InvalidEvent, match="policy: unknown policy 'nope'"):
        CaseOpener.from_settings(Settings(_env_file=None)).case_input(
            event.model_copy(update={"policy": "nope"})
        )


# A late failure starts its schedule now ------------------------------------------------------


def test_a_late_failure_starts_with_its_first_reminder_not_a_burst() -> None:
    now = datetime.now(UTC)
    event = BillingEvent(
        invoice_id="in_late",
        customer=CustomerProfile(customer_id="c"),
        amount_due=4900,
        currency="USD",
        decline_code="insufficient_funds",
        failed_at=now - timedelta(days=20),
        policy="standard",
    )
    case = CaseOpener.from_settings(Settings(_env_file=None)).case_input(event)
    assert case.failure.failed_at == now - timedelta(days=20)  # the fact is kept for reports
    assert case.schedule_from >= now
    policy = standard_policy()
    state = CaseState.open(case, policy, case.schedule_from)
    first = decide(state, case.schedule_from)
    # Without the re-basing, 20 days of schedule fell due at once: the final notice first.
    assert isinstance(first, Notify)
    assert first.covers == [0]
    assert first.tone != "final"
    assert state.schedule_origin == case.schedule_from


# A payment racing the failure ----------------------------------------------------------------


def test_a_settlement_found_before_a_step_finishes_the_case_like_the_billers_event() -> None:
    state = open_state()
    fold_settlement(state, InvoiceSettled(kind="paid", source="invoice.paid evt_1"), NOW)
    assert (state.outcome, state.amount_due, state.paid_outside_biller) == (
        Outcome.RECOVERED,
        0,
        False,  # the biller already shows it paid: nothing to write back
    )
    voided = open_state()
    fold_settlement(voided, InvoiceSettled(kind="voided", source="invoice_voided evt_2"), NOW)
    assert voided.outcome is Outcome.CANCELLED
    # One found while the case had already finished changes nothing (and never raises).
    fold_settlement(state, InvoiceSettled(kind="paid", source="again"), NOW)
    assert state.outcome is Outcome.RECOVERED


NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)


def standard_policy():
    settings = Settings(_env_file=None)
    return find_policy(load_policies(settings.policies_dir, settings.declines_file), "standard")


def open_state() -> CaseState:
    event = BillingEvent(
        invoice_id="in_s", customer=CustomerProfile(customer_id="c"), amount_due=900, currency="EUR"
    )
    case = (
        CaseOpener.from_settings(Settings(_env_file=None))
        .case_input(event)
        .model_copy(update={"schedule_from": NOW})
    )
    return CaseState.open(case, standard_policy(), NOW)


@pytest.mark.parametrize("kind", ["invoice.paid", "invoice.voided"])
async def test_a_payment_stored_while_the_case_starts_stops_it_before_any_step(
    receiver: Receiver, dunning: Dunning, kind: str
) -> None:
    """The race: the failure passed its door check, then the payment arrived before the case
    existed ("no case for invoice"), then the case started. The case's own check before its
    first step finds the payment: nothing is charged or sent."""
    invoice_id = new_invoice_id()
    settlement = stripe_event(
        kind, paid(invoice_id) if kind == "invoice.paid" else invoice(invoice_id)
    )
    async with dunning.worker():
        accepted(await receiver.stripe(settlement), "ignored")
        event = BillingEvent(
            invoice_id=invoice_id,
            customer=CustomerProfile(customer_id="cus_race", email="race@example.com"),
            amount_due=4980,
            currency="JPY",
            decline_code="insufficient_funds",
            policy="standard",
        )
        settings = receiver_settings_for(dunning)
        await CaseOpener.from_settings(settings).start(dunning.env.client, receiver.store, event)
        result = await case_handle(dunning, invoice_id).result()

    expected = Outcome.RECOVERED if kind == "invoice.paid" else Outcome.CANCELLED
    assert result.outcome is expected
    assert result.charge_attempts == 0
    assert receiver.store.messages(invoice_id) == []
    assert receiver.store.attempts(invoice_id) == []


def receiver_settings_for(dunning: Dunning) -> Settings:
    return Settings(task_queue=dunning.task_queue, _env_file=None)


# Unambiguous ids -----------------------------------------------------------------------------


def test_no_invoice_id_can_take_another_invoices_workflow_id() -> None:
    assert workflow_id_for("in_x1") == "dunning-in_x1"
    assert workflow_id_for("dunning-in_x1") == "dunning-dunning-in_x1"
    ids = ["in_x1", "dunning-in_x1", "dunning-dunning-in_x1", "x", "-x"]
    assert len({workflow_id_for(i) for i in ids}) == len(ids)


async def test_an_invoice_named_like_a_workflow_gets_its_own_case(
    receiver: Receiver, dunning: Dunning
) -> None:
    plain = new_invoice_id()
    lookalike = f"dunning-{plain}"
    now = int(datetime.now(UTC).timestamp())
    async with dunning.worker():
        accepted(await receiver.billing(neutral_failure(plain, now)), "processed")
        accepted(await receiver.billing(neutral_failure(lookalike, now)), "processed")
        lookalike_case = case_handle(dunning, lookalike)
        await status_when(lookalike_case, lambda v: True, "the look-alike's case")
        payment = neutral_event("payment_succeeded", {"invoice_id": lookalike, "amount": 2500})
        accepted(await receiver.billing(payment), "processed")
        assert (await lookalike_case.result()).outcome is Outcome.RECOVERED
        view = await status_when(case_handle(dunning, plain), lambda v: True, "the plain case")
    assert view.invoice_id == plain
    assert view.status is not CaseStatus.RECOVERED
