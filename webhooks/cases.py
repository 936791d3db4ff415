"""Carry out what a billing event asks of dunning cases: open one, or signal some.

Temporal trouble is `TemporalUnavailable` (the receiver answers 503 and keeps the event
pending for the redelivery); a case that has finished or never existed is an `Outcome` of
IGNORED, never an error: billers send events about invoices dunning never saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import stripe
from pydantic import ValidationError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.payments import GatewayConfigError
from activities.payments.stripe import StripeProcessor
from activities.store import CaseStore, CustomerProfile, WebhookEventStatus
from config.errors import one_line
from config.settings import Settings
from intake.cases import CaseOpener, workflow_id_for
from intake.client import case_run_status
from intake.events import BillingEvent
from webhooks.intake import OPENING_TYPES, Ignore, Intake, OpenCase, TellCases
from workflows.dunning import DunningWorkflow
from workflows.models import CaseView

log = logging.getLogger("dunning.webhooks")

ClientProvider = Callable[[], Awaitable[Client]]
"""An async callable giving a connected Temporal client; it raises when none can be had."""

# Statuses that mean the cluster could not answer now; a later delivery may succeed.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.INTERNAL,
    RPCStatusCode.UNKNOWN,
}


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached or could not answer; the event stays pending."""


class CaseRefused(Exception):
    """The case refused a request: its update's validator gave this reason."""


class CaseClosed(Exception):
    """The case's workflow has finished (or never ran): it takes no more requests."""


@dataclass(frozen=True)
class Outcome:
    """What became of an event: PROCESSED or IGNORED, and a line saying why."""

    status: WebhookEventStatus
    detail: str


class CaseDesk:
    """Opens and signals dunning cases for billing events; holds the store, a way to reach
    Temporal and the case opener. Safe to share between requests."""

    def __init__(
        self,
        settings: Settings,
        client_provider: ClientProvider,
        store: CaseStore,
        opener: CaseOpener | None = None,
    ):
        self.settings = settings
        self.client_provider = client_provider
        self.store = store
        self._opener = opener
        # Asked for the decline a Stripe webhook does not carry (webhooks expand nothing).
        self.stripe = (
            StripeProcessor.from_settings(settings) if settings.gateway == "stripe" else None
        )

    async def act(self, intake: Intake) -> Outcome:
        """Carry out `intake`; raise `TemporalUnavailable` when Temporal is out of reach."""
        if intake.contacts is not None:
            await asyncio.to_thread(self._refresh_contacts, intake.contacts)
        match intake.action:
            case Ignore(reason=reason):
                return Outcome(WebhookEventStatus.IGNORED, reason)
            case OpenCase():
                return await self._open(intake, intake.action)
            case TellCases():
                return await self._tell(intake.action)
        raise AssertionError(f"unknown action {intake.action!r}")

    async def ask(
        self, case_id: str, update: Callable, payload: object, update_id: str | None = None
    ) -> CaseView:
        """Carry out a workflow update on the case (the customer's pages, support) and return
        the case's answer. `update_id` makes a repeated request (a double click) the same
        request. `CaseRefused` with the case's reason, `CaseClosed`, or `TemporalUnavailable`."""
        client = await self.client()
        handle = client.get_workflow_handle_for(DunningWorkflow.run, workflow_id_for(case_id))
        try:
            with _reaching_temporal():
                return await handle.execute_update(update, payload, id=update_id)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise CaseRefused(one_line(reason, 300)) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise CaseClosed(case_id) from err
            raise TemporalUnavailable(f"Temporal did not answer: {one_line(err)}") from err

    @property
    def opener(self) -> CaseOpener:
        """The given opener, else one built from the settings at the first case opened (a
        receiver with a broken policy file still starts, and answers for other events)."""
        if self._opener is None:
            self._opener = CaseOpener.from_settings(self.settings)
        return self._opener

    async def client(self) -> Client:
        """The Temporal client, or `TemporalUnavailable`."""
        try:
            return await self.client_provider()
        except Exception as err:
            raise TemporalUnavailable(f"Temporal is unreachable: {one_line(err)}") from err

    # Opening -------------------------------------------------------------------------------

    async def _open(self, intake: Intake, action: OpenCase) -> Outcome:
        event = action.event
        settled = await asyncio.to_thread(
            self.store.invoice_settlement, event.invoice_id, intake.occurred_at, event.amount_due
        )
        if settled is not None:
            # Events arrive out of order: a failure reported after the invoice was settled
            # must not open a case that would charge the customer again. (One that arrives
            # while the case starts is caught by the case's own check before each step.)
            return Outcome(
                WebhookEventStatus.IGNORED,
                f"invoice {event.invoice_id} was settled by {settled.source} "
                "at or after this failure: no case opened",
            )
        if event.decline_code is None and self.stripe is not None and intake.provider == "stripe":
            action = await self._with_decline(self.stripe, action)
            event = action.event
        # The policy it names must exist before Temporal is asked: a bad one is rejected.
        case = await asyncio.to_thread(lambda: self.opener.case_input(event))
        merged = await asyncio.to_thread(self._merged, event.customer)
        event = event.model_copy(update={"customer": merged})
        client = await self.client()
        with _reaching_temporal():
            started = await self.opener.start(client, self.store, event, action.failure, case)
        status = WebhookEventStatus.IGNORED if started.finished else WebhookEventStatus.PROCESSED
        return Outcome(status, started.message)

    async def _with_decline(self, gateway: StripeProcessor, action: OpenCase) -> OpenCase:
        """The failure with the decline Stripe keeps apart from the webhook; unchanged (the
        decline unknown) when Stripe cannot say: the event must not be lost for it."""
        invoice_id = action.event.invoice_id
        try:
            codes = await asyncio.to_thread(gateway.invoice_decline, invoice_id)
            if codes is None:
                return action
            found = codes.model_dump(exclude_none=True)
            event = BillingEvent.model_validate(action.event.model_dump(exclude_unset=True) | found)
        except (stripe.StripeError, GatewayConfigError, ValidationError) as err:
            log.warning("decline of invoice %s unknown: %s", invoice_id, one_line(err))
            return action
        return dataclasses.replace(
            action, event=event, failure=action.failure.model_copy(update=found)
        )

    def _merged(self, given: CustomerProfile) -> CustomerProfile:
        """The stored profile with the fields the event gave laid over it."""
        stored = self.store.get_customer(given.customer_id)
        if stored is None:
            return given
        return stored.model_copy(update=given.model_dump(include=given.model_fields_set))

    def _refresh_contacts(self, contacts: CustomerProfile) -> None:
        """Newer contact details of a customer dunning knows; others are not stored."""
        if self.store.get_customer(contacts.customer_id) is not None:
            self.store.upsert_customer(self._merged(contacts))

    # Signalling ----------------------------------------------------------------------------

    async def _tell(self, action: TellCases) -> Outcome:
        case_ids = await asyncio.to_thread(self._targets, action)
        if not case_ids:
            return Outcome(WebhookEventStatus.IGNORED, f"no case for {action.describe_target()}")
        client = await self.client()
        told, ended = [], []
        with _reaching_temporal():
            for case_id in case_ids:
                handle = client.get_workflow_handle(workflow_id_for(case_id))
                try:
                    await handle.signal(action.signal, action.payload)
                except RPCError as err:
                    # Not found: the case has finished (signals are refused) or never was.
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    if await case_run_status(client, handle.id) is not None:
                        ended.append(handle.id)
                    continue
                told.append(handle.id)
        if told:
            detail = f"sent {action.signal} to {', '.join(told)}"
            return Outcome(WebhookEventStatus.PROCESSED, detail)
        if ended:
            detail = f"{', '.join(ended)} already ended: {action.signal} not sent"
            return Outcome(WebhookEventStatus.IGNORED, detail)
        return Outcome(WebhookEventStatus.IGNORED, f"no case for {action.describe_target()}")

    def _targets(self, action: TellCases) -> list[str]:
        if action.invoice_id:
            return [action.invoice_id]
        if action.charge_references:
            return self.store.case_ids_for_charges(list(action.charge_references))
        if action.subscription_id:
            return self.store.open_case_ids(
                subscription_id=action.subscription_id, opened_by=tuple(OPENING_TYPES)
            )
        if action.customer_id:
            return self.store.open_case_ids(
                customer_id=action.customer_id, opened_by=tuple(OPENING_TYPES)
            )
        return []


@contextmanager
def _reaching_temporal() -> Iterator[None]:
    """Turn trouble reaching the cluster into `TemporalUnavailable`; other errors pass."""
    try:
        yield
    except RPCError as err:
        if err.status in _TRANSIENT:
            raise TemporalUnavailable(f"Temporal did not answer: {one_line(err)}") from err
        raise
    except RuntimeError as err:
        if "connect" in str(err).lower():  # the SDK's "Failed client connect: ..."
            raise TemporalUnavailable(f"Temporal is unreachable: {one_line(err)}") from err
        raise
