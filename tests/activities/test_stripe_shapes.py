"""The Stripe reader on both invoice shapes: a decline only where a payload expanded a field.

Webhooks expand nothing, so a real `invoice.payment_failed` carries no decline in either shape;
the receiver then asks Stripe (tests/receiver/test_webhooks.py, "Stripe as it really sends events").
"""

from __future__ import annotations

import pytest

from tests.support.receiver import invoice, legacy, stripe_event
from webhooks.intake import Ignore, OpenCase, TellCases, UnreadableEvent
from webhooks.stripe_events import envelope, read_stripe_event
from workflows.models import PaymentReceived

# The reader alone: a decline only where a payload expanded it -------------------------------


def failure(obj: dict) -> OpenCase:
    event = stripe_event("invoice.payment_failed", obj)
    action = read_stripe_event(event, envelope(event)).action
    assert isinstance(action, OpenCase)
    return action


ERROR = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "lost_card",
    "advice_code": "do_not_try_again",
    "payment_method": {"id": "pm_1", "card": {"brand": "visa"}},
}


def test_the_reader_finds_no_decline_in_an_unexpanded_payment_intent() -> None:
    opened = failure(legacy(invoice("in_ids_only"), payment_intent="pi_1", charge="ch_1"))

    assert opened.event.decline_code is None
    assert opened.failure.decline_code is None


def test_the_reader_takes_the_decline_of_an_expanded_payment_intent() -> None:
    intent = {"id": "pi_1", "object": "payment_intent", "last_payment_error": ERROR}
    opened = failure({**legacy(invoice("in_expanded")), "payment_intent": intent})

    assert (opened.event.decline_code, opened.event.advice_code) == (
        "lost_card",
        "do_not_try_again",
    )
    assert opened.failure.card_brand == "visa"


def test_the_reader_takes_the_newest_of_expanded_invoice_payments() -> None:
    def payment(error: dict | None) -> dict:
        intent = {"id": "pi_1", "object": "payment_intent", "last_payment_error": error}
        return {
            "object": "invoice_payment",
            "payment": {"type": "payment_intent", "payment_intent": intent},
        }

    newest_first = {
        "object": "list",
        "data": [payment({**ERROR, "decline_code": None}), payment(ERROR)],
    }
    opened = failure(invoice("in_listed", payments=newest_first))

    # Stripe's own code when the issuer gave none; never one of ours.
    assert opened.event.decline_code == "card_declined"


# invoice_payment.paid: one payment of several towards an invoice --------------------------


def invoice_payment(**fields: object) -> dict:
    """An InvoicePayment as Stripe sends it (basil and later): the payment is not expanded."""
    return {
        "id": "inpay_1",
        "object": "invoice_payment",
        "amount_paid": 1660,
        "amount_requested": 1660,
        "currency": "jpy",
        "invoice": "in_partly",
        "is_default": False,
        "payment": {"type": "payment_intent", "payment_intent": "pi_part"},
        "status": "paid",
        **fields,
    }


def read(obj: dict):
    event = stripe_event("invoice_payment.paid", obj)
    return read_stripe_event(event, envelope(event)).action


def test_a_partial_payment_tells_the_case_what_was_paid_by_its_payment_intent() -> None:
    action = read(invoice_payment())

    assert isinstance(action, TellCases) and action.invoice_id == "in_partly"
    payment = action.payload
    assert isinstance(payment, PaymentReceived)
    assert (payment.amount, payment.reference, payment.paid_at_biller) == (1660, "pi_part", True)


def test_the_invoices_own_payment_is_left_to_invoice_paid() -> None:
    assert isinstance(read(invoice_payment(is_default=True)), Ignore)


@pytest.mark.parametrize("amount", [0, -5, "1660", 1.5, None, 10**13])
def test_a_payment_without_a_whole_positive_amount_is_refused(amount: object) -> None:
    with pytest.raises(UnreadableEvent, match="amount_paid"):
        read(invoice_payment(amount_paid=amount))
