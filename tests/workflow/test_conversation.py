"""One conversation per customer, on the time-skipping server: three invoices that fail
within a day reach the customer as one conversation, within the weekly budget, each message
naming every open invoice; paying them all recovers all three cases.

Real worker, real activities (simulated gateway, outbox); the cases and the customer's
`CustomerWorkflow` run as they do in production.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from activities.store import Message, MessageStatus
from tests.support.conversation import CUSTOMER, conversation_policy, open_cases
from tests.support.harness import Dunning, status_when
from workflows.conversation import (
    OUTCOME_GATHER,
    CaseJoined,
    ConversationCase,
    ConversationStart,
    ConversationView,
)
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow
from workflows.messaging import CAP_WINDOW
from workflows.models import PaymentReceived, PromiseToPay


def sent_messages(dunning: Dunning) -> list[Message]:
    """Every message row that went out to the customer (any channel)."""
    rows = dunning.activities.store.messages_with_customers(
        ["reminder_gentle", "reminder_firm", "final_notice", "recovered", "collections"]
    )
    return [m for m, _ in rows if m.customer_id == CUSTOMER and m.status == MessageStatus.SENT]


def messages_by_step(rows: list[Message]) -> dict[tuple[str, str], list[Message]]:
    steps: dict[tuple[str, str], list[Message]] = {}
    for row in rows:
        steps.setdefault((row.case_id, row.step), []).append(row)
    return steps


async def test_three_invoices_failing_within_a_day_make_one_capped_conversation(dunning: Dunning):
    conversation_policy(dunning)
    async with dunning.worker():
        handles = await open_cases(dunning, spacing=timedelta(hours=5))
        results = [await handle.result() for handle in handles]

    assert [r.outcome for r in results] == ["collections"] * 3
    reminders = [
        rows
        for rows in messages_by_step(sent_messages(dunning)).values()
        if rows[0].template != "collections"
    ]
    # One customer, one ladder: day 0 (and the invoices that failed after it, a day on),
    # day 4, day 8 and the final notice, not three of each.
    assert 4 <= len(reminders) <= 6
    sends = sorted(rows[0].step_at for rows in reminders)
    for start in sends:
        in_window = [at for at in sends if start <= at < start + CAP_WINDOW]
        assert len(in_window) <= dunning.activities.messages_per_week
    finals = [rows for rows in reminders if rows[0].template == "final_notice"]
    assert len(finals) == 1
    # After the first (only invoice 1 had failed), every message names all three invoices,
    # with one link that pays them all.
    emails = sorted(
        (row for rows in reminders for row in rows if row.channel == "email"),
        key=lambda row: row.step_at,
    )
    assert "in_three_2" not in emails[0].body
    for email in emails[1:]:
        assert all(f"in_three_{n}" in email.body for n in (1, 2, 3)), email.body
        assert "/account?token=" in email.body
    # Each case heard what carried its reminders.
    for result in results:
        kinds = [e.kind for e in result.timeline]
        assert "reminder_handed_over" in kinds
        assert "message" in kinds


async def test_paying_every_invoice_recovers_all_and_brings_one_receipt(dunning: Dunning):
    conversation_policy(dunning)
    async with dunning.worker():
        handles = await open_cases(dunning, spacing=timedelta(hours=1))
        await dunning.env.sleep(timedelta(days=1, hours=1))  # a message has named all three
        conversation = dunning.env.client.get_workflow_handle_for(
            CustomerWorkflow.run, f"customer-{CUSTOMER}"
        )
        view: ConversationView = await conversation.query(CustomerWorkflow.summary)
        assert [i.invoice_id for i in view.open_invoices] == [
            "in_three_1",
            "in_three_2",
            "in_three_3",
        ]
        assert view.owed == {"USD": 6000}
        assert view.messages_this_week >= 1

        for n, handle in enumerate(handles, start=1):
            await handle.execute_update(
                DunningWorkflow.record_payment,
                PaymentReceived(amount=1000 * n, reference=f"pay-all-{n}", actor="customer"),
            )
        results = [await handle.result() for handle in handles]
        # A handle got by id does not skip time as a started one does: skip the receipts'
        # gathering (two minutes) by hand.
        await dunning.env.sleep(OUTCOME_GATHER + timedelta(seconds=5))
        ended = await conversation.result()

    assert all(r.outcome == "recovered" for r in results)
    assert ended.open_invoices == []
    receipts = [m for m in sent_messages(dunning) if m.template == "recovered"]
    assert [m.channel for m in receipts] == ["email"]
    assert all(f"in_three_{n}" in receipts[0].body for n in (1, 2, 3)), receipts[0].body


async def test_a_promise_made_on_one_invoice_reaches_the_customers_other_cases(dunning: Dunning):
    conversation_policy(dunning)
    async with dunning.worker():
        first, second = await open_cases(dunning, spacing=timedelta(hours=1), count=2)
        await status_when(second, lambda v: len(v.timeline) > 1, "the second case to join")
        now = await dunning.now()
        promise = PromiseToPay(pay_on=now + timedelta(days=5))
        view = await first.execute_update(DunningWorkflow.promise_payment, promise)
        assert view.promised_for == promise.pay_on
        told = await status_when(
            second, lambda v: v.promised_for is not None, "the promise to reach the other case"
        )

    assert told.promised_for == promise.pay_on
    made = [e for e in told.timeline if e.kind == "promise_made"]
    assert made and made[0].detail.endswith("(made on in_three_1)")
    # Confirmed once, by the case it was made on.
    assert told.messages == [] or all(m.template != "promise_confirmed" for m in told.messages)


async def test_a_long_conversation_continues_as_new_and_keeps_what_it_knows(dunning: Dunning):
    conversation_policy(dunning)
    async with dunning.worker():
        handle = await dunning.env.client.start_workflow(
            CustomerWorkflow.run,
            ConversationStart(customer_id=CUSTOMER, history_limit=10),
            id=f"customer-{CUSTOMER}",
            task_queue=dunning.task_queue,
        )
        first_run = handle.result_run_id
        for n in range(1, 6):  # five cases join: each signal adds events to the history
            case = ConversationCase(
                case_id=f"in_long_{n}",
                invoice_id=f"in_long_{n}",
                workflow_id=f"dunning-in_long_{n}",
                amount_due=100 * n,
                currency="USD",
            )
            note = CaseJoined(customer_id=CUSTOMER, case=case)
            await handle.signal(CustomerWorkflow.case_joined, note)
        latest = dunning.env.client.get_workflow_handle_for(CustomerWorkflow.run, handle.id)
        view = None
        for _ in range(200):
            view = await latest.query(CustomerWorkflow.summary)
            if len(view.open_invoices) == 5:
                break
            await asyncio.sleep(0.05)
        first = dunning.env.client.get_workflow_handle(handle.id, run_id=first_run)
        events = (await first.fetch_history()).events

    assert events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert view is not None and view.owed == {"USD": 1500}
