"""The billing-event receiver: signed Stripe webhooks and provider-neutral events become cases.

Nothing is mocked: the Starlette app runs under Starlette's TestClient, events are signed the
way Stripe signs them, the cases run on the real time-skipping server with a real worker and
the real activities, and the store is SQLite in the test's own `tmp_path`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.payments.stripe import STRIPE_API_VERSION
from activities.store import (
    CaseStore,
    CustomerProfile,
    WebhookClaim,
    WebhookEvent,
    WebhookEventStatus,
)
from config.converter import compact_data_converter
from config.settings import Settings
from intake.client import bundled_binary
from tests.support.fake_stripe import Decline, FakeStripe
from tests.support.harness import Dunning, status_when
from webhooks.billing_events import SCHEMA_FILE, json_schema
from webhooks.cases import ClientProvider
from webhooks.stripe_events import EVENT_TYPES
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus
from workflows.policy import Outcome

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; the test extra pins httpx, which works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


from tests.support.receiver import (
    CUSTOMER,
    EVENTS_SECRET,
    SOFT_DECLINE,
    STRIPE_SECRET,
    Receiver,
    accepted,
    case_exists,
    case_handle,
    client_of,
    finish,
    free_port,
    healthy,
    history_text,
    invoice,
    kinds,
    legacy,
    neutral_event,
    neutral_failure,
    new_invoice_id,
    open_case,
    paid,
    receiver_settings,
    refused,
    served,
    service_env,
    signed,
    stop,
    stripe_event,
    temporal_is_down,
)

# Opening cases -----------------------------------------------------------------------------


async def test_payment_failed_opens_a_case_with_contacts_kept_out_of_the_workflow(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    receiver = stripe_receiver
    dunning.customer(SOFT_DECLINE, customer_id=CUSTOMER)  # a customer the product already knew
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(
        invoice_id,
        last_decline=Decline(
            "insufficient_funds",
            advice_code="try_again_later",
            network_decline_code="51",
            brand="visa",
        ),
    )
    created = int((await dunning.now()).timestamp())
    event = stripe_event("invoice.payment_failed", invoice(invoice_id), created=created)
    async with dunning.worker():
        body = accepted(await receiver.stripe(event), "processed")
        assert body["detail"].startswith(
            f"started dunning-{invoice_id}: ¥4,980 on smart v3"
        )  # the shipped default
        handle = case_handle(dunning, invoice_id)
        view = await status_when(handle, lambda v: v.messages, "the first reminder")
        history = await history_text(handle)

    assert view.status is CaseStatus.ACTIVE
    assert (view.amount_due, view.currency, view.customer_id) == (4980, "JPY", CUSTOMER)
    # Every code of the failure, asked of Stripe, reaches the case; the start signal repeating
    # it is not noted.
    assert view.timeline[0].detail == (
        "smart v3; payment failed: insufficient_funds, advice try_again_later (visa 51)"
    )
    assert "payment_failed" not in kinds(view)
    # Ids, amounts and codes travel in the workflow; contact details stay in the store.
    assert "sub_1" in history and "try_again_later" in history
    for contact in ("ann.lee@example.com", "Ann Lee", "+15555550199", "555-0199"):
        assert contact not in history
    customer = receiver.store.get_customer(CUSTOMER)
    assert (customer.email, customer.name, customer.phone) == (
        "ann.lee@example.com",
        "Ann Lee",
        "+15555550199",
    )
    assert customer.payment_method == SOFT_DECLINE  # what the invoice did not say is kept
    row = receiver.stored(event)
    assert (row.status, row.type, row.invoice_id) == (
        "processed",
        "invoice.payment_failed",
        invoice_id,
    )
    assert (row.customer_id, row.subscription_id) == (CUSTOMER, "sub_1")
    assert row.payload == event
    assert row.occurred_at.timestamp() == created


async def test_payment_action_required_opens_a_case_awaiting_the_customer(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    locales = {"id": CUSTOMER, "object": "customer", "preferred_locales": ["ja-JP", "en"]}
    event = stripe_event(
        "invoice.payment_action_required",
        invoice(
            invoice_id,
            customer=locales,
            subscription=None,
            customer_phone="03-1234-5678",
            customer_address={"country": "JP", "city": "Tokyo"},
        ),
        created=int(time.time()),  # the receiver checks against the wall clock
    )
    async with dunning.worker():
        accepted(await receiver.stripe(event), "processed")
        view = await status_when(
            case_handle(dunning, invoice_id),
            lambda v: v.status is CaseStatus.AWAITING_CUSTOMER_ACTION,
            "awaiting the customer",
        )

    assert view.timeline[0].detail.endswith("payment failed: authentication_required")
    customer = receiver.store.get_customer(CUSTOMER)
    assert customer.locale == "ja-JP"
    assert customer.phone == "+81312345678"  # read in the customer's country
    assert customer.country == "JP"  # the segment learned message timing plans by
    assert receiver.stored(event).subscription_id is None


async def test_older_subscription_field_is_still_understood(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    event = stripe_event(
        "invoice.payment_failed", legacy(invoice(invoice_id, subscription="sub_legacy"))
    )
    async with dunning.worker():
        accepted(await receiver.stripe(event), "processed")
    assert receiver.stored(event).subscription_id == "sub_legacy"


async def test_another_failure_for_a_running_case_becomes_a_signal(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    receiver = stripe_receiver
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(invoice_id, last_decline=Decline("insufficient_funds"))
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        run_id = (await case_handle(dunning, invoice_id).describe()).run_id
        # The customer's own try with a card reported stolen: Stripe holds its decline.
        stripe_api.invoices[invoice_id].last_decline = Decline("stolen_card")
        again = stripe_event(
            "invoice.payment_failed",
            invoice(invoice_id),
            created=int(time.time()),  # the receiver checks against the wall clock
        )
        body = accepted(await receiver.stripe(again), "processed")
        assert (
            body["detail"]
            == f"told the running case dunning-{invoice_id} of another failed payment"
        )
        view = await status_when(
            case_handle(dunning, invoice_id),
            lambda v: kinds(v).count("payment_failed") == 1,
            "the second failure",
        )

        # A hard decline reported by the biller stops the retries: only a new card can pay.
        same_run = (await case_handle(dunning, invoice_id).describe()).run_id == run_id

    assert same_run  # signalled, not restarted
    assert view.status is CaseStatus.AWAITING_PAYMENT_METHOD


async def test_duplicate_delivery_opens_one_case_and_sends_one_signal(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    receiver = stripe_receiver
    invoice_id = new_invoice_id()
    failed = stripe_api.add_invoice(invoice_id, last_decline=Decline("insufficient_funds"))
    created = int((await dunning.now()).timestamp())
    event = stripe_event("invoice.payment_failed", invoice(invoice_id), created=created)
    later = stripe_event("invoice.payment_failed", invoice(invoice_id), created=created + 60)
    async with dunning.worker():
        accepted(await receiver.stripe(event), "processed")
        again = accepted(await receiver.stripe(event), "duplicate")
        assert again["detail"].startswith("already processed: started")
        failed.last_decline = Decline("stolen_card")
        accepted(await receiver.stripe(later), "processed")
        accepted(await receiver.stripe(later), "duplicate")
        handle = case_handle(dunning, invoice_id)
        await status_when(handle, lambda v: "payment_failed" in kinds(v), "the later failure")
        await asyncio.sleep(0.5)  # time for a second signal to land, were there one
        view = await handle.query(DunningWorkflow.status)

    assert kinds(view).count("payment_failed") == 1
    assert kinds(view).count("opened") == 1
    assert len(receiver.store.webhook_events(invoice_id)) == 2


# Stripe as it really sends events ----------------------------------------------------------
# Nothing is expanded in either API shape: the receiver asks Stripe for the decline.


async def test_a_basil_failure_is_classified_by_the_decline_stripe_lists_apart(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(invoice_id, last_decline=Decline("stolen_card", brand="mastercard"))
    event = stripe_event("invoice.payment_failed", invoice(invoice_id), created=int(time.time()))
    assert "payment_intent" not in event["data"]["object"]

    async with dunning.worker():
        accepted(await stripe_receiver.stripe(event), "processed")
        handle = case_handle(dunning, invoice_id)
        await status_when(
            handle, lambda v: v.status is CaseStatus.AWAITING_PAYMENT_METHOD, "a new card"
        )
        await dunning.env.sleep(timedelta(days=10))  # past every retry of the schedule
        view = await status_when(handle, lambda v: v.messages, "the reminders")

    # A hard decline read this way is never retried: only a new card can pay.
    assert view.status is CaseStatus.AWAITING_PAYMENT_METHOD
    assert view.attempts == []
    assert view.timeline[0].detail.endswith("payment failed: stolen_card")
    [asked] = stripe_api.requests
    assert (asked.method, asked.path, asked.form["invoice"]) == (
        "GET",
        "/v1/invoice_payments",
        invoice_id,
    )
    assert asked.form["expand"] == ["data.payment.payment_intent"]
    assert asked.headers["stripe-version"] == STRIPE_API_VERSION


async def test_a_legacy_failure_names_its_payment_intent_by_id_and_is_looked_up_too(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    failed = stripe_api.add_invoice(
        invoice_id, last_decline=Decline("insufficient_funds", network_decline_code="51")
    )
    old = legacy(invoice(invoice_id), payment_intent=failed.payment_intent)
    event = stripe_event("invoice.payment_failed", old, created=int(time.time()))
    event["api_version"] = "2024-06-20"

    async with dunning.worker():
        accepted(await stripe_receiver.stripe(event), "processed")
        view = await status_when(case_handle(dunning, invoice_id), lambda v: True, "the case")

    assert view.status is CaseStatus.ACTIVE  # a soft decline: retried on the schedule
    assert view.timeline[0].detail.endswith("payment failed: insufficient_funds (visa 51)")
    assert [r.path for r in stripe_api.requests] == ["/v1/invoice_payments"]


async def test_a_payment_waiting_for_3d_secure_awaits_the_customer_not_a_retry(
    stripe_receiver: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(
        invoice_id, last_decline=Decline(None, code="invoice_payment_intent_requires_action")
    )
    event = stripe_event("invoice.payment_failed", invoice(invoice_id), created=int(time.time()))

    async with dunning.worker():
        accepted(await stripe_receiver.stripe(event), "processed")
        handle = case_handle(dunning, invoice_id)
        await status_when(
            handle, lambda v: v.status is CaseStatus.AWAITING_CUSTOMER_ACTION, "the customer"
        )
        await dunning.env.sleep(timedelta(days=3))
        view = await status_when(handle, lambda v: v.messages, "the link to pay")

    assert view.status is CaseStatus.AWAITING_CUSTOMER_ACTION
    assert view.attempts == []
    assert view.timeline[0].detail.endswith("payment failed: authentication_required")


async def test_a_failed_lookup_opens_the_case_with_the_decline_unknown(
    stripe_receiver: Receiver,
    stripe_api: FakeStripe,
    dunning: Dunning,
    caplog: pytest.LogCaptureFixture,
) -> None:
    invoice_id = new_invoice_id()
    stripe_api.wrong_base = True  # STRIPE_API_BASE points at something that is not Stripe
    event = stripe_event("invoice.payment_failed", invoice(invoice_id), created=int(time.time()))

    with caplog.at_level(logging.WARNING, logger="dunning.webhooks"):
        async with dunning.worker():
            accepted(await stripe_receiver.stripe(event), "processed")
            view = await status_when(case_handle(dunning, invoice_id), lambda v: True, "the case")

    assert view.status is CaseStatus.ACTIVE
    assert view.timeline[0].detail.endswith("payment failed: unknown")
    [line] = [r.getMessage() for r in caplog.records if "decline of invoice" in r.getMessage()]
    assert line == (
        f"decline of invoice {invoice_id} unknown: "
        "HTTP 404 without Stripe's error body: check STRIPE_API_BASE"
    )


# Out of order ------------------------------------------------------------------------------


async def test_invoice_paid_before_its_failure_opens_no_charging_case(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    failed_at = int((await dunning.now()).timestamp())
    failure = stripe_event("invoice.payment_failed", invoice(invoice_id), created=failed_at)
    payment = stripe_event("invoice.paid", paid(invoice_id), created=failed_at + 40)
    async with dunning.worker():
        first = accepted(await receiver.stripe(payment), "ignored")
        assert first["detail"] == f"no case for invoice {invoice_id}"
        late = accepted(await receiver.stripe(failure), "ignored")
        assert late["detail"] == (
            f"invoice {invoice_id} was settled by invoice.paid {payment['id']} "
            "at or after this failure: no case opened"
        )
        assert not await case_exists(dunning, invoice_id)

    assert receiver.store.attempts(invoice_id) == []
    assert [row.status for row in receiver.store.webhook_events(invoice_id)] == ["ignored"] * 2


async def test_an_earlier_payment_does_not_stop_a_newer_failure(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    failed_at = int((await dunning.now()).timestamp())
    earlier = stripe_event("invoice.paid", paid(invoice_id), created=failed_at - 3600)
    failure = stripe_event("invoice.payment_failed", invoice(invoice_id), created=failed_at)
    async with dunning.worker():
        accepted(await receiver.stripe(earlier), "ignored")
        accepted(await receiver.stripe(failure), "processed")
        assert await case_exists(dunning, invoice_id)


# End to end ----------------------------------------------------------------------------------


async def test_stripe_failure_declined_retry_then_paid_recovers_without_write_back(
    receiver: Receiver, dunning: Dunning
) -> None:
    """Signed invoice.payment_failed → case → a declined retry → signed invoice.paid."""
    dunning.customer(SOFT_DECLINE, customer_id=CUSTOMER)
    invoice_id = new_invoice_id()
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        handle = case_handle(dunning, invoice_id)
        view = await dunning.sleep_to_first_retry(handle)
        assert view.attempts[0].decline_code == "insufficient_funds"
        assert view.attempts[0].payment_method == SOFT_DECLINE

        payment = stripe_event(
            "invoice.paid",
            legacy(paid(invoice_id), charge="ch_paid_by_customer"),
            created=int(time.time()),  # the receiver checks against the wall clock
        )
        body = accepted(await receiver.stripe(payment), "processed")
        assert body["detail"] == f"sent payment_received to dunning-{invoice_id}"
        result = await finish(dunning, handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.reason == f"payment received ref {invoice_id}/ch_paid_by_customer"
    assert (result.amount_due, result.amount_recovered, result.charge_attempts) == (0, 4980, 1)
    assert "write_back" not in kinds(result)  # Stripe already shows it paid: nothing to tell
    received = next(e for e in result.timeline if e.kind == "payment_received")
    assert received.actor == "stripe"
    [attempt] = receiver.store.attempts(invoice_id)
    assert (attempt.approved, attempt.decline_code) == (False, "insufficient_funds")
    assert receiver.store.get_case(invoice_id).status == CaseStatus.RECOVERED
    assert [row.status for row in receiver.store.webhook_events(invoice_id)] == ["processed"] * 2


# Stopping cases ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["invoice.voided", "invoice.marked_uncollectible"])
async def test_voided_or_uncollectible_invoice_cancels_its_case(
    receiver: Receiver, dunning: Dunning, kind: str
) -> None:
    invoice_id = new_invoice_id()
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        now = int((await dunning.now()).timestamp())
        closing = stripe_event(kind, invoice(invoice_id, status="void"), created=now)
        body = accepted(await receiver.stripe(closing), "processed")
        assert body["detail"] == f"sent cancel to dunning-{invoice_id}"
        result = await finish(dunning, case_handle(dunning, invoice_id))

        # The case has ended: a redelivered-late signal is stored and ignored...
        late_signal = accepted(
            await receiver.stripe(stripe_event(kind, invoice(invoice_id))), "ignored"
        )
        assert late_signal["detail"] == f"dunning-{invoice_id} already ended: cancel not sent"
        # ...and a failure from before the invoice was closed opens nothing.
        late = stripe_event("invoice.payment_failed", invoice(invoice_id), created=now - 3600)
        ignored = accepted(await receiver.stripe(late), "ignored")
        assert ignored["detail"].startswith(f"invoice {invoice_id} was settled by {kind}")

    assert result.outcome is Outcome.CANCELLED
    assert result.reason == kind
    assert next(e for e in result.timeline if e.kind == "cancel").actor == "stripe"


async def test_deleted_subscription_cancels_every_open_case_of_it(
    receiver: Receiver, dunning: Dunning
) -> None:
    first, second, other = new_invoice_id(), new_invoice_id(), new_invoice_id()
    async with dunning.worker():
        await open_case(receiver, dunning, first, subscription="sub_9")
        await open_case(receiver, dunning, second, subscription="sub_9")
        await open_case(receiver, dunning, other, subscription="sub_other")
        subscription = {"id": "sub_9", "object": "subscription", "customer": CUSTOMER}
        body = accepted(
            await receiver.stripe(stripe_event("customer.subscription.deleted", subscription)),
            "processed",
        )
        cancelled = ", ".join(sorted([f"dunning-{first}", f"dunning-{second}"]))
        assert body["detail"] == f"sent cancel to {cancelled}"
        results = [await finish(dunning, case_handle(dunning, i)) for i in (first, second)]
        still = await case_handle(dunning, other).query(DunningWorkflow.status)

        # A failure reported for a case that has ended does not reopen it.
        again = stripe_event(
            "invoice.payment_failed",
            invoice(first, subscription="sub_9"),
            created=int(time.time()),  # the receiver checks against the wall clock
        )
        ended = accepted(await receiver.stripe(again), "ignored")
        assert ended["detail"] == f"invoice {first}'s case dunning-{first} has already ended"

    assert [r.outcome for r in results] == [Outcome.CANCELLED] * 2
    assert {r.reason for r in results} == {"customer.subscription.deleted"}
    assert still.status is CaseStatus.ACTIVE


async def test_deleted_subscription_without_cases_is_stored_and_ignored(
    receiver: Receiver,
) -> None:
    event = stripe_event("customer.subscription.deleted", {"id": "sub_none", "customer": "cus_x"})
    body = accepted(await receiver.stripe(event), "ignored")
    assert body["detail"] == "no case for subscription sub_none"
    assert receiver.stored(event).status == "ignored"


# Disputes ----------------------------------------------------------------------------------


def dispute(status: str, charge: str | dict, reason: str = "fraudulent") -> dict:
    return {
        "id": "dp_1",
        "object": "dispute",
        "amount": 4980,
        "charge": charge,
        "currency": "jpy",
        "payment_intent": None,
        "reason": reason,
        "status": status,
    }


async def test_dispute_found_by_charge_pauses_then_won_resumes(
    receiver: Receiver, dunning: Dunning
) -> None:
    dunning.customer(SOFT_DECLINE, customer_id=CUSTOMER)
    invoice_id = new_invoice_id()
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        handle = case_handle(dunning, invoice_id)
        await dunning.sleep_to_first_retry(handle)
        [attempt] = receiver.store.attempts(invoice_id)

        opened = stripe_event(
            "charge.dispute.created", dispute("needs_response", attempt.reference)
        )
        accepted(await receiver.stripe(opened), "processed")
        view = await status_when(handle, lambda v: v.status is CaseStatus.DISPUTED, "disputed")
        assert view.dispute_reason == "fraudulent (Stripe dispute dp_1)"

        closed = stripe_event("charge.dispute.closed", dispute("won", attempt.reference))
        accepted(await receiver.stripe(closed), "processed")
        view = await status_when(handle, lambda v: v.status is CaseStatus.ACTIVE, "resumed")

    assert kinds(view)[-2:] == ["dispute_opened", "dispute_resolved"]
    assert view.timeline[-1].detail == "won"


async def test_lost_dispute_found_by_invoice_cancels_the_case(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    charge = {"id": "ch_expanded", "object": "charge", "invoice": invoice_id}
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        for event in (
            stripe_event("charge.dispute.created", dispute("needs_response", charge)),
            stripe_event("charge.dispute.closed", dispute("lost", charge)),
        ):
            accepted(await receiver.stripe(event), "processed")
            assert receiver.stored(event).invoice_id == invoice_id
        result = await finish(dunning, case_handle(dunning, invoice_id))

    assert result.outcome is Outcome.CANCELLED
    assert result.reason == "dispute lost"


async def test_dispute_on_an_unknown_charge_is_stored_and_ignored(receiver: Receiver) -> None:
    event = stripe_event("charge.dispute.created", dispute("needs_response", "ch_unknown"))
    body = accepted(await receiver.stripe(event), "ignored")
    assert body["detail"] == "no case for charge ch_unknown"
    assert receiver.stored(event).status == "ignored"


# New payment methods -----------------------------------------------------------------------


def payment_method(kind: str) -> tuple[dict, dict | None]:
    """The object (and previous attributes) of an event telling of a new card."""
    if kind == "customer.updated":
        customer = {
            "id": CUSTOMER,
            "object": "customer",
            "email": "ann.new@example.com",
            "name": "Ann Lee",
            "phone": None,
            "preferred_locales": ["en-GB"],
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
        return customer, {"invoice_settings": {"default_payment_method": SOFT_DECLINE}}
    method = {
        "id": "pm_card_visa",
        "object": "payment_method",
        "type": "card",
        "customer": CUSTOMER,
        "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
    }
    return method, None


@pytest.mark.parametrize(
    "kind", ["payment_method.attached", "payment_method.automatically_updated", "customer.updated"]
)
async def test_new_payment_method_is_charged_soon_and_recovers(
    receiver: Receiver, dunning: Dunning, kind: str
) -> None:
    dunning.customer(SOFT_DECLINE, customer_id=CUSTOMER)
    invoice_id = new_invoice_id()
    async with dunning.worker():
        await open_case(receiver, dunning, invoice_id)
        obj, previous = payment_method(kind)
        body = accepted(
            await receiver.stripe(stripe_event(kind, obj, previous=previous)), "processed"
        )
        assert body["detail"] == f"sent payment_method_updated to dunning-{invoice_id}"
        result = await finish(dunning, case_handle(dunning, invoice_id))

    assert result.outcome is Outcome.RECOVERED
    [attempt] = receiver.store.attempts(invoice_id)
    assert (attempt.payment_method, attempt.approved) == ("pm_card_visa", True)
    updated = next(e for e in result.timeline if e.kind == "payment_method_updated")
    assert (updated.actor, updated.detail) == ("stripe", "pm_card_visa")
    if kind == "customer.updated":
        customer = receiver.store.get_customer(CUSTOMER)
        assert (customer.email, customer.locale) == ("ann.new@example.com", "en-GB")
        assert customer.payment_method == "pm_card_visa"


async def test_customer_update_without_a_new_default_method_is_ignored(
    receiver: Receiver,
) -> None:
    customer, _ = payment_method("customer.updated")
    event = stripe_event("customer.updated", customer, previous={"email": "old@example.com"})
    body = accepted(await receiver.stripe(event), "ignored")
    assert body["detail"] == "customer.updated: the default payment method did not change"


async def test_payment_method_of_a_customer_without_cases_is_ignored(receiver: Receiver) -> None:
    method, _ = payment_method("payment_method.attached")
    event = stripe_event("payment_method.attached", {**method, "customer": "cus_nobody"})
    body = accepted(await receiver.stripe(event), "ignored")
    assert body["detail"] == "no case for customer cus_nobody"


# What is stored and ignored ------------------------------------------------------------------


async def test_unknown_event_type_is_stored_as_ignored(offline: Receiver) -> None:
    event = stripe_event("customer.created", {"id": "cus_new", "object": "customer"})
    body = accepted(await offline.stripe(event), "ignored")
    assert body["detail"] == "customer.created is not an event dunning acts on"
    row = offline.stored(event)
    assert (row.status, row.type, row.payload) == ("ignored", "customer.created", event)
    accepted(await offline.stripe(event), "duplicate")


@pytest.mark.parametrize("kind", ["invoice.paid", "invoice.voided", "invoice.marked_uncollectible"])
async def test_events_for_unknown_invoices_are_stored_and_ignored(
    receiver: Receiver, kind: str
) -> None:
    event = stripe_event(kind, paid("in_never_dunned"))
    body = accepted(await receiver.stripe(event), "ignored")
    assert body["detail"] == "no case for invoice in_never_dunned"
    assert receiver.stored(event).invoice_id == "in_never_dunned"


async def test_authentic_event_that_cannot_become_a_case_is_stored_as_rejected(
    offline: Receiver,
) -> None:
    event = stripe_event("invoice.payment_failed", invoice("in_odd", currency=None))
    refused(
        await offline.stripe(event), 400, "data.object.currency: Input should be a valid string"
    )
    row = offline.stored(event)
    assert row.status == "rejected"
    assert "data.object.currency" in row.detail


# Refused requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        (None, "missing Stripe-Signature header"),
        ("wrong-secret", "Stripe-Signature rejected: No signatures found matching"),
        ("stale", "Stripe-Signature rejected: Timestamp outside the tolerance zone"),
        ("t=abc,v1=zz", "Stripe-Signature rejected: Unable to extract timestamp"),
        ("t=123", "Stripe-Signature rejected: No signatures found with expected scheme v1"),
    ],
)
async def test_bad_missing_or_stale_signature_is_refused_and_not_stored(
    offline: Receiver, signature: str | None, words: str
) -> None:
    event = stripe_event("invoice.payment_failed", invoice("in_forged"))
    body = json.dumps(event)
    headers = {
        None: {},
        "wrong-secret": {"Stripe-Signature": signed(body, "whsec_someone_else")},
        "stale": {"Stripe-Signature": signed(body, STRIPE_SECRET, int(time.time()) - 301)},
    }.get(signature, {"Stripe-Signature": signature})
    refused(await offline.stripe(body=body, headers=headers), 400, words)
    assert offline.store.webhook_event("stripe", event["id"]) is None


async def test_signature_covers_the_raw_body(offline: Receiver) -> None:
    event = stripe_event("customer.created", {"id": "cus_1"})
    body = json.dumps(event)
    respaced = json.dumps(event, indent=2)  # the same JSON, other bytes
    response = await offline.stripe(body=respaced, signature=signed(body, STRIPE_SECRET))
    refused(response, 400, "No signatures found matching the expected signature")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "not a Stripe event: the body is not a JSON object"),
        ('{"object": "event", "type": "invoice.paid"}', "not a Stripe event: id"),
    ],
)
async def test_malformed_json_is_refused(offline: Receiver, body: str, words: str) -> None:
    refused(await offline.stripe(body=body), 400, words)


async def test_body_that_is_not_utf8_is_refused(offline: Receiver) -> None:
    response = await offline.post(
        "/webhooks/stripe", b"\xff\xfe{}", {"Stripe-Signature": "t=1,v1=0"}
    )
    refused(response, 400, "malformed JSON")


async def test_unknown_path_and_method_answer_in_json(offline: Receiver) -> None:
    missing = await asyncio.to_thread(offline.http.get, "/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = await asyncio.to_thread(offline.http.get, "/webhooks/stripe")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "Method Not Allowed"})


async def test_receiver_without_a_webhook_secret_says_so(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", _env_file=None)
    store = CaseStore(settings.database_url)
    store.create_schema()
    bare = Receiver(settings, temporal_is_down, store)
    refused(
        await bare.stripe(stripe_event("invoice.paid", paid("in_1"))), 503, "STRIPE_WEBHOOK_SECRET"
    )
    refused(
        await bare.billing(neutral_event("invoice_voided", {"invoice_id": "in_1"})),
        503,
        "BILLING_EVENTS_SECRET",
    )


# Temporal down -------------------------------------------------------------------------------


async def closed_port_client() -> Client:
    """A client for a port nothing listens on: every call fails to connect."""
    return await Client.connect("127.0.0.1:1", lazy=True, data_converter=compact_data_converter)


@pytest.mark.parametrize("down", [temporal_is_down, closed_port_client], ids=["raises", "closed"])
async def test_temporal_down_answers_503_and_a_redelivery_applies_the_event(
    dunning: Dunning, tmp_path: Path, down: ClientProvider
) -> None:
    settings = receiver_settings(tmp_path, dunning.task_queue)
    store = dunning.activities.store
    invoice_id = new_invoice_id()
    event = stripe_event(
        "invoice.payment_failed",
        invoice(invoice_id),
        created=int(time.time()),  # the receiver checks against the wall clock
    )

    outage = Receiver(settings, down, store)
    refused(await outage.stripe(event), 503, "Temporal is unreachable")
    row = outage.stored(event)
    assert row.status == "pending"
    assert "Temporal is unreachable" in row.detail

    recovered = Receiver(settings, client_of(dunning), store)
    async with dunning.worker():
        body = accepted(await recovered.stripe(event), "processed")
        assert body["detail"].startswith(f"started dunning-{invoice_id}")
        await status_when(case_handle(dunning, invoice_id), lambda v: True, "the case")
    row = recovered.stored(event)
    assert (row.status, row.deliveries) == ("processed", 2)


async def test_concurrent_deliveries_of_one_event_act_once(tmp_path: Path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'claims.db'}")
    store.create_schema()

    def delivery() -> WebhookEvent:
        return WebhookEvent(
            provider="stripe",
            event_id="evt_1",
            type="invoice.paid",
            occurred_at=datetime.fromtimestamp(0, UTC),
            payload={"id": "evt_1"},
        )

    first, claim = store.claim_webhook_event(delivery())
    assert claim is WebhookClaim.NEW
    assert store.claim_webhook_event(delivery())[1] is WebhookClaim.BUSY
    store.settle_webhook_event(first.id, WebhookEventStatus.PENDING, "Temporal is unreachable")
    assert store.claim_webhook_event(delivery())[1] is WebhookClaim.RETRY
    store.settle_webhook_event(first.id, WebhookEventStatus.PROCESSED, "done")
    row, claim = store.claim_webhook_event(delivery())
    assert (claim, row.status, row.detail, row.deliveries) == (
        WebhookClaim.DONE,
        "processed",
        "done",
        2,
    )


# POST /events --------------------------------------------------------------------------------


async def test_neutral_events_open_pause_resume_and_settle_cases(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id, other = new_invoice_id(), new_invoice_id()
    now = int((await dunning.now()).timestamp())
    async with dunning.worker():
        opened = neutral_failure(invoice_id, now)
        body = accepted(await receiver.billing(opened), "processed")
        assert body["detail"].startswith(f"started dunning-{invoice_id}: $25.00")
        accepted(await receiver.billing(opened), "duplicate")
        handle = case_handle(dunning, invoice_id)
        await status_when(handle, lambda v: v.messages, "the first reminder")

        steps = [
            ("dispute_opened", {"invoice_id": invoice_id, "reason": "chargeback"}, "disputed"),
            ("dispute_closed", {"invoice_id": invoice_id, "won": True}, "active"),
            ("payment_method_updated", {"customer_id": "cus_n", "payment_method": "pm_x"}, None),
        ]
        for kind, data, status in steps:
            accepted(await receiver.billing(neutral_event(kind, data)), "processed")
            if status is not None:
                await status_when(handle, lambda v, s=status: v.status == s, status)
        await status_when(handle, lambda v: "payment_method_updated" in kinds(v), "new method")
        paid_event = neutral_event(
            "payment_succeeded", {"invoice_id": invoice_id, "amount": 2500, "reference": "cb_77"}
        )
        accepted(await receiver.billing(paid_event), "processed")
        result = await finish(dunning, handle)

        await open_case_by_event(receiver, dunning, other, now)
        accepted(
            await receiver.billing(
                neutral_event("subscription_cancelled", {"subscription_id": "sub_n"})
            ),
            "processed",
        )
        cancelled = await finish(dunning, case_handle(dunning, other))

    assert result.outcome is Outcome.RECOVERED
    assert result.reason == "payment received ref cb_77"
    assert "write_back" not in kinds(result)
    actors = {e.actor for e in result.timeline if e.kind != "opened" and e.actor != "dunning"}
    assert actors == {"chargebee"}
    assert cancelled.outcome is Outcome.CANCELLED
    assert cancelled.reason == "subscription cancelled"
    customer = receiver.store.get_customer("cus_n")
    assert (customer.email, customer.locale) == ("neo@example.com", "ja")
    assert receiver.stored(opened, "billing").status == "processed"


async def open_case_by_event(receiver: Receiver, dunning: Dunning, invoice_id: str, now: int):
    accepted(await receiver.billing(neutral_failure(invoice_id, now)), "processed")
    await status_when(case_handle(dunning, invoice_id), lambda v: True, "the case")


async def test_neutral_voided_invoice_cancels_and_a_late_failure_opens_nothing(
    receiver: Receiver, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    now = int((await dunning.now()).timestamp())
    voided = neutral_event("invoice_voided", {"invoice_id": invoice_id}, created=now + 10)
    async with dunning.worker():
        accepted(await receiver.billing(voided), "ignored")
        late = accepted(await receiver.billing(neutral_failure(invoice_id, now)), "ignored")
        assert f"settled by invoice_voided {voided['id']}" in late["detail"]
        assert not await case_exists(dunning, invoice_id)


@pytest.mark.parametrize(
    ("signature", "words"),
    [
        (None, "no Dunning-Signature header"),
        ("wrong", "Dunning-Signature does not match the body"),
        ("stale", "Dunning-Signature timestamp is more than 300 s from now"),
        ("t=1", "Dunning-Signature has no v1= signature"),
        ("v1=abc", "Dunning-Signature has no valid t=<unix seconds>"),
    ],
)
async def test_neutral_event_with_a_bad_signature_is_refused(
    offline: Receiver, signature: str | None, words: str
) -> None:
    event = neutral_event("invoice_voided", {"invoice_id": "in_1"})
    body = json.dumps(event)
    header = {
        None: None,
        "wrong": signed(body, "not-the-secret"),
        "stale": signed(body, EVENTS_SECRET, int(time.time()) - 301),
    }.get(signature, signature)
    response = await offline.post("/events", body, {"Dunning-Signature": header} if header else {})
    refused(response, 400, words)
    assert offline.store.webhook_event("billing", event["id"]) is None


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (
            neutral_event(
                "payment_failed",
                {
                    "invoice_id": "in_1",
                    "customer": {"customer_id": "c"},
                    "amount_due": 0,
                    "currency": "usd",
                },
            ),
            "data.amount_due: Input should be greater than 0",
        ),
        (neutral_event("payment_refunded", {}), "type: Input tag 'payment_refunded'"),
        (neutral_event("dispute_closed", {"invoice_id": "in_1"}), "data.won: Field required"),
        (
            neutral_event("invoice_voided", {"invoice_id": "in 1"}),
            "data.invoice_id: String should match",
        ),
        (
            {"id": "evt_1", "type": "invoice_voided", "data": {"invoice_id": "in_1"}},
            "created: Field required",
        ),
    ],
)
async def test_neutral_event_schema_errors_name_the_field(
    offline: Receiver, event: dict, words: str
) -> None:
    refused(await offline.billing(event), 400, words)


async def test_neutral_event_that_is_not_json_is_refused(offline: Receiver) -> None:
    refused(await offline.billing(body="{oops"), 400, "malformed JSON")


def test_published_schema_is_the_models_schema() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "config/billing-event.schema.json is stale: regenerate it with "
        "`python -m webhooks.billing_events > config/billing-event.schema.json`"
    )
    assert set(json_schema()["discriminator"]["mapping"]) == {
        "payment_failed",
        "payment_succeeded",
        "invoice_voided",
        "subscription_cancelled",
        "dispute_opened",
        "dispute_closed",
        "payment_method_updated",
    }


def test_every_stripe_event_to_enable_is_read() -> None:
    assert EVENT_TYPES == [
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.paid",
        "invoice_payment.paid",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "customer.subscription.deleted",
        "charge.dispute.created",
        "charge.dispute.closed",
        "payment_method.attached",
        "payment_method.automatically_updated",
        "customer.updated",
        "checkout.session.completed",
    ]


# Health ------------------------------------------------------------------------------------


async def test_healthz_says_what_the_receiver_reaches(
    receiver: Receiver, offline: Receiver
) -> None:
    up = await asyncio.to_thread(receiver.http.get, "/healthz")
    assert up.status_code == 200
    assert up.json() == {
        "ok": True,
        "temporal": "reachable",
        "store": "reachable",
        "stripe_webhooks": True,
        "billing_events": True,
    }
    down = await asyncio.to_thread(offline.http.get, "/healthz")
    assert down.status_code == 503
    assert down.json()["ok"] is False
    assert down.json()["temporal"].startswith("unreachable: Failed client connect")
    assert down.json()["store"] == "reachable"


async def test_healthz_asks_the_cluster_not_the_client_it_connected_earlier(
    tmp_path: Path,
) -> None:
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=compact_data_converter,
        test_server_existing_path=bundled_binary("temporal-test-server"),
    ) as env:

        async def connected() -> Client:
            return env.client

        store = CaseStore(f"sqlite:///{tmp_path / 'health.db'}")
        receiver = Receiver(receiver_settings(tmp_path), connected, store)
        up = await asyncio.to_thread(receiver.http.get, "/healthz")
        assert (up.status_code, up.json()["temporal"]) == (200, "reachable")
    # The server is gone; the client object the receiver holds is not.
    down = await asyncio.to_thread(receiver.http.get, "/healthz")
    assert down.status_code == 503
    assert down.json()["temporal"].startswith("unreachable")


async def test_healthz_reports_a_store_that_is_down(tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    store = CaseStore(f"sqlite:///{tmp_path / 'gone' / 'cases.db'}")
    store.create_schema()
    shutil.rmtree(tmp_path / "gone")  # SQLite cannot open a file in a folder that is not there
    store.engine.dispose()  # no pooled connection to the deleted file
    receiver = Receiver(receiver_settings(tmp_path), temporal_is_down, store)
    down = await asyncio.to_thread(receiver.http.get, "/healthz")
    assert down.status_code == 503
    assert down.json()["store"].startswith("unreachable")


async def test_customer_profiles_merge_without_losing_what_the_event_did_not_say(
    receiver: Receiver, dunning: Dunning
) -> None:
    receiver.store.upsert_customer(
        CustomerProfile(
            customer_id=CUSTOMER,
            name="Ann",
            email="ann@example.com",
            phone="+15555550123",
            time_zone="Asia/Tokyo",
            locale="ja",
            payment_method=SOFT_DECLINE,
        )
    )
    async with dunning.worker():
        # No name, and a phone number that cannot be placed without a country.
        await open_case(
            receiver, dunning, new_invoice_id(), customer_name=None, customer_phone="555-0100"
        )
    customer = receiver.store.get_customer(CUSTOMER)
    assert (customer.name, customer.email) == ("Ann", "ann.lee@example.com")
    assert customer.phone == "+15555550123"
    assert (customer.time_zone, customer.locale, customer.payment_method) == (
        "Asia/Tokyo",
        "ja",
        SOFT_DECLINE,
    )


async def post_signed(base: str, event: dict) -> httpx.Response:
    body = json.dumps(event)
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post(
            "/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signed(body, STRIPE_SECRET)},
        )


async def test_worker_serve_runs_the_receiver_beside_the_worker(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(tmp_path, dev_server.client.service_client.config.target_host, port)
    log = tmp_path / "worker.log"
    process = served(["worker", "--serve"], env, log)
    base = f"http://127.0.0.1:{port}"
    invoice_id = new_invoice_id()
    try:
        health = await healthy(base, process, log)
        assert (health["temporal"], health["store"], health["stripe_webhooks"]) == (
            "reachable",
            "reachable",
            True,
        )
        failure = stripe_event("invoice.payment_failed", invoice(invoice_id))
        accepted(await post_signed(base, failure), "processed")
        payment = stripe_event("invoice.paid", paid(invoice_id))
        accepted(await post_signed(base, payment), "processed")
        handle = dev_server.client.get_workflow_handle_for(
            DunningWorkflow.run, f"dunning-{invoice_id}"
        )
        result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        stop(process)

    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 0
    assert "Billing-event receiver on http://127.0.0.1" in log.read_text()


async def test_serve_alone_keeps_events_while_temporal_is_down(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(tmp_path, f"127.0.0.1:{free_port()}", port)
    log = tmp_path / "serve.log"
    process = served(["serve"], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        health = await healthy(base, process, log)
        assert health["temporal"].startswith("unreachable")
        event = stripe_event("invoice.payment_failed", invoice(new_invoice_id()))
        refused(await post_signed(base, event), 503, "Temporal is unreachable")
    finally:
        stop(process)

    row = CaseStore(env["DATABASE_URL"]).webhook_event("stripe", event["id"])
    assert row.status == "pending"
    assert "Traceback" not in log.read_text()


async def test_a_body_sent_too_slowly_is_cut_off_with_408(tmp_path: Path) -> None:
    port = free_port()
    env = {**service_env(tmp_path, f"127.0.0.1:{free_port()}", port)}
    env["RECEIVER_BODY_TIMEOUT"] = "1"
    log = tmp_path / "serve.log"
    process = served(["serve"], env, log)
    try:
        await healthy(f"http://127.0.0.1:{port}", process, log)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Dunning-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()  # ...and the other 999 bytes never come
        answer = b""
        while b"within" not in answer:  # the status line and the body may come apart
            chunk = await asyncio.wait_for(reader.read(4096), timeout=30)
            if not chunk:
                break
            answer += chunk
        writer.close()
    finally:
        stop(process)

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"the body did not arrive within 1 s" in answer
