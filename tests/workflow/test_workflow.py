"""DunningWorkflow on the real time-skipping server, with a real worker and real activities.

Each test drives one case through days or weeks of virtual time and checks three views of
it: the workflow's result (or its `status` query), the audit timeline, and the rows the
activities wrote to the store (charge attempts, messages, case row).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.payments.simulated import SimulatedProcessor
from activities.store import Case, CaseStore, SimulatedCharge
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import (
    CancelRequest,
    CaseInput,
    CaseRecord,
    CaseResult,
    CaseStatus,
    CaseView,
    ChargeRequest,
    ChargeResult,
    DisputeOpened,
    DisputeResolved,
    PauseRequest,
    PaymentMethodUpdated,
    PaymentReceived,
    ResumeRequest,
    TimelineEntry,
)
from workflows.policy import DeclineClass, Outcome
from workflows.search import AMOUNT_DUE, DUNNING_STATUS, NEXT_ACTION_AT, RETRY_COUNT

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
STOLEN_CARD = "pm_card_chargeDeclinedStolenCard"
RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"
SUPPORT = "support:kim"

# Virtual times are exact up to the milliseconds a workflow task takes.
SLACK = timedelta(minutes=1)


# Helpers -----------------------------------------------------------------------------------


def kinds(timeline: list[TimelineEntry]) -> list[str]:
    """The kinds of a timeline's entries, in order."""
    return [entry.kind for entry in timeline]


def near(actual: datetime | None, expected: datetime, slack: timedelta = SLACK) -> bool:
    """True when `actual` is within `slack` of `expected`."""
    return actual is not None and abs(actual - expected) <= slack


def entry(timeline: list[TimelineEntry], kind: str) -> TimelineEntry:
    """The first timeline entry of `kind`."""
    return next(e for e in timeline if e.kind == kind)


async def finish(handle: WorkflowHandle) -> CaseResult:
    """The case's result; a case that never ends fails the test instead of hanging it."""
    return await asyncio.wait_for(handle.result(), timeout=60)


async def attributes_when(
    dunning: Dunning, handle: WorkflowHandle, condition: Callable[[dict], bool], what: str
) -> dict[str, object]:
    """Read the search attributes until `condition` holds (upserts follow signals)."""
    deadline = time.monotonic() + 15
    values: dict[str, object] = {}
    while time.monotonic() < deadline:
        values = await dunning.search_attributes(handle)
        if condition(values):
            return values
        await asyncio.sleep(0.05)
    raise AssertionError(f"search attributes never showed {what}; last: {values}")


def charge_keys(store: CaseStore, case_id: str) -> list[str]:
    """Idempotency keys of the attempts the store recorded for a case."""
    return [row.idempotency_key for row in store.attempts(case_id)]


def message_steps(store: CaseStore, case_id: str) -> list[tuple[str, str]]:
    """(step, channel) of every message row the outbox wrote for a case."""
    return [(row.step, row.channel) for row in store.messages(case_id)]


def simulated_charges(store: CaseStore, case_id: str) -> list[SimulatedCharge]:
    """The charges the simulated gateway remembers for a case."""
    with store.session() as session:
        rows = session.exec(select(SimulatedCharge)).all()
    return [row for row in rows if row.idempotency_key.startswith(f"dunning:{case_id}:")]


FIRST_REMINDER = [("reminder-1", "email"), ("reminder-1", "in_app")]


async def start_and_settle(dunning: Dunning, case: CaseInput, hours: int = 2) -> WorkflowHandle:
    """Start a case and let it send its day-0 reminder and settle into its first wait."""
    handle = await dunning.start(case)
    await dunning.env.sleep(timedelta(hours=hours))
    await status_when(handle, lambda v: len(v.messages) == 1, "the day-0 reminder")
    return handle


# Recovery ----------------------------------------------------------------------------------


async def test_recovers_on_second_retry(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await dunning.start(case)
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.reason == "charge attempt 2 approved"
    assert (result.amount_due, result.amount_recovered) == (0, 4980)
    assert result.charge_attempts == 2
    assert result.messages_sent == 3  # day-0 reminder on two channels, then the thank-you
    assert near(result.closed_at, failed_at + timedelta(days=3))
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "charge_declined",
        "recovered",
        "message",
    ]

    store = dunning.activities.store
    attempts = store.attempts(case.case_id)
    assert [(a.attempt, a.approved, a.decline_code) for a in attempts] == [
        (1, False, "insufficient_funds"),
        (2, True, None),
    ]
    assert charge_keys(store, case.case_id) == [
        f"dunning:{case.case_id}:attempt:1",
        f"dunning:{case.case_id}:attempt:2",
    ]
    assert len(simulated_charges(store, case.case_id)) == 2
    assert message_steps(store, case.case_id) == [*FIRST_REMINDER, ("outcome-recovered", "email")]
    row = store.get_case(case.case_id)
    assert row.status == CaseStatus.RECOVERED
    assert kinds(store.case_events(case.case_id)) == kinds(result.timeline)


async def test_payment_received_while_waiting_recovers_without_another_charge(
    dunning: Dunning,
) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await dunning.start(case)
        await dunning.env.sleep(timedelta(days=1, hours=2))
        await status_when(handle, lambda v: len(v.attempts) == 1, "the first retry")
        paid_at = await dunning.now()
        await handle.signal(
            DunningWorkflow.payment_received,
            PaymentReceived(amount=4980, reference="bank-77", actor=SUPPORT),
        )
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.reason == "payment received ref bank-77"
    assert (result.amount_due, result.amount_recovered) == (0, 4980)
    assert result.charge_attempts == 1
    assert near(result.closed_at, paid_at)
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "charge_declined",
        "payment_received",
        "recovered",
        "message",
        "write_back",
    ]
    assert entry(result.timeline, "payment_received").actor == SUPPORT
    # Support took the money by bank transfer: the biller is told the invoice is paid.
    assert entry(result.timeline, "write_back").detail == "mark_paid_out_of_band: done simulated"
    store = dunning.activities.store
    assert charge_keys(store, case.case_id) == [f"dunning:{case.case_id}:attempt:1"]
    assert message_steps(store, case.case_id) == [*FIRST_REMINDER, ("outcome-recovered", "email")]


async def test_partial_payment_lowers_the_charge_then_the_rest_recovers(dunning: Dunning) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        await handle.signal(DunningWorkflow.payment_received, PaymentReceived(amount=1000))
        view = await status_when(handle, lambda v: v.amount_due == 3980, "the partial payment")
        assert view.status is CaseStatus.ACTIVE
        assert view.amount_recovered == 1000

        await dunning.env.sleep(timedelta(days=1))
        await status_when(handle, lambda v: len(v.attempts) == 1, "the first retry")
        await handle.signal(
            DunningWorkflow.payment_received, PaymentReceived(amount=3980, reference="rest")
        )
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert (result.amount_due, result.amount_recovered) == (0, 4980)
    assert result.charge_attempts == 1
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "payment_received",
        "charge_declined",
        "payment_received",
        "recovered",
        "message",
        "write_back",
    ]
    (attempt,) = dunning.activities.store.attempts(case.case_id)
    assert attempt.amount == 3980  # the retry charged only what was still due


async def test_new_payment_method_after_hard_decline_recovers_soon(dunning: Dunning) -> None:
    case = await dunning.open_case(STOLEN_CARD)
    async with dunning.worker():
        handle = await dunning.start(case)
        await dunning.env.sleep(timedelta(days=2))
        view = await status_when(handle, lambda v: len(v.attempts) == 1, "the hard decline")
        assert view.status is CaseStatus.AWAITING_PAYMENT_METHOD
        assert view.attempts[0].decline_class is DeclineClass.NEVER_RETRY

        updated_at = await dunning.now()
        await handle.signal(
            DunningWorkflow.payment_method_updated,
            PaymentMethodUpdated(payment_method="pm_card_visa", actor="customer"),
        )
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.reason == "charge attempt 2 approved"
    assert result.charge_attempts == 2
    # Charged five minutes after the update (the policy's retry_after_method_update).
    assert near(result.closed_at, updated_at + timedelta(minutes=5))
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "charge_declined",
        "awaiting_customer",
        "payment_method_updated",
        "recovered",
        "message",
    ]
    attempts = dunning.activities.store.attempts(case.case_id)
    assert [(a.payment_method, a.approved, a.decline_code) for a in attempts] == [
        (STOLEN_CARD, False, "stolen_card"),
        ("pm_card_visa", True, None),
    ]


async def test_charge_that_fails_after_the_gateway_accepted_charges_once(
    dunning: Dunning,
) -> None:
    class ProcessorThatLosesFirstAnswer(SimulatedProcessor):
        """Charges for real, then loses the answer once, like a connection cut mid-response."""

        def __init__(self, store: CaseStore) -> None:
            super().__init__(store)
            self.calls = 0

        def charge(self, request: ChargeRequest) -> ChargeResult:
            result = super().charge(request)
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("connection reset after the gateway accepted the charge")
            return result

    store = dunning.activities.store
    processor = ProcessorThatLosesFirstAnswer(store)
    dunning.activities.processor = processor
    case = await dunning.open_case("pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        result = await finish(handle)

    assert processor.calls == 2  # the activity was retried with the same idempotency key
    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 1
    assert result.amount_recovered == 4980
    key = f"dunning:{case.case_id}:attempt:1"
    assert [row.idempotency_key for row in simulated_charges(store, case.case_id)] == [key]
    assert charge_keys(store, case.case_id) == [key]
    assert "charge_error" not in kinds(result.timeline)


# Cancellation and collections ---------------------------------------------------------------


async def test_cancel_signal_ends_the_case(dunning: Dunning) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        cancelled_at = await dunning.now()
        await handle.signal(
            DunningWorkflow.cancel, CancelRequest(reason="subscription deleted", actor="billing")
        )
        result = await finish(handle)

    assert result.outcome is Outcome.CANCELLED
    assert result.reason == "subscription deleted"
    assert (result.amount_due, result.amount_recovered) == (4980, 0)
    assert result.charge_attempts == 0
    assert near(result.closed_at, cancelled_at)
    assert kinds(result.timeline) == ["opened", "message", "cancel", "cancelled"]
    assert entry(result.timeline, "cancel").actor == "billing"
    store = dunning.activities.store
    assert store.attempts(case.case_id) == []
    assert message_steps(store, case.case_id) == FIRST_REMINDER  # a cancelled case says nothing
    row = store.get_case(case.case_id)
    assert row.status == CaseStatus.CANCELLED
    assert row.closed_at is not None


async def test_exhausted_schedule_goes_to_collections_after_final_notice(
    dunning: Dunning, capsys: pytest.CaptureFixture
) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        started = time.perf_counter()
        handle = await dunning.start(case)
        result = await finish(handle)
        wall = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[21-day case] {result.closed_at - result.opened_at} virtual in {wall:.2f} s wall")

    assert result.outcome is Outcome.COLLECTIONS
    assert result.reason == "the dunning schedule is exhausted"
    assert (result.amount_due, result.amount_recovered) == (4980, 0)
    assert result.charge_attempts == 4
    assert result.messages_sent == 9
    assert near(result.closed_at, failed_at + timedelta(days=21))
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "charge_declined",
        "charge_declined",
        "message",
        "charge_declined",
        "charge_declined",
        "message",
        "message",
        "collections",
        "message",
        "write_back",
        "write_back",
    ]
    assert [e.detail for e in result.timeline if e.kind == "write_back"] == [
        "mark_uncollectible: done simulated",
        "cancel_subscription_now: done simulated",
    ]

    store = dunning.activities.store
    attempts = store.attempts(case.case_id)
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert all(a.decline_code == "insufficient_funds" for a in attempts)
    charged_at = [e.at for e in result.timeline if e.kind == "charge_declined"]
    for at, day in zip(charged_at, [1, 3, 5, 7], strict=True):
        assert near(at, failed_at + timedelta(days=day))
    assert message_steps(store, case.case_id) == [
        *FIRST_REMINDER,
        ("reminder-2", "email"),
        ("reminder-3", "email"),
        ("reminder-3", "sms"),
        ("reminder-4", "email"),
        ("reminder-4", "sms"),
        ("reminder-4", "in_app"),
        ("outcome-collections", "email"),
    ]
    final = [m for m in store.messages(case.case_id) if m.step == "reminder-4"]
    assert {m.template for m in final} == {"final_notice"}
    assert all(m.status == "sent" for m in store.messages(case.case_id))
    row = store.get_case(case.case_id)
    assert row.status == CaseStatus.COLLECTIONS
    assert len(store.case_events(case.case_id)) == len(result.timeline)
    attributes = await dunning.search_attributes(handle)
    assert attributes[DUNNING_STATUS.name] == "collections"
    assert attributes[RETRY_COUNT.name] == 4


async def test_hard_decline_waits_for_a_new_payment_method_without_charging(
    dunning: Dunning,
) -> None:
    case = await dunning.open_case(STOLEN_CARD, decline_code="stolen_card")
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await dunning.start(case)
        await dunning.env.sleep(timedelta(days=10))
        view = await status_when(handle, lambda v: len(v.messages) == 3, "three reminders")
        assert view.status is CaseStatus.AWAITING_PAYMENT_METHOD
        assert view.next_step == "await_payment_method"
        assert view.details.startswith("awaiting a new payment method; waiting until")
        assert view.attempts == []
        assert dunning.activities.store.attempts(case.case_id) == []
        result = await finish(handle)

    assert result.outcome is Outcome.COLLECTIONS
    assert result.charge_attempts == 0
    assert near(result.closed_at, failed_at + timedelta(days=21))
    assert kinds(result.timeline) == [
        "opened",
        "awaiting_customer",
        "message",
        "message",
        "message",
        "message",
        "collections",
        "message",
        "write_back",
        "write_back",
    ]
    store = dunning.activities.store
    assert store.attempts(case.case_id) == []
    templates = {m.step: m.template for m in store.messages(case.case_id)}
    # Reminders ask for a new card instead of promising another retry.
    assert templates == {
        "reminder-1": "card_update",
        "reminder-2": "card_update",
        "reminder-3": "card_update",
        "reminder-4": "final_notice",
        "outcome-collections": "collections",
    }


# Disputes -----------------------------------------------------------------------------------


async def test_open_dispute_stops_charges_and_messages_until_won(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    failed_at = case.failure.failed_at
    store = dunning.activities.store
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        await handle.signal(DunningWorkflow.dispute_opened, DisputeOpened(reason="chargeback dp_1"))
        await status_when(handle, lambda v: v.status is CaseStatus.DISPUTED, "the dispute")

        await dunning.env.sleep(timedelta(days=30))
        view = await handle.query(DunningWorkflow.status)
        assert view.status is CaseStatus.DISPUTED
        assert view.dispute_reason == "chargeback dp_1"
        assert view.next_step == "wait"
        assert view.next_action_at is None
        assert (len(view.attempts), len(view.messages)) == (0, 1)
        assert store.attempts(case.case_id) == []
        assert message_steps(store, case.case_id) == FIRST_REMINDER
        attributes = await dunning.search_attributes(handle)
        assert attributes[DUNNING_STATUS.name] == "disputed"
        assert NEXT_ACTION_AT.name not in attributes

        await handle.signal(DunningWorkflow.dispute_resolved, DisputeResolved(won=True))
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 2
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "dispute_opened",
        "dispute_resolved",
        "charge_declined",
        "recovered",
        "message",
    ]
    held = (
        entry(result.timeline, "dispute_resolved").at - entry(result.timeline, "dispute_opened").at
    )
    assert held >= timedelta(days=30)
    # The schedule resumed where it stopped: retry 1 is a day after the failure, plus the hold.
    assert near(entry(result.timeline, "charge_declined").at, failed_at + timedelta(days=1) + held)
    assert near(result.closed_at, failed_at + timedelta(days=3) + held)
    assert len(store.attempts(case.case_id)) == 2


async def test_lost_dispute_cancels_the_case(dunning: Dunning) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        await handle.signal(DunningWorkflow.dispute_opened, DisputeOpened(reason="fraud claim"))
        await status_when(handle, lambda v: v.status is CaseStatus.DISPUTED, "the dispute")
        await dunning.env.sleep(timedelta(days=5))
        await handle.signal(
            DunningWorkflow.dispute_resolved, DisputeResolved(won=False, actor="stripe")
        )
        result = await finish(handle)

    assert result.outcome is Outcome.CANCELLED
    assert result.reason == "dispute lost"
    assert result.charge_attempts == 0
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "dispute_opened",
        "dispute_resolved",
        "cancelled",
    ]
    assert entry(result.timeline, "dispute_resolved").detail == "lost"
    store = dunning.activities.store
    assert store.attempts(case.case_id) == []
    assert message_steps(store, case.case_id) == FIRST_REMINDER
    assert store.get_case(case.case_id).status == CaseStatus.CANCELLED


# Pauses -------------------------------------------------------------------------------------


async def test_pause_and_resume_signals_hold_the_schedule(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    failed_at = case.failure.failed_at
    store = dunning.activities.store
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        await handle.signal(DunningWorkflow.pause, PauseRequest(reason="ticket 42", actor=SUPPORT))
        await status_when(handle, lambda v: v.status is CaseStatus.PAUSED, "the pause")
        await dunning.env.sleep(timedelta(days=5))
        view = await handle.query(DunningWorkflow.status)
        assert view.status is CaseStatus.PAUSED
        assert (len(view.attempts), len(view.messages)) == (0, 1)
        assert store.attempts(case.case_id) == []

        await handle.signal(DunningWorkflow.resume, ResumeRequest(actor=SUPPORT))
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 2
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "paused",
        "resumed",
        "charge_declined",
        "recovered",
        "message",
    ]
    paused, resumed = entry(result.timeline, "paused"), entry(result.timeline, "resumed")
    assert (paused.actor, paused.detail, resumed.actor) == (SUPPORT, "ticket 42", SUPPORT)
    held = resumed.at - paused.at
    assert held >= timedelta(days=5)
    assert near(entry(result.timeline, "charge_declined").at, failed_at + timedelta(days=1) + held)
    assert near(result.closed_at, failed_at + timedelta(days=3) + held)


async def test_pause_until_expires_by_itself_and_shifts_the_schedule(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        until = await dunning.now() + timedelta(days=3)
        await handle.signal(
            DunningWorkflow.pause,
            PauseRequest(reason="payment plan talk", actor=SUPPORT, until=until),
        )
        view = await status_when(handle, lambda v: v.status is CaseStatus.PAUSED, "the pause")
        assert view.paused_until == until
        assert view.next_action_at == until
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "paused",
        "resumed",
        "charge_declined",
        "recovered",
        "message",
    ]
    paused, resumed = entry(result.timeline, "paused"), entry(result.timeline, "resumed")
    assert resumed.actor == "dunning"  # nobody resumed it: the pause ran out
    assert near(resumed.at, until)
    held = resumed.at - paused.at
    assert near(held, timedelta(days=3))
    assert near(entry(result.timeline, "charge_declined").at, failed_at + timedelta(days=1) + held)
    assert near(result.closed_at, failed_at + timedelta(days=3) + held)


async def test_resume_when_not_paused_is_recorded_as_ignored(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        await handle.signal(DunningWorkflow.resume, ResumeRequest(actor=SUPPORT))
        view = await status_when(
            handle, lambda v: "ignored" in kinds(v.timeline), "the ignored resume"
        )
        assert view.status is CaseStatus.ACTIVE
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    ignored = entry(result.timeline, "ignored")
    assert ignored.actor == SUPPORT
    assert ignored.detail == f"resume: case {case.case_id} is not paused"
    # The case went on as planned: nothing shifted.
    assert near(entry(result.timeline, "charge_declined").at, failed_at + timedelta(days=1))
    assert near(result.closed_at, failed_at + timedelta(days=3))
    assert "resumed" not in kinds(result.timeline)


async def test_pause_and_resume_updates_answer_with_the_case_or_refuse(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(DunningWorkflow.resume_case, ResumeRequest(actor=SUPPORT))
        assert "is not paused" in str(refused.value.cause)

        past = await dunning.now() - timedelta(hours=1)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                DunningWorkflow.pause_case, PauseRequest(reason="late", actor=SUPPORT, until=past)
            )
        assert "in the past" in str(refused.value.cause)

        view = await handle.execute_update(
            DunningWorkflow.pause_case, PauseRequest(reason="ticket 7", actor=SUPPORT)
        )
        assert isinstance(view, CaseView)
        assert view.status is CaseStatus.PAUSED
        assert (view.paused_by, view.pause_reason) == (SUPPORT, "ticket 7")

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                DunningWorkflow.pause_case, PauseRequest(reason="again", actor="support:lee")
            )
        assert f"already paused by {SUPPORT}" in str(refused.value.cause)

        await dunning.env.sleep(timedelta(days=2))
        view = await handle.execute_update(
            DunningWorkflow.resume_case, ResumeRequest(actor="support:lee")
        )
        assert isinstance(view, CaseView)
        assert view.status is CaseStatus.ACTIVE
        assert view.paused_by is None
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    # Refused updates leave no trace in the case: validators reject before anything changes.
    assert kinds(result.timeline) == [
        "opened",
        "message",
        "paused",
        "resumed",
        "charge_declined",
        "recovered",
        "message",
    ]
    assert entry(result.timeline, "resumed").actor == "support:lee"


# Starting, queries and visibility -----------------------------------------------------------


async def test_duplicate_start_for_the_same_invoice_is_refused(dunning: Dunning) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    async with dunning.worker():
        handle = await dunning.start(case)
        with pytest.raises(WorkflowAlreadyStartedError):
            await dunning.start(case.model_copy(update={"case_id": case.case_id + "-dup"}))
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    with dunning.activities.store.session() as session:
        rows = session.exec(select(Case).where(Case.invoice_id == case.invoice_id)).all()
    assert [row.case_id for row in rows] == [case.case_id]
    assert len(dunning.activities.store.attempts(case.case_id)) == 2


async def test_status_query_tells_where_the_case_stands(dunning: Dunning) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await dunning.start(case)
        await dunning.env.sleep(timedelta(days=1, hours=2))
        view = await status_when(handle, lambda v: len(v.attempts) == 1, "the first retry")
        assert view.case_id == case.case_id
        assert view.customer_id == case.customer_id
        assert view.status is CaseStatus.ACTIVE
        assert view.policy == "standard v1"
        assert (view.amount_due, view.amount_recovered, view.currency) == (4980, 0, "JPY")
        assert view.next_step == "wait"
        assert near(view.next_action_at, failed_at + timedelta(days=3))
        assert view.details.startswith("waiting until ")
        assert view.details.endswith("before retry 2 of 4")
        (attempt,) = view.attempts
        assert (attempt.attempt, attempt.approved, attempt.decline_code) == (
            1,
            False,
            "insufficient_funds",
        )
        assert attempt.decline_class is DeclineClass.RETRY_LATER
        assert [m.step for m in view.messages] == ["reminder-1"]
        assert view.paused_by is None and view.pause_reason is None
        assert kinds(view.timeline) == ["opened", "message", "charge_declined"]

        await handle.signal(DunningWorkflow.pause, PauseRequest(reason="ticket 9", actor=SUPPORT))
        view = await status_when(handle, lambda v: v.status is CaseStatus.PAUSED, "the pause")
        assert (view.paused_by, view.pause_reason, view.paused_until) == (SUPPORT, "ticket 9", None)
        assert view.next_step == "wait"
        assert view.next_action_at is None
        assert view.details == f"waiting while paused by {SUPPORT}"

        await handle.signal(
            DunningWorkflow.cancel, CancelRequest(reason="written off", actor=SUPPORT)
        )
        result = await finish(handle)
    assert result.outcome is Outcome.CANCELLED


async def test_search_attributes_and_details_follow_the_case(dunning: Dunning) -> None:
    case = await dunning.open_case(SOFT_DECLINE)
    failed_at = case.failure.failed_at
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        described = await handle.describe()
        attributes = described.typed_search_attributes
        assert attributes.get(DUNNING_STATUS) == "active"
        assert attributes.get(RETRY_COUNT) == 0
        assert attributes.get(AMOUNT_DUE) == 4980
        # The next step's time is in the current details (free), not upserted at each wait.
        assert attributes.get(NEXT_ACTION_AT) is None
        # Current details are served by the SDK's built-in metadata query.
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        retry_1 = failed_at + timedelta(days=1)
        assert metadata.current_details.startswith(f"waiting until {retry_1:%Y-%m-%d} ")
        assert metadata.current_details.endswith("before retry 1 of 4")

        await handle.signal(DunningWorkflow.payment_received, PaymentReceived(amount=1000))
        await attributes_when(
            dunning, handle, lambda a: a[AMOUNT_DUE.name] == 3980, "the lower amount due"
        )

        await dunning.env.sleep(timedelta(days=1))
        await status_when(handle, lambda v: len(v.attempts) == 1, "the first retry")
        described = await handle.describe()
        # A declined retry changes no status: the count waits for the next upsert.
        assert described.typed_search_attributes.get(RETRY_COUNT) == 0

        await handle.signal(DunningWorkflow.pause, PauseRequest(reason="ticket 3", actor=SUPPORT))
        paused = await attributes_when(
            dunning, handle, lambda a: a[DUNNING_STATUS.name] == "paused", "the pause"
        )
        assert paused[RETRY_COUNT.name] == 1  # rode along with the pause
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert metadata.current_details == f"waiting while paused by {SUPPORT}"

        await handle.signal(DunningWorkflow.resume, ResumeRequest(actor=SUPPORT))
        await handle.signal(DunningWorkflow.payment_received, PaymentReceived(amount=3980))
        result = await finish(handle)

    assert result.outcome is Outcome.RECOVERED
    final = await dunning.search_attributes(handle)
    assert final[DUNNING_STATUS.name] == "recovered"
    assert final[AMOUNT_DUE.name] == 0
    assert final[RETRY_COUNT.name] == 1
    assert NEXT_ACTION_AT.name not in final
    assert (final["CustomerId"], final["InvoiceId"]) == (case.customer_id, case.invoice_id)


# Signals racing the workflow's own steps ---------------------------------------------------


class StoreThatHoldsOneRecord(CaseStore):
    """The real store; once armed, it holds the next `record_case` until released."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def record_case(self, record: CaseRecord) -> None:
        if self.armed:
            self.armed = False
            self.holding.set()
            self.release.wait(timeout=30)
        super().record_case(record)


async def test_signal_during_record_before_a_wait_is_not_lost(
    dunning: Dunning, tmp_path: Path
) -> None:
    store = StoreThatHoldsOneRecord(f"sqlite:///{tmp_path / 'dunning.db'}")
    dunning.activities.store = store
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await start_and_settle(dunning, case)
        for _ in range(200):  # the first record may still be running
            if store.get_case(case.case_id) is not None:
                break
            await asyncio.sleep(0.05)
        store.armed = True
        # A partial payment lowers the amount due: the case records itself before it waits.
        await handle.signal(DunningWorkflow.payment_received, PaymentReceived(amount=1000))
        assert await asyncio.to_thread(store.holding.wait, 10)
        # The cancel arrives while that record is still running.
        cancel = CancelRequest(reason="deleted", actor="billing")
        await handle.signal(DunningWorkflow.cancel, cancel)
        await status_when(handle, lambda v: v.status is CaseStatus.CANCELLED, "the cancel")
        store.release.set()
        result = await finish(handle)

    assert result.outcome is Outcome.CANCELLED
    assert result.reason == "deleted"
    assert store.get_case(case.case_id).status == CaseStatus.CANCELLED
