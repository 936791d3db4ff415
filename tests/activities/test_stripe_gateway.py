"""Stripe's processor and biller driven through the real `stripe` SDK against a local fake
Stripe API.

Nothing is mocked: `StripeProcessor` and `StripeBiller` build a real `stripe.StripeClient`
pointed at `tests/support/fake_stripe.py`, which answers over HTTP the way Stripe does (paths,
Bearer auth, idempotency keys, 402/404/429/500 bodies). The tests read what went over the wire
and how many charges the fake's card network saw.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from activities.dunning import DunningActivities
from activities.payments import (
    BILLERS,
    PROCESSORS,
    PROVIDERS,
    GatewayConfigError,
    IdempotencyConflict,
    biller_for,
    processor_for,
)
from activities.payments.simulated import SimulatedBiller, SimulatedProcessor
from activities.payments.stripe import STRIPE_API_VERSION, StripeBiller, StripeProcessor
from config.policies import load_declines
from config.settings import CONFIG_DIR, Settings
from tests.support.fake_stripe import Decline, FakeStripe
from workflows.models import ChargeRequest, ChargeResult, InvoiceSettled, WriteBackRequest
from workflows.policy import DeclineClass, DeclineCodes, DeclineTable, WriteBackAction

API_KEY = "sk_test_x"
# The card holder's details in every fake error body and invoice.
HOLDER = ("@", "jenny", "5555550123")


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    """A fake Stripe API of the test's own, accepting `API_KEY`."""
    with FakeStripe(API_KEY) as server:
        yield server


@pytest.fixture
def processor(fake: FakeStripe) -> StripeProcessor:
    """The real processor, SDK and all, pointed at the fake."""
    return StripeProcessor(API_KEY, fake.url)


@pytest.fixture
def biller(fake: FakeStripe) -> StripeBiller:
    """The real biller, SDK and all, pointed at the fake."""
    return StripeBiller(API_KEY, fake.url)


@pytest.fixture(scope="module")
def declines() -> DeclineTable:
    """The decline table the project ships."""
    return load_declines(CONFIG_DIR / "declines.toml")


def charge_request(
    invoice_id: str, attempt: int = 1, payment_method: str | None = None, amount: int = 4980
) -> ChargeRequest:
    return ChargeRequest(
        case_id=f"case-{invoice_id}",
        invoice_id=invoice_id,
        customer_id="cus_fake",
        attempt=attempt,
        amount=amount,
        currency="USD",
        payment_method=payment_method,
    )


def write_back_request(
    action: WriteBackAction, invoice_id: str = "in_done", subscription_id: str | None = "sub_1"
) -> WriteBackRequest:
    return WriteBackRequest(
        case_id="case-9",
        invoice_id=invoice_id,
        subscription_id=subscription_id,
        action=action,
    )


# Charges ----------------------------------------------------------------------------------


def test_paying_an_invoice_sends_the_attempts_key_off_session(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_pays")

    result = processor.charge(charge_request("in_pays", attempt=2))

    assert result.approved
    assert result.reference == invoice.payment_intent
    assert result.reference.startswith("pi_")
    # It reads what the invoice still owes, pays all of it, then reads the card it charged.
    read, sent, card = fake.requests
    assert (card.method, card.path) == ("GET", f"/v1/payment_intents/{result.reference}")
    assert card.form == {"expand": ["latest_charge"]}
    assert (result.card_brand, result.card_country) == ("visa", "US")
    assert (read.method, read.path) == ("GET", "/v1/invoices/in_pays")
    assert (sent.method, sent.path) == ("POST", "/v1/invoices/in_pays/pay")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["stripe-version"] == STRIPE_API_VERSION
    assert sent.headers["idempotency-key"] == "dunning:case-in_pays:attempt:2"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.form["off_session"] == "true"
    assert sent.form["expand"] == ["payments"]
    assert "payment_method" not in sent.form  # the invoice's default method pays
    assert [(c.invoice, c.approved) for c in fake.charges] == [("in_pays", True)]
    assert invoice.status == "paid"


def test_a_new_payment_method_is_the_one_charged(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_new_card")

    result = processor.charge(charge_request("in_new_card", payment_method="pm_card_new"))

    assert result.approved
    assert fake.requests_to("/v1/invoices/in_new_card/pay")[0].form["payment_method"] == (
        "pm_card_new"
    )
    assert [c.payment_method for c in fake.charges] == ["pm_card_new"]


DECLINES = {
    "soft: insufficient funds, Visa 51": (
        Decline(
            "insufficient_funds",
            advice_code="try_again_later",
            network_decline_code="51",
            brand="visa",
            message="Your card has insufficient funds.",
        ),
        "insufficient_funds",
        DeclineClass.RETRY_LATER,
    ),
    "hard: lost card": (
        Decline("lost_card", advice_code="do_not_try_again", brand="visa"),
        "lost_card",
        DeclineClass.NEVER_RETRY,
    ),
    "soft code, but Visa category 1 (04)": (
        Decline("do_not_honor", network_decline_code="04", brand="visa"),
        "do_not_honor",
        DeclineClass.NEVER_RETRY,
    ),
    "soft code, but Mastercard advice 03": (
        Decline("generic_decline", network_advice_code="03", brand="mastercard"),
        "generic_decline",
        DeclineClass.NEVER_RETRY,
    ),
    "no decline_code: the error code stands in": (
        Decline(None, code="expired_card", message="Your card has expired."),
        "expired_card",
        DeclineClass.NEVER_RETRY,
    ),
    "3-D Secure needed on an invoice: Stripe's code, no blind retry": (
        Decline(
            None,
            code="invoice_payment_intent_requires_action",
            message="This payment requires additional user action before it can be "
            "completed successfully.",
        ),
        "invoice_payment_intent_requires_action",
        DeclineClass.NEEDS_CUSTOMER_ACTION,
    ),
    "issuer wants 3-D Secure off-session": (
        Decline("authentication_required"),
        "authentication_required",
        DeclineClass.NEEDS_CUSTOMER_ACTION,
    ),
    "declined with no reason: Stripe's card_declined, not a code of ours": (
        Decline(None),
        "card_declined",
        DeclineClass.RETRY_LATER,
    ),
}


@pytest.mark.parametrize(
    ("decline", "decline_code", "expected"), DECLINES.values(), ids=DECLINES.keys()
)
def test_a_card_error_becomes_a_decline_the_table_classifies(
    fake: FakeStripe,
    processor: StripeProcessor,
    declines: DeclineTable,
    decline: Decline,
    decline_code: str,
    expected: DeclineClass,
) -> None:
    fake.add_invoice("in_declines", decline=decline)

    result = processor.charge(charge_request("in_declines"))

    assert result == ChargeResult(
        approved=False,
        decline_code=decline_code,
        advice_code=decline.advice_code,
        network_decline_code=decline.network_decline_code,
        network_advice_code=decline.network_advice_code,
        card_brand=decline.brand,
        card_country=decline.country,
        payment_method="pm_fake_default",
        reference=result.reference,
        message=decline.message,
    )
    assert result.reference.startswith("ch_")
    assert declines.classify(result) is expected
    assert [c.approved for c in fake.attempts] == [False]
    # The error body holds the card holder's email and phone: none of it comes out.
    dumped = result.model_dump_json().lower()
    assert not [detail for detail in HOLDER if detail in dumped]


def test_the_cards_brand_and_country_come_from_what_stripe_charged(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    # What a retry model learns from: a paid invoice's latest charge, an installment's, and
    # the card of a decline, each as Stripe describes the card.
    fake.cards["pm_card_jcb"] = ("jcb", "JP")
    fake.add_invoice("in_jcb")
    fake.add_invoice("in_jcb_plan", customer="cus_jcb")
    fake.add_invoice(
        "in_jcb_declined", decline=Decline("insufficient_funds", brand="jcb", country="JP")
    )

    paid = processor.charge(charge_request("in_jcb", payment_method="pm_card_jcb"))
    installment = processor.charge(
        charge_request("in_jcb_plan", payment_method="pm_card_jcb", amount=1660)
    )
    declined = processor.charge(charge_request("in_jcb_declined"))

    assert [(r.approved, r.card_brand, r.card_country) for r in (paid, installment, declined)] == [
        (True, "jcb", "JP"),
        (True, "jcb", "JP"),
        (False, "jcb", "JP"),
    ]


def test_a_decline_message_loses_any_email_or_phone(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice(
        "in_chatty",
        decline=Decline(
            "call_issuer",
            message="Declined: ask jenny.rosen@example.com to call +1 (555) 555-0123.",
        ),
    )

    result = processor.charge(charge_request("in_chatty"))

    assert result.decline_code == "call_issuer"
    assert result.message == "Declined: ask <email> to call <phone>."


@pytest.mark.parametrize(
    ("status", "error"),
    # 409: another request with the same key is still running at Stripe.
    [
        (409, stripe.APIError),
        (429, stripe.RateLimitError),
        (500, stripe.APIError),
        (503, stripe.APIError),
    ],
)
def test_an_outage_raises_then_the_same_request_pays_once(
    fake: FakeStripe, processor: StripeProcessor, status: int, error: type[Exception]
) -> None:
    fake.add_invoice("in_busy", outages=[status])
    request = charge_request("in_busy")

    with pytest.raises(error) as raised:
        processor.charge(request)
    assert raised.value.http_status == status
    assert fake.charges == []

    result = processor.charge(request)  # what the activity's retry does

    assert result.approved
    assert len(fake.charges) == 1
    # The outage hit the read of the invoice; the one payment carries the attempt's key.
    [paid] = [r for r in fake.requests if r.method == "POST"]
    assert paid.headers["idempotency-key"] == request.idempotency_key
    assert len(fake.requests) == 4  # invoice, invoice again, pay, the card it charged


def test_a_lost_response_is_replayed_on_retry_not_charged_again(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_lost", lose_responses=1)
    request = charge_request("in_lost")

    with pytest.raises(stripe.APIConnectionError) as raised:
        processor.charge(request)
    assert len(fake.charges) == 1  # Stripe charged; only the answer was lost
    # The SDK's own text names Stripe's support address; history must not get it.
    assert "@" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

    result = processor.charge(request)

    assert result.approved
    assert result.reference == invoice.payment_intent
    assert len(fake.charges) == 1


def test_the_same_key_twice_gets_the_stored_answer_and_one_charge(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_twice")
    request = charge_request("in_twice")

    first = processor.charge(request)
    second = processor.charge(request)

    assert first == second
    assert first.approved
    assert len(fake.charges) == 1


def test_a_declined_attempt_replays_its_decline_without_a_second_try(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_no_funds", decline=Decline("insufficient_funds"))
    request = charge_request("in_no_funds")

    first = processor.charge(request)
    second = processor.charge(request)

    assert first == second
    assert first.decline_code == "insufficient_funds"
    assert len(fake.attempts) == 1


def test_the_fake_replays_stored_bytes_like_stripe(fake: FakeStripe) -> None:
    fake.add_invoice("in_raw")

    def pay(body: bytes) -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(
            f"{fake.url}/v1/invoices/in_raw/pay",
            data=body,
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "raw-1"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    status, body, headers = pay(b"off_session=true")
    replay_status, replay_body, replay_headers = pay(b"off_session=true")
    other_status, other_body, _ = pay(b"off_session=false")

    assert (status, replay_status) == (200, 200)
    assert replay_body == body
    assert "Idempotent-Replayed" not in headers
    assert replay_headers["Idempotent-Replayed"] == "true"
    assert replay_headers["Original-Request"] == headers["Request-Id"]
    assert json.loads(body)["object"] == "invoice"
    assert other_status == 400
    assert json.loads(other_body)["error"]["type"] == "idempotency_error"
    assert len(fake.charges) == 1


def test_stripe_replays_a_stored_500_and_nothing_is_charged(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    # A 500 from a request that began running is stored under its key (API v1): the same
    # attempt keeps getting it for 24 hours. Safe: no charge; the next attempt has a new key.
    fake.add_invoice("in_broken", failures=[500])
    request = charge_request("in_broken")

    for _ in range(2):
        with pytest.raises(stripe.APIError):
            processor.charge(request)

    assert fake.charges == []
    assert processor.charge(charge_request("in_broken", attempt=2)).approved
    assert len(fake.charges) == 1


def test_reusing_a_key_with_other_parameters_is_a_conflict(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_conflict", decline=Decline("insufficient_funds"))
    processor.charge(charge_request("in_conflict"))

    with pytest.raises(IdempotencyConflict, match="dunning:case-in_conflict:attempt:1"):
        processor.charge(charge_request("in_conflict", payment_method="pm_card_other"))

    assert len(fake.attempts) == 1


def test_a_bad_api_key_is_a_config_error(fake: FakeStripe) -> None:
    fake.add_invoice("in_locked")
    processor = StripeProcessor("sk_test_wrong_key", fake.url)

    with pytest.raises(GatewayConfigError, match="API key") as raised:
        processor.charge(charge_request("in_locked"))

    assert "wrong" not in str(raised.value)
    assert "\n" not in str(raised.value)
    assert fake.attempts == []


def test_an_unknown_invoice_is_a_config_error(fake: FakeStripe, processor: StripeProcessor) -> None:
    with pytest.raises(GatewayConfigError, match=r"resource_missing.*in_nowhere"):
        processor.charge(charge_request("in_nowhere"))


def test_an_invoice_already_paid_counts_as_approved(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_paid_by_customer", status="paid")

    result = processor.charge(charge_request("in_paid_by_customer"))

    assert result.approved
    assert result.reference == "in_paid_by_customer"
    assert fake.attempts == []


def test_a_payment_still_processing_is_not_approved(
    fake: FakeStripe, processor: StripeProcessor, declines: DeclineTable
) -> None:
    fake.add_invoice("in_sepa", settles=False)

    result = processor.charge(charge_request("in_sepa"))

    assert not result.approved
    assert result.decline_code == "payment_pending"
    assert declines.classify(result) is DeclineClass.RETRY_LATER


def test_a_detached_payment_method_needs_a_new_one(
    fake: FakeStripe, processor: StripeProcessor, declines: DeclineTable
) -> None:
    fake.add_invoice("in_stale_card")
    fake.detached_payment_methods.add("pm_gone")

    result = processor.charge(charge_request("in_stale_card", payment_method="pm_gone"))

    assert not result.approved
    assert result.decline_code == "invalid_payment_method"
    assert declines.classify(result) is DeclineClass.NEVER_RETRY


# Installments of a payment plan ------------------------------------------------------------


def test_an_installment_is_a_payment_intent_attached_to_the_invoice(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_plan", amount_due=4980, customer="cus_plan")
    request = charge_request("in_plan", attempt=1, amount=1660)

    result = processor.charge(request)

    [intent] = fake.payment_intents.values()
    assert result == ChargeResult(
        approved=True,
        payment_method="pm_fake_default",
        reference=intent.id,
        message="installment paid",
        card_brand="visa",
        card_country="US",
    )
    assert (intent.amount, intent.currency, intent.customer) == (1660, "usd", "cus_plan")
    [created] = fake.requests_to("/v1/payment_intents")
    assert created.headers["idempotency-key"] == "dunning:case-in_plan:attempt:1"
    assert created.headers["authorization"] == f"Bearer {API_KEY}"
    assert created.headers["content-type"] == "application/x-www-form-urlencoded"
    assert created.form == {
        "amount": "1660",
        "currency": "usd",
        "customer": "cus_plan",
        "payment_method": "pm_fake_default",
        "off_session": "true",
        "confirm": "true",
        "expand": ["latest_charge"],
    }
    [attached] = fake.requests_to("/v1/invoices/in_plan/attach_payment")
    assert attached.form == {"payment_intent": intent.id}
    assert attached.headers["idempotency-key"] == "dunning:case-in_plan:attempt:1:attach"
    assert fake.requests_to("/v1/invoices/in_plan/pay") == []
    assert [(c.invoice, c.amount, c.approved) for c in fake.attempts] == [("in_plan", 1660, True)]
    assert intent.invoice == "in_plan"
    # Stripe's own view of the invoice: a third paid, the rest still owed.
    read = processor.client.v1.invoices.retrieve("in_plan")
    assert (read.amount_paid, read.amount_remaining, read.status) == (1660, 3320, "open")
    assert invoice.status == "open"


def test_a_retried_installment_charges_and_credits_once(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_plan_twice", amount_due=4980)
    request = charge_request("in_plan_twice", amount=1660)

    first = processor.charge(request)
    second = processor.charge(request)  # what the activity's retry does

    assert first == second
    assert first.approved
    assert len(fake.payment_intents) == 1
    assert len(fake.charges) == 1
    assert invoice.amount_paid == 1660
    assert len(fake.requests_to("/v1/invoices/in_plan_twice/attach_payment")) == 2  # replayed


def test_an_installment_credited_before_its_answer_was_lost_is_not_charged_again(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    # The second of three: once credited, what is left equals it, which reads like the last
    # installment. The retry must replay the installment, not pay the invoice with its key.
    invoice = fake.add_invoice("in_plan_lost", amount_due=4980, amount_paid=1660, lose_responses=1)
    request = charge_request("in_plan_lost", attempt=2, amount=1660)

    with pytest.raises(stripe.APIConnectionError):
        processor.charge(request)
    assert invoice.amount_paid == 3320  # Stripe credited it; only the answer was lost

    result = processor.charge(request)

    [intent] = fake.payment_intents.values()
    assert result.approved
    assert result.reference == intent.id
    assert [(c.amount, c.approved) for c in fake.attempts] == [(1660, True)]
    assert (invoice.amount_paid, invoice.status) == (3320, "open")
    # invoices.pay refused the key (Stripe's idempotency_error), so nothing was paid twice.
    assert len(fake.requests_to("/v1/invoices/in_plan_lost/pay")) == 1


def test_a_declined_installment_attaches_nothing(
    fake: FakeStripe, processor: StripeProcessor, declines: DeclineTable
) -> None:
    decline = Decline(
        "insufficient_funds",
        advice_code="try_again_later",
        network_decline_code="51",
        brand="mastercard",
        message="Your card has insufficient funds.",
    )
    invoice = fake.add_invoice("in_plan_declined", amount_due=4980, decline=decline)
    request = charge_request("in_plan_declined", amount=1660)

    result = processor.charge(request)
    again = processor.charge(request)

    assert result == ChargeResult(
        approved=False,
        decline_code="insufficient_funds",
        advice_code="try_again_later",
        network_decline_code="51",
        card_brand="mastercard",
        card_country="US",
        payment_method="pm_fake_default",
        reference=result.reference,
        message="Your card has insufficient funds.",
    )
    assert result.reference.startswith("ch_")
    assert again == result  # the stored decline, replayed
    assert declines.classify(result) is DeclineClass.RETRY_LATER
    assert [(c.amount, c.decline_code) for c in fake.attempts] == [(1660, "insufficient_funds")]
    assert fake.requests_to("/v1/invoices/in_plan_declined/attach_payment") == []
    assert (invoice.amount_paid, invoice.status) == (0, "open")
    dumped = result.model_dump_json().lower()
    assert not [detail for detail in HOLDER if detail in dumped]


def test_the_last_installment_pays_what_is_left_and_the_invoice_is_paid(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_plan_done", amount_due=4980)

    results = [
        processor.charge(charge_request("in_plan_done", attempt=n, amount=1660)) for n in (1, 2, 3)
    ]

    assert [r.approved for r in results] == [True, True, True]
    assert len(fake.payment_intents) == 2  # the last one went through invoices.pay
    [paid] = fake.requests_to("/v1/invoices/in_plan_done/pay")
    assert paid.headers["idempotency-key"] == "dunning:case-in_plan_done:attempt:3"
    assert [c.amount for c in fake.charges] == [1660, 1660, 1660]
    assert (invoice.amount_paid, invoice.status) == (4980, "paid")


def test_an_installment_uses_the_customers_default_when_the_invoice_has_none(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_plan_cus", customer="cus_card", default_payment_method=None)
    fake.customers["cus_card"] = {"default_payment_method": "pm_customer_default"}

    result = processor.charge(charge_request("in_plan_cus", amount=1660))

    assert result.approved
    assert result.payment_method == "pm_customer_default"
    assert [c.payment_method for c in fake.charges] == ["pm_customer_default"]
    assert len(fake.requests_to("/v1/customers/cus_card")) == 1


def test_an_installment_with_no_payment_method_anywhere_is_declined(
    fake: FakeStripe, processor: StripeProcessor, declines: DeclineTable
) -> None:
    invoice = fake.add_invoice("in_plan_no_pm", customer="cus_bare", default_payment_method=None)

    result = processor.charge(charge_request("in_plan_no_pm", amount=1660))

    assert not result.approved
    assert result.decline_code == "no_payment_method"
    assert declines.classify(result) is DeclineClass.NEVER_RETRY
    assert fake.payment_intents == {}
    assert fake.attempts == []
    assert invoice.amount_paid == 0


def test_an_installment_still_processing_is_attached_but_not_approved(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    # A bank debit: attached now, Stripe credits it to the invoice the day it succeeds.
    invoice = fake.add_invoice("in_plan_sepa", settles=False)

    result = processor.charge(charge_request("in_plan_sepa", amount=1660))

    [intent] = fake.payment_intents.values()
    assert not result.approved
    assert result.decline_code == "payment_pending"
    assert (intent.status, intent.invoice) == ("processing", "in_plan_sepa")
    assert invoice.amount_paid == 0


def test_the_fake_credits_an_attached_payment_intent_once(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    invoice = fake.add_invoice("in_attach", amount_due=4980)
    processor.charge(charge_request("in_attach", amount=1000))
    [intent] = fake.payment_intents.values()
    attach = processor.client.v1.invoices.attach_payment

    with pytest.raises(stripe.InvalidRequestError) as again:
        attach("in_attach", params={"payment_intent": intent.id}, options={"idempotency_key": "x"})
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        attach("in_attach", params={"payment_intent": "pi_nowhere"})

    assert again.value.http_status == 400
    assert (unknown.value.http_status, unknown.value.code) == (400, "resource_missing")
    assert invoice.amount_paid == 1000


# Error classes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "API key"), (403, "HTTP 403"), (404, "resource_missing")],
)
def test_a_refusal_stripe_will_repeat_is_a_config_error_at_once(
    fake: FakeStripe, processor: StripeProcessor, status: int, words: str
) -> None:
    fake.add_invoice("in_refused", outages=[status])

    with pytest.raises(GatewayConfigError, match=words) as raised:
        processor.charge(charge_request("in_refused"))

    assert "\n" not in str(raised.value)
    assert len(fake.requests) == 1  # the SDK did not retry it either
    assert fake.attempts == []


def test_a_server_that_is_not_stripe_is_a_config_error_not_an_outage(
    fake: FakeStripe, processor: StripeProcessor, biller: StripeBiller
) -> None:
    # A wrong STRIPE_API_BASE answers HTML. Retried as an outage, each charge stalled ~5.7 h.
    fake.add_invoice("in_lost_base")
    fake.wrong_base = True

    with pytest.raises(GatewayConfigError) as raised:
        processor.charge(charge_request("in_lost_base"))

    assert str(raised.value) == "HTTP 404 without Stripe's error body: check STRIPE_API_BASE"
    with pytest.raises(GatewayConfigError, match="STRIPE_API_BASE"):
        processor.invoice_decline("in_lost_base")
    with pytest.raises(GatewayConfigError, match="STRIPE_API_BASE"):
        biller.write_back(write_back_request(WriteBackAction.MARK_UNCOLLECTIBLE, "in_lost_base"))


def test_no_answer_at_all_is_transient(fake: FakeStripe) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    processor, biller = StripeProcessor(API_KEY, closed), StripeBiller(API_KEY, closed)

    with pytest.raises(stripe.APIConnectionError, match="Stripe unreachable"):
        processor.charge(charge_request("in_anywhere"))
    with pytest.raises(stripe.APIConnectionError):
        processor.invoice_decline("in_anywhere")
    with pytest.raises(stripe.APIConnectionError):
        biller.settlement("in_anywhere")


# Settlement -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "settled"),
    [
        ("open", None),
        ("paid", InvoiceSettled(kind="paid", source="Stripe: invoice paid")),
        ("void", InvoiceSettled(kind="voided", source="Stripe: invoice void")),
    ],
)
def test_settlement_reads_the_invoice_status(
    fake: FakeStripe, biller: StripeBiller, status: str, settled: InvoiceSettled | None
) -> None:
    fake.add_invoice("in_looked_at", status=status)

    assert biller.settlement("in_looked_at") == settled
    assert fake.requests[0].headers["stripe-version"] == STRIPE_API_VERSION


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, stripe.RateLimitError), (500, stripe.APIError), (503, stripe.APIError)],
)
def test_settlement_raises_transient_trouble_for_the_activity_to_retry(
    fake: FakeStripe, biller: StripeBiller, status: int, error: type[Exception]
) -> None:
    fake.add_invoice("in_busy", outages=[status])

    with pytest.raises(error, match=f"HTTP {status}"):
        biller.settlement("in_busy")
    assert biller.settlement("in_busy") is None  # the retry


@pytest.mark.parametrize("status", [401, 403, 404, "not stripe"])
def test_settlement_takes_the_invoice_as_open_on_a_config_error_and_logs_it(
    fake: FakeStripe,
    biller: StripeBiller,
    status: int | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It runs before every message: a reminder goes out; the charge raises the error itself.
    fake.add_invoice("in_hidden", outages=[status] if isinstance(status, int) else [])
    fake.wrong_base = status == "not stripe"

    with caplog.at_level(logging.WARNING, logger="dunning.gateway"):
        assert biller.settlement("in_hidden") is None

    assert "cannot read invoice in_hidden at Stripe" in caplog.text


# The decline a webhook does not carry -----------------------------------------------------


LOOKED_UP = {
    "hard decline": (
        Decline("stolen_card", advice_code="do_not_try_again", brand="mastercard"),
        DeclineCodes(
            decline_code="stolen_card",
            advice_code="do_not_try_again",
            card_brand="mastercard",
            card_country="US",
        ),
        DeclineClass.NEVER_RETRY,
    ),
    "soft decline, Visa 51": (
        Decline("insufficient_funds", network_decline_code="51"),
        DeclineCodes(
            decline_code="insufficient_funds",
            network_decline_code="51",
            card_brand="visa",
            card_country="US",
        ),
        DeclineClass.RETRY_LATER,
    ),
    "no decline code: the error code": (
        Decline(None, code="expired_card"),
        DeclineCodes(decline_code="expired_card", card_brand="visa", card_country="US"),
        DeclineClass.NEVER_RETRY,
    ),
    "3-D Secure pending: the intent waits, no error": (
        Decline(None, code="invoice_payment_intent_requires_action"),
        DeclineCodes(decline_code="authentication_required"),
        DeclineClass.NEEDS_CUSTOMER_ACTION,
    ),
}


@pytest.mark.parametrize(("decline", "codes", "expected"), LOOKED_UP.values(), ids=LOOKED_UP.keys())
def test_the_decline_is_read_from_the_invoices_newest_payment(
    fake: FakeStripe,
    processor: StripeProcessor,
    declines: DeclineTable,
    decline: Decline,
    codes: DeclineCodes,
    expected: DeclineClass,
) -> None:
    fake.add_invoice("in_failed", last_decline=decline)

    found = processor.invoice_decline("in_failed")

    assert found == codes
    assert declines.classify(found) is expected
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("GET", "/v1/invoice_payments")
    assert sent.form == {
        "invoice": "in_failed",
        "limit": "1",
        "expand": ["data.payment.payment_intent"],
    }
    assert sent.headers["stripe-version"] == STRIPE_API_VERSION


def test_an_invoice_never_attempted_or_since_paid_has_no_decline(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    fake.add_invoice("in_fresh")
    fake.add_invoice("in_paid", last_decline=Decline("insufficient_funds"), status="paid")

    assert processor.invoice_decline("in_fresh") is None
    assert processor.invoice_decline("in_paid") is None


def test_the_decline_of_an_unknown_invoice_is_a_config_error(
    fake: FakeStripe, processor: StripeProcessor
) -> None:
    with pytest.raises(GatewayConfigError, match=r"resource_missing.*in_nowhere"):
        processor.invoice_decline("in_nowhere")


# The fake speaks both API versions --------------------------------------------------------


def get(fake: FakeStripe, path: str, version: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if version:
        headers["Stripe-Version"] = version
    request = urllib.request.Request(f"{fake.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_fake_answers_an_unpinned_client_in_the_accounts_older_shape(
    fake: FakeStripe,
) -> None:
    invoice = fake.add_invoice("in_shapes", subscription="sub_1", last_decline=Decline("lost_card"))

    _, legacy = get(fake, "/v1/invoices/in_shapes")
    _, basil = get(fake, "/v1/invoices/in_shapes", STRIPE_API_VERSION)
    _, intent = get(fake, f"/v1/payment_intents/{invoice.payment_intent}")
    status, refused = get(
        fake, "/v1/invoices/in_shapes?expand[]=payment_intent", STRIPE_API_VERSION
    )

    assert (legacy["payment_intent"], legacy["subscription"], legacy["paid"]) == (
        invoice.payment_intent,
        "sub_1",
        False,
    )
    assert "parent" not in legacy
    assert not {"payment_intent", "charge", "paid"} & basil.keys()
    assert basil["parent"]["subscription_details"]["subscription"] == "sub_1"
    assert intent["last_payment_error"]["decline_code"] == "lost_card"
    assert status == 400
    assert refused["error"]["message"] == "This property cannot be expanded (payment_intent)."


# Write-back -------------------------------------------------------------------------------


def test_mark_uncollectible(fake: FakeStripe, biller: StripeBiller) -> None:
    invoice = fake.add_invoice("in_done")

    result = biller.write_back(write_back_request(WriteBackAction.MARK_UNCOLLECTIBLE))

    assert result.done
    assert invoice.status == "uncollectible"
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/invoices/in_done/mark_uncollectible")
    assert sent.headers["idempotency-key"] == "dunning:case-9:outcome:mark_uncollectible"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


def test_mark_uncollectible_twice_replays_the_first_answer(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    fake.add_invoice("in_done")
    request = write_back_request(WriteBackAction.MARK_UNCOLLECTIBLE)

    assert biller.write_back(request).done
    assert biller.write_back(request).done  # the retry of a lost answer: same key, same 200


@pytest.mark.parametrize("status", ["uncollectible", "paid", "void"])
def test_mark_uncollectible_when_already_settled_is_nothing_to_do(
    fake: FakeStripe, biller: StripeBiller, status: str
) -> None:
    fake.add_invoice("in_done", status=status)

    result = biller.write_back(write_back_request(WriteBackAction.MARK_UNCOLLECTIBLE))

    assert not result.done
    assert result.detail == f"invoice already {status}"
    assert fake.invoices["in_done"].status == status


def test_mark_paid_out_of_band(fake: FakeStripe, biller: StripeBiller) -> None:
    invoice = fake.add_invoice("in_done")

    result = biller.write_back(write_back_request(WriteBackAction.MARK_PAID_OUT_OF_BAND))

    assert result.done
    assert invoice.status == "paid"
    assert invoice.paid_out_of_band
    assert fake.charges == []
    [sent] = fake.requests
    assert (sent.path, sent.form) == ("/v1/invoices/in_done/pay", {"paid_out_of_band": "true"})
    assert sent.headers["idempotency-key"] == "dunning:case-9:outcome:mark_paid_out_of_band"


def test_mark_paid_out_of_band_when_already_paid(fake: FakeStripe, biller: StripeBiller) -> None:
    fake.add_invoice("in_done", status="paid")

    result = biller.write_back(write_back_request(WriteBackAction.MARK_PAID_OUT_OF_BAND))

    assert (result.done, result.detail) == (False, "invoice already paid")


def test_cancel_subscription_now(fake: FakeStripe, biller: StripeBiller) -> None:
    subscription = fake.add_subscription("sub_1")

    result = biller.write_back(write_back_request(WriteBackAction.CANCEL_SUBSCRIPTION_NOW))

    assert result.done
    assert subscription.status == "canceled"
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("DELETE", "/v1/subscriptions/sub_1")
    assert sent.headers["idempotency-key"] == "dunning:case-9:outcome:cancel_subscription_now"


def test_cancel_a_subscription_already_canceled(fake: FakeStripe, biller: StripeBiller) -> None:
    fake.add_subscription("sub_1", status="canceled")

    result = biller.write_back(write_back_request(WriteBackAction.CANCEL_SUBSCRIPTION_NOW))

    assert (result.done, result.detail) == (False, "subscription already canceled")
    # Stripe calls a canceled subscription "no such subscription"; a look settles it.
    assert [(r.method, r.path) for r in fake.requests] == [
        ("DELETE", "/v1/subscriptions/sub_1"),
        ("GET", "/v1/subscriptions/sub_1"),
    ]


def test_cancel_an_unknown_subscription_is_a_config_error(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    with pytest.raises(GatewayConfigError, match="sub_1"):
        biller.write_back(write_back_request(WriteBackAction.CANCEL_SUBSCRIPTION_NOW))


def test_cancel_at_period_end(fake: FakeStripe, biller: StripeBiller) -> None:
    subscription = fake.add_subscription("sub_1")

    result = biller.write_back(
        write_back_request(WriteBackAction.CANCEL_SUBSCRIPTION_AT_PERIOD_END)
    )

    assert result.done
    assert subscription.cancel_at_period_end
    assert subscription.status == "active"
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("POST", "/v1/subscriptions/sub_1")
    assert sent.form == {"cancel_at_period_end": "true"}
    assert (
        sent.headers["idempotency-key"]
        == "dunning:case-9:outcome:cancel_subscription_at_period_end"
    )


def test_cancel_at_period_end_when_already_canceled(fake: FakeStripe, biller: StripeBiller) -> None:
    fake.add_subscription("sub_1", status="canceled")

    result = biller.write_back(
        write_back_request(WriteBackAction.CANCEL_SUBSCRIPTION_AT_PERIOD_END)
    )

    assert (result.done, result.detail) == (False, "subscription already canceled")


@pytest.mark.parametrize(
    "action",
    [WriteBackAction.CANCEL_SUBSCRIPTION_NOW, WriteBackAction.CANCEL_SUBSCRIPTION_AT_PERIOD_END],
)
def test_cancel_without_a_subscription_asks_nothing(
    fake: FakeStripe, biller: StripeBiller, action: WriteBackAction
) -> None:
    result = biller.write_back(write_back_request(action, subscription_id=None))

    assert (result.done, result.detail) == (False, "no subscription")
    assert fake.requests == []


def test_write_back_maps_errors_like_charge(fake: FakeStripe) -> None:
    fake.add_invoice("in_done", outages=[429])
    request = write_back_request(WriteBackAction.MARK_UNCOLLECTIBLE)

    with pytest.raises(GatewayConfigError, match="API key"):
        StripeBiller("sk_test_wrong_key", fake.url).write_back(request)
    with pytest.raises(stripe.RateLimitError):
        StripeBiller(API_KEY, fake.url).write_back(request)
    assert StripeBiller(API_KEY, fake.url).write_back(request).done


# Wiring -----------------------------------------------------------------------------------


def test_settings_choose_stripe_and_the_attempt_is_recorded(
    fake: FakeStripe, tmp_path: Path
) -> None:
    fake.add_invoice("in_wired", decline=Decline("insufficient_funds", brand="visa"))
    settings = Settings(
        gateway="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=fake.url,
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        _env_file=None,
    )
    activities = DunningActivities.from_settings(settings)
    request = charge_request("in_wired")

    result = activities.charge(request)

    assert isinstance(activities.processor, StripeProcessor)
    assert isinstance(activities.biller, StripeBiller)
    assert result.decline_code == "insufficient_funds"
    [attempt] = activities.store.attempts(request.case_id)
    assert (attempt.attempt, attempt.approved, attempt.decline_code) == (
        1,
        False,
        "insufficient_funds",
    )
    assert attempt.idempotency_key == "dunning:case-in_wired:attempt:1"
    assert attempt.reference == result.reference
    assert fake.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_settings_keep_the_simulated_payments_by_default(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)
    activities = DunningActivities.from_settings(settings)

    assert isinstance(activities.processor, SimulatedProcessor)
    assert isinstance(activities.biller, SimulatedBiller)


def test_every_provider_registers_its_processor_and_biller(tmp_path: Path) -> None:
    store = DunningActivities.from_settings(
        Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)
    ).store
    stripe_settings = Settings(gateway="stripe", stripe_api_key=API_KEY, _env_file=None)

    assert set(PROCESSORS) == set(BILLERS) == set(PROVIDERS)
    assert isinstance(processor_for(stripe_settings, store), StripeProcessor)
    assert isinstance(biller_for(stripe_settings, store), StripeBiller)
