"""Opening dunning cases for billing events: one failed invoice, one case.

From Python: `await CaseOpener.from_settings(settings).start(client, store, BillingEvent(...))`
(or `start_case(client, settings, store, event)` for a one-off). Contact details in the event
go to the store; the workflow only ever sees ids and amounts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.store import CaseStore, CustomerProfile
from config.policies import PolicyError, find_policy, load_policies, load_segments
from config.settings import Settings
from intake.client import case_run_status
from intake.events import BillingEvent, InvalidEvent
from workflows.dunning import DunningWorkflow, signal_name
from workflows.models import CaseInput, Failure, PaymentFailed, PolicyRef
from workflows.money import format_money
from workflows.policy import DeclineCodes, Policy
from workflows.policy_versions import POLICY_VERSIONS
from workflows.search import initial_search_attributes
from workflows.segments import Assignment, CaseFacts, SegmentRules


class StartResult(BaseModel):
    """What a start did: `started` is False when the invoice already has a case."""

    workflow_id: str
    case_id: str
    started: bool
    message: str
    signalled: bool = Field(
        default=False, description="A running case was told of the failure instead."
    )
    finished: bool = Field(default=False, description="The invoice's case has already ended.")


def workflow_id_for(case_id: str) -> str:
    """``dunning-<case id>``, always: a fixed prefix on every id keeps the mapping one to one,
    so invoice ``dunning-in_1`` (workflow ``dunning-dunning-in_1``) never meets ``in_1``'s."""
    return f"dunning-{case_id}"


class CaseOpener:
    """Turns a checked billing event into a case start. Holds the policies and segment rules,
    read once when it is built (`from_settings`), so a burst of events reads no files.
    Safe to share between requests and threads: after it is built it only notes which
    policy versions it has saved to the store.

    Each case is pinned to its policy's content hash (`PolicyRef`); the version goes into the
    process's registry here and into the store's `policy_versions` before its first case
    starts, so a worker anywhere can read it and no case carries its policy in its history."""

    def __init__(self, settings: Settings, policies: list[Policy], segments: SegmentRules):
        self.settings = settings
        self.policies = policies
        self.segments = segments
        self.hashes = {
            (policy.name, policy.version): POLICY_VERSIONS.add(policy).hash for policy in policies
        }
        self._saved: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> CaseOpener:
        """An opener with the policies and segment rules the settings name; `PolicyError`
        when a file is missing or breaks a rule."""
        policies = load_policies(settings.policies_dir, settings.declines_file)
        return cls(settings, policies, load_segments(settings.segments_file, policies))

    def case_input(self, event: BillingEvent) -> CaseInput:
        """The workflow's input for an event: the policy the event names, else the one its
        segment (and A/B variant) gives, with the version pinned now. `InvalidEvent` when
        the event names a policy or version there is none of."""
        now = datetime.now(UTC)
        failure = Failure(
            **event.model_dump(include=set(DeclineCodes.model_fields)),
            failed_at=event.failed_at or now,
        )
        if event.policy is not None:
            assignment = Assignment(segment="named by the event", policy=event.policy)
        else:
            facts = CaseFacts(
                plan=event.plan,
                amount=event.amount_due,
                currency=event.currency.upper(),
                tenure_days=event.tenure_days,
                lifetime_value=event.lifetime_value,
                region=event.region,
                decline_class=self.policies[0].declines.classify(failure),
            )
            assignment = self.segments.assign(facts, event.customer.customer_id)
        try:
            policy = find_policy(self.policies, assignment.policy, event.policy_version)
        except PolicyError as err:
            field = "policy" if event.policy_version is None else "policy_version"
            raise InvalidEvent(f"{field}: {err}") from err
        return CaseInput(
            case_id=event.invoice_id,
            invoice_id=event.invoice_id,
            customer_id=event.customer.customer_id,
            amount_due=event.amount_due,
            currency=event.currency,
            failure=failure,
            # A failure that reaches us late starts its schedule now: its first reminder, not a
            # burst of the steps it missed.
            schedule_from=max(failure.failed_at, now),
            policy_name=policy.name,
            policy_version=policy.version,
            policy_hash=self.hashes[policy.name, policy.version],
            payment_method=event.customer.payment_method,
            subscription_id=event.subscription_id,
            segment=assignment.segment,
            variant=assignment.variant,
        )

    async def start(
        self,
        client: Client,
        store: CaseStore,
        event: BillingEvent,
        failure: PaymentFailed | None = None,
        case: CaseInput | None = None,
    ) -> StartResult:
        """Open a case for a failed invoice, at most once per invoice.

        With `failure`, the start is a signal-with-start of `payment_failed`: a new case opens
        with it, a running case is told of it (`signalled`), and a finished case is left alone
        (`finished`). Without, a second start for the invoice is refused (`started` False).
        `case` is the event's `case_input`, when the caller has checked it already."""
        case = case or self.case_input(event)
        # Off the event loop: a receiver's other requests go on while the store writes.
        await asyncio.to_thread(store.upsert_customer, customer_of(event))
        if case.policy_hash not in self._saved:  # a new version is stored once per opener
            await asyncio.to_thread(self._save_policy_version, store, case)
        workflow_id = workflow_id_for(case.invoice_id)
        answer = partial(StartResult, workflow_id=workflow_id, case_id=case.case_id)
        amount = format_money(case.amount_due, case.currency)
        running = failure is not None and await _running(client, workflow_id)
        try:
            await client.start_workflow(
                DunningWorkflow.run,
                case,
                id=workflow_id,
                task_queue=self.settings.task_queue,
                search_attributes=initial_search_attributes(case),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # A signal-with-start uses the running workflow; a plain start must not.
                id_conflict_policy=(
                    WorkflowIDConflictPolicy.FAIL
                    if failure is None
                    else WorkflowIDConflictPolicy.USE_EXISTING
                ),
                start_signal=None if failure is None else signal_name(PaymentFailed),
                # A worker in this process (`dunning worker --serve`) takes the first workflow
                # task in the start's reply, a round trip through the task queue sooner.
                request_eager_start=failure is None,
                start_signal_args=[] if failure is None else [failure],
                static_summary=(
                    f"Invoice {case.invoice_id} · {amount} · "
                    f"{case.policy_name} v{case.policy_version}"
                ),
                static_details=(
                    f"**Customer** {case.customer_id}  \n"
                    f"**Failed** {case.failure.failed_at:%Y-%m-%d %H:%M} UTC, "
                    f"decline `{case.failure.decline_code or 'unknown'}`"
                ),
            )
        except WorkflowAlreadyStartedError:
            if failure is not None:  # only a closed workflow refuses a signal-with-start
                message = f"invoice {case.invoice_id}'s case {workflow_id} has already ended"
                return answer(started=False, finished=True, message=message)
            message = f"invoice {case.invoice_id} already has a case ({workflow_id}): not started"
            return answer(started=False, message=message)
        if running:
            message = f"told the running case {workflow_id} of another failed payment"
            return answer(started=False, signalled=True, message=message)
        message = f"started {workflow_id}: {amount} on {case.policy_name} v{case.policy_version}"
        return answer(started=True, message=message)

    def _save_policy_version(self, store: CaseStore, case: CaseInput) -> None:
        """Save the case's policy version to the store, once per version and opener."""
        if case.policy_hash is None or case.policy_hash in self._saved:
            return
        ref = PolicyRef(name=case.policy_name, version=case.policy_version, hash=case.policy_hash)
        store.save_policy_version(POLICY_VERSIONS.get(ref))
        self._saved.add(case.policy_hash)


def customer_of(event: BillingEvent) -> CustomerProfile:
    """The event's customer, their country (what message timing learns per) taken from the
    card's issuing country when the event does not say where they are."""
    customer = event.customer
    if customer.country is None and event.card_country is not None:
        return customer.model_copy(update={"country": event.card_country})
    return customer


def case_input(event: BillingEvent, settings: Settings) -> CaseInput:
    """`CaseOpener.case_input` for one event, the policy files read for it."""
    return CaseOpener.from_settings(settings).case_input(event)


async def start_case(
    client: Client,
    settings: Settings,
    store: CaseStore,
    event: BillingEvent,
    failure: PaymentFailed | None = None,
    case: CaseInput | None = None,
) -> StartResult:
    """`CaseOpener.start` for one event, the policy files read for it; a caller that starts
    many cases builds one `CaseOpener` and keeps it."""
    return await CaseOpener.from_settings(settings).start(client, store, event, failure, case)


async def _running(client: Client, workflow_id: str) -> bool:
    """True when the workflow exists and is running (only to say what a start did)."""
    return await case_run_status(client, workflow_id) == WorkflowExecutionStatus.RUNNING
