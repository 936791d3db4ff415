"""A received billing event, read: what it is about and what it asks of dunning cases.

Readers (`stripe_events`, `billing_events`) turn a provider's payload into an `Intake`
without I/O; `cases.CaseDesk` carries it out against the store and Temporal. Only ids,
amounts and codes go to workflows; contact details go to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from activities.store import CustomerProfile
from intake.events import BillingEvent, InvalidEvent
from workflows.dunning import signal_name
from workflows.models import PaymentFailed

# Event types, as each provider names them, that open a case.
OPENING_TYPES = ["invoice.payment_failed", "invoice.payment_action_required", "payment_failed"]


class UnreadableEvent(InvalidEvent):
    """An authentic event whose content cannot become an action; the message names why."""


@dataclass(frozen=True)
class OpenCase:
    """Open the invoice's case, or tell its running case of the failure (signal-with-start).

    `event.customer` holds only the contact fields the provider gave (its `model_fields_set`);
    they are merged over what the store already knows about the customer."""

    event: BillingEvent
    failure: PaymentFailed


@dataclass(frozen=True)
class TellCases:
    """Send one of DunningWorkflow's signals to the cases the event is about.

    The first target given wins: the invoice's case; else the case that made one of the
    charges; else every open case of the subscription; else of the customer."""

    payload: BaseModel
    invoice_id: str | None = None
    charge_references: tuple[str, ...] = ()
    subscription_id: str | None = None
    customer_id: str | None = None

    @property
    def signal(self) -> str:
        """The signal that carries the payload (see `workflows.dunning.SIGNALS`)."""
        return signal_name(type(self.payload))

    def describe_target(self) -> str:
        """What the event is about, for details: ``invoice in_1``, ``customer cus_9``."""
        if self.invoice_id:
            return f"invoice {self.invoice_id}"
        if self.charge_references:
            return f"charge {', '.join(self.charge_references)}"
        if self.subscription_id:
            return f"subscription {self.subscription_id}"
        return f"customer {self.customer_id}"


@dataclass(frozen=True)
class Ignore:
    """Nothing to do; `reason` is stored with the event."""

    reason: str


Action = OpenCase | TellCases | Ignore


@dataclass(frozen=True)
class Intake:
    """One authentic billing event, read."""

    provider: str
    event_id: str
    type: str
    occurred_at: datetime
    action: Action
    invoice_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    # Newer contact details (only the fields set) for a customer the store already knows.
    contacts: CustomerProfile | None = None
