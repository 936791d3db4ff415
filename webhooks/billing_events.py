"""The provider-neutral billing event of POST /events, for billers other than Stripe.

One JSON object per request, signed with `Dunning-Signature` (see `activities.signing`):

    {"id": "evt_81", "type": "payment_failed", "created": "2026-11-23T10:00:00Z",
     "data": {"invoice_id": "inv_81", "customer": {"customer_id": "c_7", "email": "a@b.c"},
              "amount_due": 4900, "currency": "USD", "decline_code": "insufficient_funds"}}

`id` makes redelivery safe (a repeated id is a duplicate); `created` orders events that
arrive out of order. The JSON Schema is published at config/billing-event.schema.json:

    python -m webhooks.billing_events > config/billing-event.schema.json
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
)
from pydantic_core import from_json

from config.errors import explain, one_line
from config.settings import CONFIG_DIR
from intake.events import BillingEvent, check_failed_at, check_occurred
from webhooks.intake import Intake, OpenCase, TellCases, UnreadableEvent
from workflows.models import (
    ID_PATTERN,
    CancelRequest,
    DisputeOpened,
    DisputeResolved,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentReceived,
)
from workflows.policy import DeclineCodes
from workflows.values import MinorAmount

PROVIDER = "billing"
SCHEMA_FILE = CONFIG_DIR / "billing-event.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Event(_Strict):
    id: str = Field(
        pattern=ID_PATTERN, description="Unique per event; a repeated id is a duplicate."
    )
    created: Annotated[AwareDatetime, AfterValidator(check_occurred)] = Field(
        description="When it happened at the biller: ISO-8601 with an offset, or unix seconds; "
        "not in the future."
    )
    source: str = Field(
        default="biller",
        pattern=r"^[a-z0-9_.-]{1,50}$",
        description="Who sent it (e.g. chargebee); the actor in case timelines.",
    )


class PaymentSucceeded(_Strict):
    """The invoice was paid at the biller; the full amount recovers its case."""

    invoice_id: str = Field(pattern=ID_PATTERN)
    amount: MinorAmount
    reference: str = Field(default="", max_length=200, description="The biller's payment id.")


class InvoiceVoided(_Strict):
    """The invoice no longer needs paying: its case is cancelled."""

    invoice_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(default="invoice voided", min_length=1, max_length=500)


class SubscriptionCancelled(_Strict):
    """The subscription ended: every open case of it is cancelled."""

    subscription_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(default="subscription cancelled", min_length=1, max_length=500)


class DisputeOpenedData(_Strict):
    """A chargeback on the invoice: its case stops charging and messaging."""

    invoice_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(default="", max_length=400)


class DisputeClosedData(_Strict):
    """The dispute ended: won resumes the case, lost cancels it."""

    invoice_id: str = Field(pattern=ID_PATTERN)
    won: bool


class PaymentMethodChanged(_Strict):
    """The customer has a new payment method: every open case of theirs charges it soon."""

    customer_id: str = Field(pattern=ID_PATTERN)
    payment_method: str | None = Field(default=None, pattern=ID_PATTERN)


class PaymentFailedEvent(_Event):
    """A payment of an invoice failed: open its case (a running case is told instead)."""

    type: Literal["payment_failed"]
    data: BillingEvent


class PaymentSucceededEvent(_Event):
    """An invoice was paid at the biller."""

    type: Literal["payment_succeeded"]
    data: PaymentSucceeded


class InvoiceVoidedEvent(_Event):
    """An invoice was voided or written off."""

    type: Literal["invoice_voided"]
    data: InvoiceVoided


class SubscriptionCancelledEvent(_Event):
    """A subscription was cancelled."""

    type: Literal["subscription_cancelled"]
    data: SubscriptionCancelled


class DisputeOpenedEvent(_Event):
    """A dispute (chargeback) was opened on the invoice's payment."""

    type: Literal["dispute_opened"]
    data: DisputeOpenedData


class DisputeClosedEvent(_Event):
    """A dispute was closed."""

    type: Literal["dispute_closed"]
    data: DisputeClosedData


class PaymentMethodUpdatedEvent(_Event):
    """A customer's payment method changed."""

    type: Literal["payment_method_updated"]
    data: PaymentMethodChanged


class NeutralEvent(
    RootModel[
        Annotated[
            PaymentFailedEvent
            | PaymentSucceededEvent
            | InvoiceVoidedEvent
            | SubscriptionCancelledEvent
            | DisputeOpenedEvent
            | DisputeClosedEvent
            | PaymentMethodUpdatedEvent,
            Field(discriminator="type"),
        ]
    ]
):
    """A billing event for dunning from any biller, told apart by `type`."""


EVENT_TYPES = [
    "payment_failed",
    "payment_succeeded",
    "invoice_voided",
    "subscription_cancelled",
    "dispute_opened",
    "dispute_closed",
    "payment_method_updated",
]


def json_schema() -> dict:
    """The JSON Schema of `NeutralEvent`, as published in config/billing-event.schema.json."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **NeutralEvent.model_json_schema(),
    }


class Envelope(BaseModel):
    """What names an event, read before its content: enough to store a refusal of it."""

    id: str = Field(pattern=ID_PATTERN)
    type: str = Field(min_length=1, max_length=100)
    created: Annotated[AwareDatetime, AfterValidator(check_occurred)]


def envelope(raw: bytes) -> tuple[Envelope, dict]:
    """The event's envelope and its body as JSON; `ValueError` naming the wrong field when
    the body names no event (such a body cannot even be stored as rejected)."""
    try:
        payload = from_json(raw)
    except ValueError as err:
        raise ValueError(f"malformed JSON ({one_line(err, 200)})") from err
    if not isinstance(payload, dict):
        raise ValueError("the body is not a JSON object")
    try:
        return Envelope.model_validate(payload), payload
    except ValidationError as err:
        raise ValueError(explain(err, tags=EVENT_TYPES)) from err


def parse(raw: bytes) -> NeutralEvent:
    """The event in a request body; `ValueError` naming the wrong field otherwise."""
    try:
        return NeutralEvent.model_validate_json(raw)
    except ValidationError as err:
        raise ValueError(explain(err, tags=EVENT_TYPES)) from err


def read_neutral_event(event: NeutralEvent) -> Intake:
    """What a neutral event asks of dunning cases."""
    item = event.root
    actor = item.source
    common = {
        "provider": PROVIDER,
        "event_id": item.id,
        "type": item.type,
        "occurred_at": item.created,
    }
    match item:
        case PaymentFailedEvent(data=failed):
            if failed.failed_at is None:
                try:
                    failed_at = check_failed_at(item.created)
                except ValueError as err:
                    raise UnreadableEvent(f"created: {err}") from err
                failed = failed.model_copy(update={"failed_at": failed_at})
            codes = failed.model_dump(include=set(DeclineCodes.model_fields))
            open_case = OpenCase(event=failed, failure=PaymentFailed(**codes, actor=actor))
            return Intake(
                **common,
                action=open_case,
                invoice_id=failed.invoice_id,
                customer_id=failed.customer.customer_id,
                subscription_id=failed.subscription_id,
            )
        case PaymentSucceededEvent(data=paid):
            payment = PaymentReceived(
                amount=paid.amount, reference=paid.reference, actor=actor, paid_at_biller=True
            )
            tell = TellCases(payment, invoice_id=paid.invoice_id)
            return Intake(**common, action=tell, invoice_id=paid.invoice_id)
        case InvoiceVoidedEvent(data=voided):
            cancel = CancelRequest(reason=voided.reason, actor=actor)
            tell = TellCases(cancel, invoice_id=voided.invoice_id)
            return Intake(**common, action=tell, invoice_id=voided.invoice_id)
        case SubscriptionCancelledEvent(data=ended):
            cancel = CancelRequest(reason=ended.reason, actor=actor)
            tell = TellCases(cancel, subscription_id=ended.subscription_id)
            return Intake(**common, action=tell, subscription_id=ended.subscription_id)
        case DisputeOpenedEvent(data=dispute):
            opened = DisputeOpened(reason=dispute.reason, actor=actor)
            tell = TellCases(opened, invoice_id=dispute.invoice_id)
            return Intake(**common, action=tell, invoice_id=dispute.invoice_id)
        case DisputeClosedEvent(data=dispute):
            resolved = DisputeResolved(won=dispute.won, actor=actor)
            tell = TellCases(resolved, invoice_id=dispute.invoice_id)
            return Intake(**common, action=tell, invoice_id=dispute.invoice_id)
        case PaymentMethodUpdatedEvent(data=method):
            update = PaymentMethodUpdated(payment_method=method.payment_method, actor=actor)
            tell = TellCases(update, customer_id=method.customer_id)
            return Intake(**common, action=tell, customer_id=method.customer_id)
    raise AssertionError(f"unhandled event type {item.type}")  # every type is matched above


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
