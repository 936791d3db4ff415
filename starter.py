"""Start dunning cases from billing events: one failed invoice, one case.

    dunning start event.json        # or - for stdin, or flags: see `dunning start --help`

From Python: `await start_case(client, settings, store, BillingEvent(...))`. Contact details
in the event go to the store; the workflow only ever sees ids and amounts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import CaseStore, CustomerProfile
from config.policies import PolicyError, find_policy, load_policies, load_segments
from config.settings import Settings
from workflows.dunning import DunningWorkflow
from workflows.models import ID_PATTERN, CaseInput, Failure, PaymentFailed
from workflows.money import format_money
from workflows.policy import DeclineCodes
from workflows.search import initial_search_attributes
from workflows.segments import Assignment, CaseFacts
from workflows.values import (
    MAX_AMOUNT,
    MAX_CLOCK_SKEW,
    MAX_FAILURE_AGE,
    CountryCode,
    Currency,
    MinorAmount,
)

# Decline, advice and network codes and card brands: short printable tokens, nothing else.
CODE_PATTERN = r"^[A-Za-z0-9_.-]+$"


def check_occurred(at: datetime, now: datetime | None = None) -> datetime:
    """`at` if it is not further ahead of now than `MAX_CLOCK_SKEW`; ValueError otherwise."""
    now = now or datetime.now(UTC)
    if at > now + MAX_CLOCK_SKEW:
        raise ValueError(
            f"{at:%Y-%m-%dT%H:%M:%SZ} is in the future (more than "
            f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead of our clock)"
        )
    return at


def check_failed_at(at: datetime, now: datetime | None = None) -> datetime:
    """A failure time within the window a case can open on: at most `MAX_CLOCK_SKEW` ahead
    and `MAX_FAILURE_AGE` behind now; ValueError otherwise."""
    now = now or datetime.now(UTC)
    check_occurred(at, now)
    if at < now - MAX_FAILURE_AGE:
        raise ValueError(
            f"{at:%Y-%m-%dT%H:%M:%SZ} is more than {MAX_FAILURE_AGE.days} days ago: "
            "too old to open a case"
        )
    return at


class InvalidEvent(ValueError):
    """A billing event whose content breaks a rule; the message names the field and the rule.

    Final: the same content can never open a case, so it is recorded as rejected."""


class BillingEvent(BaseModel):
    """A failed invoice payment, as any billing system can describe it.

    The one model every door (POST /events, Stripe webhooks, `dunning start`, `start_case`)
    checks a failure against, so no value that passes can later break the case."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: str = Field(pattern=ID_PATTERN)
    subscription_id: str | None = Field(default=None, pattern=ID_PATTERN)
    customer: CustomerProfile
    amount_due: MinorAmount
    currency: Currency
    decline_code: str | None = Field(default=None, pattern=CODE_PATTERN, max_length=100)
    advice_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=100, description="Stripe's."
    )
    network_decline_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=20, description="Visa 05"
    )
    network_advice_code: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=20, description="MC 03"
    )
    card_brand: str | None = Field(
        default=None, pattern=CODE_PATTERN, max_length=30, description="visa, mastercard"
    )
    failed_at: AwareDatetime | None = Field(
        default=None,
        description=f"Defaults to now; at most {MAX_FAILURE_AGE.days} days ago and "
        f"{int(MAX_CLOCK_SKEW.total_seconds())} s ahead. The schedule starts when the case opens.",
    )
    policy: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_-]{1,50}$",
        description="Defaults to the one config/segments.toml gives the case.",
    )
    policy_version: int | None = Field(
        default=None, strict=True, ge=1, le=10_000, description="Defaults to the newest."
    )
    plan: str | None = Field(default=None, max_length=100, description="For segment rules.")
    tenure_days: int | None = Field(
        default=None, strict=True, ge=0, le=36_500, description="For segment rules."
    )
    lifetime_value: int | None = Field(
        default=None, strict=True, ge=0, le=MAX_AMOUNT * 1000, description="Minor units."
    )
    region: CountryCode | None = Field(default=None, description="For segment rules.")

    @field_validator("failed_at")
    @classmethod
    def _within_window(cls, value: datetime | None) -> datetime | None:
        return None if value is None else check_failed_at(value)


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


def case_input(event: BillingEvent, settings: Settings) -> CaseInput:
    """The workflow's input for an event: the policy the event names, else the one its
    segment (and A/B variant) gives, with the version pinned now."""
    policies = load_policies(settings.policies_dir, settings.declines_file)
    now = datetime.now(UTC)
    failure = Failure(
        **event.model_dump(include=set(DeclineCodes.model_fields)),
        failed_at=event.failed_at or now,
    )
    if event.policy is not None:
        assignment = Assignment(segment="named by the event", policy=event.policy)
    else:
        rules = load_segments(settings.segments_file, policies)
        facts = CaseFacts(
            plan=event.plan,
            amount=event.amount_due,
            currency=event.currency.upper(),
            tenure_days=event.tenure_days,
            lifetime_value=event.lifetime_value,
            region=event.region,
            decline_class=policies[0].declines.classify(failure),
        )
        assignment = rules.assign(facts, event.customer.customer_id)
    try:
        policy = find_policy(policies, assignment.policy, event.policy_version)
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
        payment_method=event.customer.payment_method,
        subscription_id=event.subscription_id,
        segment=assignment.segment,
        variant=assignment.variant,
    )


async def start_case(
    client: Client,
    settings: Settings,
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
    case = case or case_input(event, settings)
    store.upsert_customer(event.customer)
    workflow_id = workflow_id_for(case.invoice_id)
    answer = partial(StartResult, workflow_id=workflow_id, case_id=case.case_id)
    amount = format_money(case.amount_due, case.currency)
    running = failure is not None and await _running(client, workflow_id)
    try:
        await client.start_workflow(
            DunningWorkflow.run,
            case,
            id=workflow_id,
            task_queue=settings.task_queue,
            search_attributes=initial_search_attributes(case),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            # A signal-with-start uses the running workflow; a plain start must not.
            id_conflict_policy=(
                WorkflowIDConflictPolicy.FAIL
                if failure is None
                else WorkflowIDConflictPolicy.USE_EXISTING
            ),
            start_signal=None if failure is None else "payment_failed",
            start_signal_args=[] if failure is None else [failure],
            static_summary=(
                f"Invoice {case.invoice_id} · {amount} · {case.policy_name} v{case.policy_version}"
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


async def case_run_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the case's latest run, or None when there is no such case.

    Reads the raw description: decoding search attributes is not needed here, and the
    time-skipping test server hands back unset ones that `handle.describe()` cannot decode."""
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return WorkflowExecutionStatus(described.workflow_execution_info.status)


async def _running(client: Client, workflow_id: str) -> bool:
    """True when the workflow exists and is running (only to say what a start did)."""
    return await case_run_status(client, workflow_id) == WorkflowExecutionStatus.RUNNING


DEMO_CUSTOMERS = [
    ("ana", "Ana Souza", "pm_sim_recovers_on_attempt_2", 4900, "USD", "insufficient_funds"),
    ("ben", "Ben Carter", "pm_card_chargeDeclinedStolenCard", 1999, "EUR", "stolen_card"),
    ("chie", "Chie Sato", "pm_card_chargeDeclinedInsufficientFunds", 4980, "JPY", "do_not_honor"),
]


def demo_events(now: datetime) -> list[BillingEvent]:
    """Three cases on the demo policy: one recovers on retry 2, one waits for a new card
    after a hard decline, one goes to collections."""
    suffix = f"{now:%H%M%S}"
    return [
        BillingEvent(
            invoice_id=f"in_demo_{key}_{suffix}",
            customer=CustomerProfile(
                customer_id=f"cus_demo_{key}",
                name=name,
                email=f"{key}@example.com",
                payment_method=payment_method,
            ),
            amount_due=amount,
            currency=currency,
            decline_code=decline_code,
            failed_at=now,
            policy="demo",
        )
        for key, name, payment_method, amount, currency, decline_code in DEMO_CUSTOMERS
    ]


async def run_demo(client: Client, settings: Settings, store: CaseStore) -> list[StartResult]:
    """Start the demo cases and say where to watch them."""
    results = [
        await start_case(client, settings, store, event) for event in demo_events(datetime.now(UTC))
    ]
    for result in results:
        print(result.message, flush=True)
    print("Watch them in the Temporal UI; they finish within about a minute.", flush=True)
    return results
