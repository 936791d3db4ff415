"""Support's actions on a case answer truthfully: done, or refused with the reason.

The refusal rules are pure (`CaseState.refuse_*`) and must refuse exactly what folding the
same signal would ignore; DunningWorkflow's updates apply them in validators, so a refused
action leaves no trace in the case. Workflow tests run on the real time-skipping server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from config.policies import find_policy, load_policies
from tests.support.harness import Dunning, status_when
from workflows.case import CaseState
from workflows.dunning import DunningWorkflow
from workflows.models import (
    CancelRequest,
    CaseInput,
    CaseStatus,
    CaseView,
    DisputeOpened,
    DisputeResolved,
    Failure,
    PaymentMethodUpdated,
    PaymentReceived,
)
from workflows.policy import Outcome
from workflows.steps import fold_signal

CONFIG = Path(__file__).resolve().parents[2] / "config"
OPENED = datetime(2026, 11, 1, 9, tzinfo=UTC)
LATER = OPENED + timedelta(hours=1)


def case_in(situation: str) -> CaseState:
    """A case of the standard policy that is running, disputed or finished."""
    policy = find_policy(load_policies(CONFIG / "policies", CONFIG / "declines.toml"), "standard")
    case = CaseInput(
        case_id="in_1",
        invoice_id="in_1",
        customer_id="cus_1",
        amount_due=4900,
        currency="usd",
        failure=Failure(decline_code="insufficient_funds", failed_at=OPENED),
        policy_name=policy.name,
        policy_version=policy.version,
    )
    state = CaseState.open(case, policy, OPENED)
    if situation == "disputed":
        state.open_dispute(DisputeOpened(reason="chargeback"), OPENED)
    if situation == "finished":
        state.cancel(CancelRequest(reason="voided", actor="billing"), OPENED)
    return state


# What support may do, each with the rule the update's validator applies.
ACTIONS: dict[str, tuple[object, Callable[[CaseState], str | None]]] = {
    "payment": (PaymentReceived(amount=100), CaseState.refuse_when_finished),
    "payment method": (
        PaymentMethodUpdated(payment_method="pm_new"),
        CaseState.refuse_when_finished,
    ),
    "dispute": (DisputeOpened(reason="again"), CaseState.refuse_dispute),
    "dispute won": (DisputeResolved(won=True), CaseState.refuse_dispute_resolution),
    "cancel": (CancelRequest(reason="asked", actor="support:kim"), CaseState.refuse_when_finished),
}


@pytest.mark.parametrize("situation", ["running", "disputed", "finished"])
@pytest.mark.parametrize("action", ACTIONS)
def test_refusals_are_exactly_what_the_case_would_ignore(situation: str, action: str) -> None:
    signal, refuse = ACTIONS[action]
    state = case_in(situation)
    refusal = refuse(state)

    fold_signal(state, signal, LATER)

    ignored = state.timeline[-1].kind == "ignored"
    assert (refusal is not None) == ignored, (refusal, state.timeline[-1])


def test_refusals_say_why() -> None:
    running, disputed, finished = (case_in(s) for s in ("running", "disputed", "finished"))

    assert running.refuse_dispute() is None
    assert disputed.refuse_dispute() == "case in_1 is already disputed"
    assert running.refuse_dispute_resolution() == "case in_1 has no open dispute"
    assert disputed.refuse_dispute_resolution() is None
    assert running.refuse_when_finished() is None
    for refuse in (
        CaseState.refuse_when_finished,
        CaseState.refuse_dispute,
        CaseState.refuse_dispute_resolution,
        CaseState.refuse_pause,
        CaseState.refuse_resume,
    ):
        assert refuse(finished) == "case in_1 is already cancelled"


async def refused(update) -> str:
    """The reason an update was refused with."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await update
    return str(failed.value.cause)


async def test_support_updates_answer_with_the_case_or_refuse(dunning: Dunning) -> None:
    case = await dunning.open_case("pm_card_chargeDeclinedInsufficientFunds")
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: True, "the case to start")
        run = DunningWorkflow

        assert "has no open dispute" in await refused(
            handle.execute_update(run.resolve_dispute, DisputeResolved(won=True))
        )
        view = await handle.execute_update(run.open_dispute, DisputeOpened(reason="chargeback"))
        assert isinstance(view, CaseView)
        assert (view.status, view.dispute_reason) == (CaseStatus.DISPUTED, "chargeback")
        assert f"case {case.case_id} is already disputed" in await refused(
            handle.execute_update(run.open_dispute, DisputeOpened(reason="twice"))
        )
        view = await handle.execute_update(run.resolve_dispute, DisputeResolved(won=True))
        assert view.status is CaseStatus.ACTIVE

        view = await handle.execute_update(
            run.record_payment_method, PaymentMethodUpdated(payment_method="pm_card_visa")
        )
        assert view.status is CaseStatus.ACTIVE
        view = await handle.execute_update(
            run.record_payment, PaymentReceived(amount=980, reference="phone")
        )
        assert (view.amount_due, view.amount_recovered) == (4000, 980)
        view = await handle.execute_update(
            run.cancel_case, CancelRequest(reason="asked", actor="support:kim")
        )
        assert view.status is CaseStatus.CANCELLED
        result = await handle.result()

    assert result.outcome is Outcome.CANCELLED
    # The refused updates left no trace: validators reject before anything is written.
    assert [e.kind for e in result.timeline if e.kind not in ("message", "retry_plan")] == [
        "opened",
        "dispute_opened",
        "dispute_resolved",
        "payment_method_updated",
        "payment_received",
        "cancel",
        "cancelled",
    ]
