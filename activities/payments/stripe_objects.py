"""Stripe's objects (invoices, payment errors, cards, subscriptions) read as plain data, the
same way by the gateway and by the webhook reader. Pure: no SDK, no I/O.

Webhooks expand nothing; API responses expand what was asked. Every reader here takes an
expanded object or an id where Stripe may give either, and answers None for anything else.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from workflows.models import ID_PATTERN
from workflows.notice_windows import CardOnFile, Renewal
from workflows.policy import DeclineCodes


def dig(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, or None where a step is not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def text(value: Any, limit: int) -> str | None:
    """A field given as text, stripped and cut to `limit`; anything else is None."""
    return (value.strip()[:limit] or None) if isinstance(value, str) else None


def object_id(value: Any) -> str | None:
    """The id of an expandable field (an id or an expanded object), when it is one."""
    found = dig(value, "id") if isinstance(value, dict) else value
    return found if isinstance(found, str) and re.fullmatch(ID_PATTERN, found) else None


def decline_codes(error: dict) -> DeclineCodes:
    """Stripe's own codes of a card error or a `last_payment_error`, for the decline table:
    the issuer's `decline_code`, else the error's `code` (`card_declined`, `expired_card`,
    `invoice_payment_intent_requires_action`, ...)."""
    method = error.get("payment_method")
    if not isinstance(method, dict):
        method = dig(error, "payment_intent", "last_payment_error", "payment_method")
    return DeclineCodes(
        decline_code=text(error.get("decline_code"), 100) or text(error.get("code"), 100),
        advice_code=text(error.get("advice_code"), 100),
        network_decline_code=text(error.get("network_decline_code"), 20),
        network_advice_code=text(error.get("network_advice_code"), 20),
        **card_facts(dig(method, "card")),
    )


def card_facts(card: Any) -> dict[str, str | None]:
    """The brand and issuing country of a card (a PaymentMethod's `card`, or a Charge's
    `payment_method_details.card`): what a retry model may learn from."""
    country = text(dig(card, "country"), 2)
    return {
        "card_brand": text(dig(card, "brand"), 30),
        "card_country": country.upper() if country and len(country) == 2 else None,
    }


def payment_reference(invoice: dict) -> str | None:
    """The charge or payment intent that paid the invoice: the invoice's own `charge` (older
    API versions name it), else the newest of its expanded `payments` (versions since basil,
    newest first), else its own `payment_intent`."""
    if found := object_id(invoice.get("charge")):
        return found
    payments = dig(invoice, "payments", "data")
    for payment in payments if isinstance(payments, list) else []:
        details = dig(payment, "payment")
        found = object_id(dig(details, "payment_intent")) or object_id(dig(details, "charge"))
        if found:
            return found
    return object_id(invoice.get("payment_intent"))


def stripe_card(payment_method: str, card: Any) -> CardOnFile | None:
    """A PaymentMethod's `card` as pre-dunning needs it (brand, last 4, expiry); None for a
    method that is no card or has no readable expiry."""
    month, year = dig(card, "exp_month"), dig(card, "exp_year")
    if type(month) is not int or type(year) is not int or not 1 <= month <= 12:
        return None
    last4 = text(dig(card, "last4"), 4)
    return CardOnFile(
        payment_method=payment_method,
        brand=text(dig(card, "brand"), 30),
        last4=last4 if last4 and re.fullmatch(r"[0-9]{4}", last4) else None,
        exp_month=month,
        exp_year=year,
    )


def yearly_renewal(subscription: Any) -> Renewal | None:
    """When an active yearly subscription renews: its period end (on its items since
    2025-03-31.basil, on the subscription before). None for a monthly one, one that cancels
    at period end, or one whose period Stripe does not give."""
    subscription_id = object_id(dig(subscription, "id"))
    if subscription_id is None or dig(subscription, "cancel_at_period_end") is True:
        return None
    items = dig(subscription, "items", "data")
    items = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    intervals = {
        dig(item, "price", "recurring", "interval") or dig(item, "plan", "interval")
        for item in items
    }
    if "year" not in intervals:
        return None
    ends = [dig(item, "current_period_end") for item in items]
    ends = [end for end in ends if type(end) is int] or [dig(subscription, "current_period_end")]
    if type(ends[0]) is not int:
        return None
    renews_at = datetime.fromtimestamp(min(ends), UTC)
    return Renewal(subscription_id=subscription_id, renews_at=renews_at)
