"""Cases pinned to a policy version by content hash: no policy body in their history, a
running case keeps its version when the file changes, and a worker that lacks a version
fails the case's task with a clear error until it finds the version in the store."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.worker import Replayer, Worker

from config.converter import compact_data_converter
from config.policies import find_policy
from config.settings import Settings
from intake.cases import CaseOpener
from intake.events import BillingEvent
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CaseInput, PlanChosen
from workflows.policy import Outcome, Policy
from workflows.policy_versions import POLICY_VERSIONS, canonical_json, policy_hash

DECLINED = "pm_card_chargeDeclinedInsufficientFunds"
# Keys only a policy has: none of them may appear in a pinned case's history.
POLICY_ONLY_KEYS = ("min_retry_gap", "retry_after_method_update", "collections_after")


async def opened_by_intake(dunning: Dunning, policy: str = "standard") -> CaseInput:
    """A case as the receiver opens it for a failed invoice: pinned by hash."""
    profile = dunning.customer(DECLINED)
    event = BillingEvent(
        invoice_id=f"in_{uuid.uuid4().hex[:12]}",
        customer=profile,
        amount_due=4900,
        currency="USD",
        decline_code="insufficient_funds",
        failed_at=await dunning.now(),
        policy=policy,
        policy_version=1,
    )
    return CaseOpener.from_settings(Settings(_env_file=None)).case_input(event)


def history_text(events) -> str:
    return "".join(str(event) for event in events)


async def test_a_case_opened_by_intake_carries_no_policy_in_its_history(dunning: Dunning):
    case = await opened_by_intake(dunning)
    standard = find_policy(dunning.activities.policies, "standard", 1)
    assert case.policy_hash == policy_hash(standard)
    async with dunning.worker():
        handle = await dunning.start(case)
        result = await handle.result()
    assert result.outcome == Outcome.COLLECTIONS
    assert result.charge_attempts == len(standard.retries)

    events = (await handle.fetch_history()).events
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "load_policy" not in scheduled
    text = history_text(events)
    assert case.policy_hash in text  # the pin is there, in the case's input
    for key in POLICY_ONLY_KEYS:
        assert key not in text
    assert canonical_json(standard)[:200] not in text
    # A worker that knows the version replays the pinned case as it ran.
    replayer = Replayer(workflows=[DunningWorkflow], data_converter=compact_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_a_running_case_keeps_its_version_when_the_file_changes(dunning: Dunning):
    standard = find_policy(dunning.activities.policies, "standard", 1)
    async with dunning.worker():
        first = await opened_by_intake(dunning)
        before: WorkflowHandle = await dunning.start(first)
        await status_when(before, lambda view: view.status == "active", "the case opened")

        # Someone edits standard-v1.toml in place: one retry instead of four.
        edited = Policy.model_validate({**standard.model_dump(), "retries": standard.retries[:1]})
        assert (edited.name, edited.version) == (standard.name, standard.version)
        edited_hash = POLICY_VERSIONS.add(edited).hash
        assert edited_hash != first.policy_hash
        second = first.model_copy(
            update={
                "case_id": f"{first.case_id}b",
                "invoice_id": f"{first.invoice_id}b",
                "policy_hash": edited_hash,
            }
        )
        after = await dunning.start(second)

        assert (await before.result()).charge_attempts == 4  # the version it was pinned to
        assert (await after.result()).charge_attempts == 1


async def test_a_worker_lacking_a_version_fails_the_task_until_the_store_has_it(
    dunning: Dunning,
):
    standard = find_policy(dunning.activities.policies, "standard", 1)
    unknown = standard.model_copy(update={"description": f"saved elsewhere {uuid.uuid4()}"})
    case = (await opened_by_intake(dunning)).model_copy(
        update={"policy_hash": policy_hash(unknown)}
    )
    assert not POLICY_VERSIONS.known(case.policy_hash)
    dunning.activities.store.save_policy_version(
        unknown
    )  # intake saved it; this worker never read it
    loader, POLICY_VERSIONS.on_miss = (
        POLICY_VERSIONS.on_miss,
        dunning.activities.store.policy_version,
    )
    try:
        # No `workflow_failure_exception_types`: an unknown version fails the task, not the case.
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with Worker(
                dunning.env.client,
                task_queue=dunning.task_queue,
                workflows=[DunningWorkflow],
                activities=dunning.activities.all(),
                activity_executor=executor,
            ):
                handle = await dunning.start(case)
                view = await status_when(handle, lambda v: v.status == "active", "the case opened")
    finally:
        POLICY_VERSIONS.on_miss = loader
    assert view.policy == "standard v1"
    failures = [
        e.workflow_task_failed_event_attributes.failure.message
        for e in (await handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert failures and "is not known to this worker" in failures[0]
    assert case.policy_hash in failures[0]


async def test_a_pinned_payment_plan_continues_as_new_with_its_reference_only(dunning: Dunning):
    case = (await opened_by_intake(dunning)).model_copy(update={"payment_method": "pm_card_visa"})
    dunning.customer("pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: bool(v.plan_offers), "the plan offers")
        await handle.execute_update(DunningWorkflow.choose_plan, PlanChosen(installments=2))
        result = await handle.result()
    assert (result.outcome, result.amount_recovered) == (Outcome.RECOVERED, 4900)

    # The last run began from the state the first carried over: its input names the policy.
    started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id
    carried = json.loads(started.input.payloads[0].data)["carried"]
    assert carried["policy"] == {"name": "standard", "version": 1, "hash": case.policy_hash}
    for key in POLICY_ONLY_KEYS:
        assert key not in started.input.payloads[0].data.decode()
