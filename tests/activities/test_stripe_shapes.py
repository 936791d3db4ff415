"""The Stripe reader on both invoice shapes: a decline only where a payload expanded a field.

Webhooks expand nothing, so a real `invoice.payment_failed` carries no decline in either shape;
the receiver then asks Stripe (tests/receiver/test_webhooks.py, "Stripe as it really sends events").
"""

from __future__ import annotations

from tests.support.receiver import invoice, legacy, stripe_event
from webhooks.intake import OpenCase
from webhooks.stripe_events import envelope, read_stripe_event

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
