"""Stripe events, read into what they ask of dunning cases.

Enable exactly `EVENT_TYPES` on the Stripe webhook endpoint. An endpoint keeps the API version
it was created with, so both invoice shapes arrive: since 2025-03-31.basil the subscription is
under `parent.subscription_details` and payments are listed apart (`/v1/invoice_payments`);
before it, `subscription`, `payment_intent` and `charge` are ids on the invoice. Webhooks
expand nothing, so a failure's decline is read only where a payload did expand it; otherwise
the receiver asks Stripe (`StripeProcessor.invoice_decline`); a completed setup session's card is
fetched by the receiver before the event is stored. Pure: no I/O, no Stripe API calls.
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, NamedTuple

import phonenumbers
from pydantic import EmailStr, TypeAdapter, ValidationError

from activities.payments.stripe_objects import decline_codes, dig, payment_reference, text
from activities.store import CustomerProfile
from config.errors import explain
from intake.events import BillingEvent, check_occurred
from webhooks.intake import Action, Ignore, Intake, OpenCase, TellCases, UnreadableEvent
from workflows.models import (
    ID_PATTERN,
    CancelRequest,
    DisputeOpened,
    DisputeResolved,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentReceived,
)
from workflows.values import LOCALE_PATTERN, MAX_AMOUNT, country_codes

PROVIDER = "stripe"
ACTOR = "stripe"
# Checkout's setup mode collected a new card on the recovery page.
SETUP_COMPLETED = "checkout.session.completed"

# A closed dispute the merchant keeps the money on: the case goes on.
DISPUTE_KEPT = {"won", "warning_closed"}

_EMAIL = TypeAdapter(EmailStr)
_LOCALE = re.compile(LOCALE_PATTERN)
# Stripe's timestamps are unix seconds; anything past the year 3000 is no timestamp.
MAX_UNIX_SECONDS = 32_503_680_000


class Envelope(NamedTuple):
    """What names a Stripe event: read first, so even an unreadable event can be stored."""

    event_id: str
    kind: str
    occurred_at: datetime


def envelope(payload: Any) -> Envelope:
    """The event's id, type and creation time; ValueError when the payload is no event."""
    if not isinstance(payload, dict):
        raise ValueError("the body is not a JSON object")
    event_id, kind, created = payload.get("id"), payload.get("type"), payload.get("created")
    if not isinstance(event_id, str) or not re.fullmatch(ID_PATTERN, event_id):
        raise ValueError("id: not a Stripe event id")
    if not isinstance(kind, str) or not kind or len(kind) > 100:
        raise ValueError("type: missing")
    if not _is_int(created) or not 0 <= created < MAX_UNIX_SECONDS:
        raise ValueError("created: not a unix timestamp")
    return Envelope(event_id, kind, check_occurred(datetime.fromtimestamp(created, UTC)))


def read_stripe_event(payload: dict, head: Envelope) -> Intake:
    """What an authentic Stripe event asks, given its `envelope`; `UnreadableEvent` when its
    object makes no sense."""
    event_id, kind, occurred_at = head
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise UnreadableEvent("data.object: missing")
    previous = data.get("previous_attributes")
    previous = previous if isinstance(previous, dict) else {}
    read = _READERS.get(kind)
    if read is None:
        return Intake(
            PROVIDER, event_id, kind, occurred_at, Ignore(f"{kind} is not an event dunning acts on")
        )
    fields = read(kind, obj, previous, occurred_at)
    return Intake(PROVIDER, event_id, kind, occurred_at, **fields)


# Invoices ----------------------------------------------------------------------------------


def _invoice_failed(kind: str, invoice: dict, previous: dict, occurred_at: datetime) -> dict:
    ids = _invoice_ids(invoice)
    customer_id = ids["customer_id"]
    if customer_id is None:
        raise UnreadableEvent("data.object.customer: the invoice has no customer")
    codes = decline_codes(_payment_error(invoice)).model_dump(exclude_none=True)
    if kind == "invoice.payment_action_required" and not codes.get("decline_code"):
        codes["decline_code"] = "authentication_required"  # the customer must confirm (3DS)
    customer = invoice.get("customer")
    locales = invoice.get("customer_preferred_locales")
    if isinstance(customer, dict):  # expanded
        locales = locales or customer.get("preferred_locales")
    contacts = _contacts(
        customer_id,
        email=invoice.get("customer_email"),
        name=invoice.get("customer_name"),
        phone=invoice.get("customer_phone"),
        country=dig(invoice, "customer_address", "country"),
        locales=locales,
        payment_method=_id(invoice.get("default_payment_method"), "default_payment_method"),
    )
    # What is still owed: amount_due less any partial payment already made.
    remaining = invoice.get("amount_remaining")
    amount = remaining if _is_int(remaining) and remaining > 0 else invoice.get("amount_due")
    try:
        event = BillingEvent(
            invoice_id=ids["invoice_id"],
            subscription_id=ids["subscription_id"],
            customer=contacts,
            amount_due=amount,
            currency=invoice.get("currency"),
            failed_at=occurred_at,
            **codes,
        )
    except ValidationError as err:
        raise UnreadableEvent(explain(err, prefix="data.object")) from err
    failure = PaymentFailed(**codes, actor=ACTOR)
    return {"action": OpenCase(event=event, failure=failure), **ids}


def _invoice_paid(kind: str, invoice: dict, previous: dict, occurred_at: datetime) -> dict:
    ids = _invoice_ids(invoice)
    paid = invoice.get("amount_paid")
    if paid is not None and not (_is_int(paid) and paid <= MAX_AMOUNT):
        raise UnreadableEvent(
            f"data.object.amount_paid: not a whole amount of minor units up to {MAX_AMOUNT}"
        )
    if not paid or paid <= 0:
        action: Action = TellCases(
            CancelRequest(reason=f"{kind}: settled without a payment", actor=ACTOR),
            invoice_id=ids["invoice_id"],
        )
        return {"action": action, **ids}
    charge = payment_reference(invoice)
    reference = f"{ids['invoice_id']}/{charge}" if charge else ids["invoice_id"]
    payment = PaymentReceived(amount=paid, reference=reference, actor=ACTOR, paid_at_biller=True)
    return {"action": TellCases(payment, invoice_id=ids["invoice_id"]), **ids}


def _invoice_payment_paid(kind: str, payment: dict, previous: dict, occurred_at: datetime) -> dict:
    """One payment towards an invoice (since basil an invoice may take several): a partial
    one lowers what the case is owed. The invoice's own default payment is left to
    `invoice.paid`; a payment that is one of the case's own installments is recognised by
    its PaymentIntent and counted once."""
    invoice_id = _id(payment.get("invoice"), "invoice", required=True)
    amount = payment.get("amount_paid")
    if not (_is_int(amount) and 0 < amount <= MAX_AMOUNT):
        raise UnreadableEvent(
            f"data.object.amount_paid: not a whole amount of minor units up to {MAX_AMOUNT}"
        )
    if payment.get("is_default") is True:
        return {"action": Ignore(f"{kind}: the invoice's own payment (invoice.paid tells)")}
    intent = _id(dig(payment, "payment", "payment_intent"), "payment.payment_intent")
    reference = intent or _id(payment.get("id"), "id") or invoice_id
    received = PaymentReceived(amount=amount, reference=reference, actor=ACTOR, paid_at_biller=True)
    return {"action": TellCases(received, invoice_id=invoice_id), "invoice_id": invoice_id}


def _invoice_closed(kind: str, invoice: dict, previous: dict, occurred_at: datetime) -> dict:
    ids = _invoice_ids(invoice)
    cancel = CancelRequest(reason=kind, actor=ACTOR)
    return {"action": TellCases(cancel, invoice_id=ids["invoice_id"]), **ids}


def _invoice_ids(invoice: dict) -> dict:
    subscription = dig(invoice, "parent", "subscription_details", "subscription")
    return {
        "invoice_id": _id(invoice.get("id"), "id", required=True),
        "customer_id": _id(invoice.get("customer"), "customer"),
        "subscription_id": _id(subscription or invoice.get("subscription"), "subscription"),
    }


def _payment_error(invoice: dict) -> dict:
    """The latest payment error, only from a field the payload expanded: an id holds none."""
    payments = dig(invoice, "payments", "data")  # since basil, newest first
    newest = payments[0] if isinstance(payments, list) and payments else None
    for intent in (dig(newest, "payment", "payment_intent"), invoice.get("payment_intent")):
        error = dig(intent, "last_payment_error")  # None when `intent` is an id
        if isinstance(error, dict) and (error.get("decline_code") or error.get("code")):
            return error
    return {}


# Subscriptions, disputes, payment methods --------------------------------------------------


def _subscription_deleted(kind: str, subscription: dict, previous: dict, at: datetime) -> dict:
    subscription_id = _id(subscription.get("id"), "id", required=True)
    cancel = CancelRequest(reason=kind, actor=ACTOR)
    return {
        "action": TellCases(cancel, subscription_id=subscription_id),
        "subscription_id": subscription_id,
        "customer_id": _id(subscription.get("customer"), "customer"),
    }


def _dispute(kind: str, dispute: dict, previous: dict, occurred_at: datetime) -> dict:
    dispute_id = _id(dispute.get("id"), "id", required=True)
    charge = dispute.get("charge")
    intent = dispute.get("payment_intent")
    invoice_id = (
        _id(dispute.get("invoice"), "invoice")
        or _id(dig(charge, "invoice"), "charge.invoice")
        or _id(dig(intent, "invoice"), "payment_intent.invoice")
    )
    references = tuple(
        ref for ref in (_id(charge, "charge"), _id(intent, "payment_intent")) if ref is not None
    )
    if kind == "charge.dispute.created":
        reason = text(dispute.get("reason"), 400) or "dispute opened"
        payload: DisputeOpened | DisputeResolved = DisputeOpened(
            reason=f"{reason} (Stripe dispute {dispute_id})", actor=ACTOR
        )
    else:
        payload = DisputeResolved(won=dispute.get("status") in DISPUTE_KEPT, actor=ACTOR)
    if invoice_id is None and not references:
        raise UnreadableEvent("data.object: the dispute names no charge or payment intent")
    tell = TellCases(payload, invoice_id=invoice_id, charge_references=references)
    return {"action": tell, "invoice_id": invoice_id}


def _payment_method(kind: str, method: dict, previous: dict, occurred_at: datetime) -> dict:
    method_id = _id(method.get("id"), "id", required=True)
    customer_id = _id(method.get("customer"), "customer")
    if customer_id is None:
        return {"action": Ignore(f"{kind}: the payment method belongs to no customer")}
    update = PaymentMethodUpdated(payment_method=method_id, actor=ACTOR)
    action = TellCases(update, customer_id=customer_id)
    return {"action": action, "customer_id": customer_id}


def _setup_completed(kind: str, session: dict, previous: dict, occurred_at: datetime) -> dict:
    """The customer gave a new card on Checkout (setup mode, from the recovery page). The
    receiver expands `setup_intent` to its card, made their default, before storing the
    event; an unexpanded one (the receiver not on GATEWAY=stripe) names no card to try."""
    if session.get("mode") != "setup":
        return {"action": Ignore(f"{kind}: not a setup session (mode {session.get('mode')})")}
    customer_id = _id(session.get("customer"), "customer")
    if customer_id is None:
        return {"action": Ignore(f"{kind}: the session belongs to no customer")}
    intent = session.get("setup_intent")
    method = _id(dig(intent, "payment_method"), "setup_intent.payment_method")
    if not isinstance(intent, dict) or method is None:
        reason = f"{kind}: the setup collected no card we could read"
        return {"action": Ignore(reason), "customer_id": customer_id}
    update = PaymentMethodUpdated(payment_method=method, actor="customer")
    return {
        "action": TellCases(update, customer_id=customer_id),
        "customer_id": customer_id,
        "contacts": CustomerProfile(customer_id=customer_id, payment_method=method),
    }


def _customer_updated(kind: str, customer: dict, previous: dict, occurred_at: datetime) -> dict:
    customer_id = _id(customer.get("id"), "id", required=True)
    new = _id(
        dig(customer, "invoice_settings", "default_payment_method"),
        "invoice_settings.default_payment_method",
    )
    before = previous.get("invoice_settings")
    changed = (
        isinstance(before, dict)
        and "default_payment_method" in before
        and new is not None
        and new != _id(before.get("default_payment_method"), "previous default_payment_method")
    )
    contacts = _contacts(
        customer_id,
        email=customer.get("email"),
        name=customer.get("name"),
        phone=customer.get("phone"),
        country=dig(customer, "address", "country"),
        locales=customer.get("preferred_locales"),
        payment_method=new if changed else None,
    )
    action: Action = Ignore(f"{kind}: the default payment method did not change")
    if changed:
        update = PaymentMethodUpdated(payment_method=new, actor=ACTOR)
        action = TellCases(update, customer_id=customer_id)
    return {"action": action, "customer_id": customer_id, "contacts": contacts}


_READERS = {
    "invoice.payment_failed": _invoice_failed,
    "invoice.payment_action_required": _invoice_failed,
    "invoice.paid": _invoice_paid,
    "invoice_payment.paid": _invoice_payment_paid,
    "invoice.voided": _invoice_closed,
    "invoice.marked_uncollectible": _invoice_closed,
    "customer.subscription.deleted": _subscription_deleted,
    "charge.dispute.created": _dispute,
    "charge.dispute.closed": _dispute,
    "payment_method.attached": _payment_method,
    "payment_method.automatically_updated": _payment_method,
    "customer.updated": _customer_updated,
    SETUP_COMPLETED: _setup_completed,
}

EVENT_TYPES = list(_READERS)
"""Every event type dunning acts on (enable these on the endpoint); others are stored as
ignored. `checkout.session.completed` is the recovery page's new card (Checkout, setup mode)."""


# Helpers -----------------------------------------------------------------------------------


def _contacts(
    customer_id: str,
    *,
    email: object,
    name: object,
    phone: object,
    country: object,
    locales: object,
    payment_method: str | None = None,
) -> CustomerProfile:
    """A profile with only the usable details set: a malformed one is left out (the store
    keeps what it had), never a reason to drop the event."""
    given: dict[str, str] = {}
    if isinstance(email, str):
        with suppress(ValidationError):
            given["email"] = str(_EMAIL.validate_python(email.strip()))
    if isinstance(name, str) and name.strip():
        given["name"] = name.strip()[:200]
    if isinstance(phone, str) and (number := _e164(phone, country)):
        given["phone"] = number
    if isinstance(locales, list):
        usable = [loc for loc in locales if isinstance(loc, str) and _LOCALE.match(loc)]
        if usable:
            given["locale"] = usable[0]
    if isinstance(country, str) and country.strip().upper() in country_codes():
        given["country"] = country.strip().upper()
    if payment_method:
        given["payment_method"] = payment_method
    return CustomerProfile(customer_id=customer_id, **given)


def _e164(phone: str, country: object) -> str | None:
    """A phone number as E.164 (+81312345678), read in the customer's country when it has no
    +prefix; None when it cannot be a phone number there."""
    region = country.upper() if isinstance(country, str) and len(country) == 2 else None
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _id(value: object, where: str, required: bool = False) -> str | None:
    """The id of an expandable field (an id or an expanded object), checked."""
    if isinstance(value, dict):
        value = value.get("id")
    if value is None or value == "":
        if required:
            raise UnreadableEvent(f"data.object.{where}: missing")
        return None
    if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value):
        raise UnreadableEvent(f"data.object.{where}: not an id")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
