"""Smart retry timing on the time-skipping server: a case plans its retries with the newest
retry model, keeps that model for life, and plans the rest again after each declined retry;
every scheduled retry is stored with what the planner knew, for the next model to learn from.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer

from activities.retry_training import write_model
from activities.store import CustomerProfile
from config.converter import compact_data_converter
from tests.support.harness import Dunning, status_when
from tests.support.retry_history import GOOD_HOUR, ZONE, local_hour, synthetic_history
from workflows.dunning import DunningWorkflow
from workflows.models import CancelRequest, CaseInput, CaseView, Failure, TimelineEntry
from workflows.retry_model import fit
from workflows.search import RETRY_MODEL
from workflows.smart_retry import PlanFacts

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"


def plans(view: CaseView) -> list[TimelineEntry]:
    return [entry for entry in view.timeline if entry.kind == "retry_plan"]


async def after_first_decline(dunning: Dunning, handle: WorkflowHandle) -> CaseView:
    """Move the clock on, a few hours at a time (retries are at least 12 h apart), until
    the first retry has declined and the case has planned again."""
    for _ in range(48):
        await dunning.env.sleep(timedelta(hours=4))
        view = await handle.query(DunningWorkflow.status)
        if view.attempts:
            return await status_when(handle, lambda v: len(plans(v)) == 2, "a second plan")
    raise AssertionError(f"no retry within 8 days: {view}")


async def smart_case(dunning: Dunning) -> CaseInput:
    """A customer in New York whose card always declines for lack of funds, on `smart`."""
    customer_id = f"cus_{uuid.uuid4().hex[:8]}"
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id=customer_id,
            email=f"{customer_id}@example.com",
            time_zone=ZONE,
            payment_method=SOFT_DECLINE,
        )
    )
    invoice_id = f"in_{uuid.uuid4().hex[:12]}"
    return CaseInput(
        case_id=invoice_id,
        invoice_id=invoice_id,
        customer_id=customer_id,
        amount_due=4900,
        currency="USD",
        failure=Failure(decline_code="insufficient_funds", failed_at=await dunning.now()),
        policy_name="smart",
        policy_version=1,
    )


async def test_a_smart_case_plans_again_after_a_declined_retry_with_its_pinned_model(
    dunning: Dunning, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    dunning.activities.retry_models_dir = models
    write_model(fit(synthetic_history(150), 1, datetime.now(UTC)), models)
    case = await smart_case(dunning)

    async with dunning.worker():
        handle = await dunning.start(case)
        first = await status_when(handle, lambda v: len(plans(v)) == 1, "the first plan")
        # A newer model arrives meanwhile: the case stays on the one it started with.
        write_model(fit(synthetic_history(150, seed=2), 2, datetime.now(UTC)), models)
        view = await after_first_decline(dunning, handle)
        attributes = await dunning.search_attributes(handle)
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        await handle.signal(DunningWorkflow.cancel, CancelRequest(reason="done", actor="test"))
        await handle.result()

    assert first.retry_model_version == 1
    first_plan, second_plan = plans(view)
    declined = next(e for e in view.timeline if e.kind == "charge_declined")
    assert first_plan.at < declined.at <= second_plan.at
    for entry in (first_plan, second_plan):
        assert entry.detail.startswith("smart schedule from model v1 (")
    # Operators see the pinned model in the UI and in the status view.
    assert attributes[RETRY_MODEL.name] == 1
    assert (view.retry_model_version, view.retry_plan) == (1, second_plan.detail)
    assert f"retry plan: {second_plan.detail}" in metadata.current_details

    [retry] = dunning.activities.store.attempts(case.case_id)
    facts = PlanFacts.model_validate(retry.plan_facts)
    assert local_hour(facts.planned_at) == GOOD_HOUR  # charged when the model said
    assert (retry.scheduled, retry.model_version, retry.propensity) == (True, 1, 1.0)
    assert (facts.attempt, facts.declines, facts.model_version) == (1, 1, 1)
    assert (retry.card_brand, retry.card_country) == ("visa", "US")

    # The history of the new path replays on today's code.
    replayer = Replayer(workflows=[DunningWorkflow], data_converter=compact_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_without_a_model_the_case_keeps_the_fixed_schedule_and_says_so(
    dunning: Dunning, tmp_path: Path
) -> None:
    dunning.activities.retry_models_dir = tmp_path / "models"  # none trained yet
    case = await smart_case(dunning)

    async with dunning.worker():
        handle = await dunning.start(case)
        view = await after_first_decline(dunning, handle)
        attributes = await dunning.search_attributes(handle)
        await handle.signal(DunningWorkflow.cancel, CancelRequest(reason="done", actor="test"))
        await handle.result()

    assert [e.detail.split(";")[0] for e in plans(view)] == ["fixed schedule: no retry model"] * 2
    assert view.retry_model_version is None
    assert RETRY_MODEL.name not in attributes
    [retry] = dunning.activities.store.attempts(case.case_id)
    assert (retry.scheduled, retry.model_version) == (True, None)
