"""Every outcome path the issue bounds the cost of, driven on the time-skipping server, and
what each case cost, counted from its real history (`analytics.actions`).

Used by `tests/workflow/test_actions.py` (the bound) and `bench/actions.py` (the figures);
imported as `tests.workflow.cost_paths`, never from `conftest`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from analytics.actions import CaseCost, billable_actions, case_cost
from tests.support.harness import Dunning, status_when
from workflows.conversation import OUTCOME_GATHER
from workflows.dunning import DunningWorkflow
from workflows.models import (
    CaseStatus,
    PauseRequest,
    PaymentReceived,
    PlanChosen,
    ResumeRequest,
)
from workflows.policy import Outcome

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
STOLEN_CARD = "pm_card_chargeDeclinedStolenCard"
RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"
SUPPORT = "support:bench"
CONVERSING = "cus_conversing"
"""The customer of the `conversation` path."""
INTERNAL_SIGNALS = {"conversation_reply"}
"""Signals one workflow of ours sends another: billed, but no support action."""

Drive = Callable[[Dunning], Awaitable[tuple[WorkflowHandle, Outcome]]]


async def reminded(handle: WorkflowHandle) -> None:
    """Until the day-0 reminder went out and the case settled into its first wait."""
    await status_when(handle, lambda v: len(v.messages) >= 1 and v.next_step == "wait", "waiting")


async def recovered_on_retry(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """The first retry declines, the second is approved."""
    return await dunning.start(await dunning.open_case(RECOVERS_ON_2)), Outcome.RECOVERED


async def recovered_by_signal(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """Support records the full payment while the case waits for its first retry."""
    handle = await dunning.start(await dunning.open_case(SOFT_DECLINE))
    await reminded(handle)
    payment = PaymentReceived(amount=4980, reference="bank-1", actor=SUPPORT)
    await handle.signal(DunningWorkflow.payment_received, payment)
    return handle, Outcome.RECOVERED


async def hard_decline(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """A stolen card: no more retries; no new method comes, so collections."""
    return await dunning.start(await dunning.open_case(STOLEN_CARD)), Outcome.COLLECTIONS


async def full_schedule(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """Every retry declines: reminders, final notice, collections."""
    return await dunning.start(await dunning.open_case(SOFT_DECLINE)), Outcome.COLLECTIONS


async def paused_and_resumed(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """Support pauses the case for five days, resumes it, and the schedule runs out."""
    handle = await dunning.start(await dunning.open_case(SOFT_DECLINE))
    await reminded(handle)
    await handle.signal(DunningWorkflow.pause, PauseRequest(reason="ticket 1", actor=SUPPORT))
    await status_when(handle, lambda v: v.status is CaseStatus.PAUSED, "the pause")
    await dunning.env.sleep(timedelta(days=5))
    await handle.signal(DunningWorkflow.resume, ResumeRequest(actor=SUPPORT))
    return handle, Outcome.COLLECTIONS


async def payment_plan(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """The customer chooses two installments; each is charged on its day."""
    handle = await dunning.start(await dunning.open_case("pm_card_visa"))
    await reminded(handle)
    await handle.execute_update(DunningWorkflow.choose_plan, PlanChosen(installments=2))
    return handle, Outcome.RECOVERED


async def conversation(dunning: Dunning) -> tuple[WorkflowHandle, Outcome]:
    """The full schedule on a policy whose reminders go through the customer's conversation
    (smart v3): each reminder is one hand-over activity, which answers what became of it.
    Its own customer, so the other paths' messages to theirs leave its weekly budget alone
    (a reminder waiting for the budget hears its reply by signal: one action more)."""
    case = await dunning.open_case(SOFT_DECLINE)
    dunning.customer(SOFT_DECLINE, customer_id=CONVERSING)
    update = {"policy_name": "smart", "policy_version": 3, "customer_id": CONVERSING}
    case = case.model_copy(update=update)
    return await dunning.start(case), Outcome.COLLECTIONS


PATHS: dict[str, Drive] = {
    path.__name__: path
    for path in [
        recovered_on_retry,
        recovered_by_signal,
        hard_decline,
        full_schedule,
        paused_and_resumed,
        payment_plan,
        conversation,
    ]
}


async def case_events(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The events of every run of a finished case, first run first (a plan continues as new)."""
    runs, run_id = [], None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.insert(0, history.events)
        started = history.events[0].workflow_execution_started_event_attributes
        if not (run_id := started.continued_execution_run_id):
            break
    return [event for events in runs for event in events]


def support_actions(events: list[HistoryEvent]) -> int:
    """Signals and updates from outside the case: billers, support, the customer."""
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    updates = [
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    return sum(name not in INTERNAL_SIGNALS for name in signals) + len(updates)


async def conversation_actions(dunning: Dunning, customer_id: str = CONVERSING) -> Counter[str]:
    """The billable actions of a customer's conversation (`CustomerWorkflow`, every run),
    once its last case left and it closed. They are shared by all of the customer's cases,
    so they are no case's own: the bench prints them beside the case, divided among the
    cases the conversation served."""
    handle = dunning.env.client.get_workflow_handle(f"customer-{customer_id}")
    # A handle got by id does not skip time: skip the outcome message's gathering by hand.
    await dunning.env.sleep(OUTCOME_GATHER + timedelta(seconds=5))
    await handle.result()
    return billable_actions(await case_events(dunning.env.client, handle.id))


async def run_path(dunning: Dunning, name: str) -> tuple[CaseCost, Counter[str]]:
    """Drive one path to its outcome (a worker must be running) and count what it cost."""
    handle, expected = await PATHS[name](dunning)
    result = await handle.result()
    if result.outcome is not expected:
        raise AssertionError(f"{name}: ended {result.outcome}, expected {expected}")
    view = await handle.query(DunningWorkflow.status)
    events = await case_events(dunning.env.client, handle.id)
    steps = len(view.attempts) + len(view.messages)
    return case_cost(events, steps, support_actions(events)), billable_actions(events)
