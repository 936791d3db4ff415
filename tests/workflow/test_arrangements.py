"""Payment plans and promises to pay on the real time-skipping server: the updates the
recovery page calls, their refusals, installments across continue-as-new runs, and a promise
that holds the case until its date."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import FeedbackGiven, FeedbackReason, PlanChosen, PromiseToPay
from workflows.policy import Outcome


async def runs_of(dunning: Dunning, workflow_id: str) -> int:
    """How many runs the case has had: each continued run names the one before it."""
    client = dunning.env.client
    runs, run_id = 0, ""
    while True:
        runs += 1
        run = client.get_workflow_handle(workflow_id, run_id=run_id or None)
        history = await run.fetch_history()
        started = history.events[0]
        assert started.event_type is EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        run_id = started.workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            return runs


async def refused(update) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await update
    return str(caught.value.cause)


async def test_a_three_installment_plan_recovers_the_case_over_three_runs(dunning: Dunning):
    case = await dunning.open_case("pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        view = await status_when(handle, lambda v: bool(v.plan_offers), "the plan offers")
        assert [[i.amount for i in q.installments] for q in view.plan_offers] == [
            [2490, 2490],
            [1660, 1660, 1660],
        ]
        assert "no plan of 4 installments" in await refused(
            handle.execute_update(DunningWorkflow.choose_plan, PlanChosen(installments=4))
        )

        view = await handle.execute_update(DunningWorkflow.choose_plan, PlanChosen(installments=3))
        assert [i.amount for i in view.plan] == [1660, 1660, 1660]
        assert view.plan_offers == [] and view.promise_by is None
        result = await handle.result()

    assert (result.outcome, result.amount_recovered) == (Outcome.RECOVERED, 4980)
    paid = [e for e in result.timeline if e.kind == "installment_paid"]
    assert [e.detail for e in paid] == [f"installment {n} of 3: 1660" for n in (1, 2, 3)]
    assert abs(paid[2].at - paid[0].at - timedelta(days=60)) < timedelta(minutes=1)
    # Each paid installment but the last began a new run: three runs, each history small.
    assert await runs_of(dunning, handle.id) == 3
    assert len((await handle.fetch_history()).events) < 60


async def test_a_promise_holds_reminders_and_retries_until_its_date(dunning: Dunning):
    case = await dunning.open_case("pm_card_visa")
    async with dunning.worker():
        handle: WorkflowHandle = await dunning.start(case)
        view = await status_when(handle, lambda v: len(v.messages) == 1, "the first reminder")
        now = await dunning.now()
        # The window runs from the case's clock (its last step), a moment before `now`.
        assert abs(view.promise_by - now - timedelta(days=14)) < timedelta(minutes=1)
        assert "no later than" in await refused(
            handle.execute_update(
                DunningWorkflow.promise_payment, PromiseToPay(pay_on=now + timedelta(days=20))
            )
        )

        pay_on = now + timedelta(days=6)
        view = await handle.execute_update(
            DunningWorkflow.promise_payment, PromiseToPay(pay_on=pay_on)
        )
        assert view.promised_for == pay_on
        view = await status_when(handle, lambda v: v.next_action_at == pay_on, "the promise")
        assert view.messages[-1].template == "promise_confirmed"
        await handle.execute_update(
            DunningWorkflow.give_feedback, FeedbackGiven(reason=FeedbackReason.CANNOT_AFFORD)
        )
        result = await handle.result()

    assert result.outcome is Outcome.RECOVERED and result.reason == "paid on the promised date"
    entries = result.timeline[[e.kind for e in result.timeline].index("promise_made") :]
    # Nothing between the promise and its date but its confirmation: no day-1 retry, no
    # day-4 reminder; then the charge on the date recovers the case.
    assert [e.kind for e in entries] == [
        "promise_made",
        "message",
        "feedback",
        "recovered",
        "message",
    ]
    assert "promise-" in entries[1].detail and entries[3].at >= pay_on
    assert result.charge_attempts == 1
