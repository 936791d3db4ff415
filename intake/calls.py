"""Agent call tasks from support's side: the tasks to call with what an agent needs (name,
phone, amount due, the best local time, calls this week), and a call logged on a task.

Contact details are read here, for the agent's own terminal, and never reach a workflow:
the case hears the outcome (`CallNoted`, or the promise, plan or payment the call won).
A call is checked against Regulation F before anything is written (`workflows/calls.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from activities.notify.contacts import contact_zones
from activities.store import CallTask, CallTaskStatus, CaseStore
from config.policies import PolicyError, find_policy
from workflows.arrangements import PROMISE_HOUR
from workflows.calls import CALL_LIMIT, CALL_WINDOW, next_call_at, refuse_call, task_stays_open
from workflows.contact_hours import ContactHours
from workflows.models import (
    CallNoted,
    CallOutcome,
    PaymentReceived,
    PlanChosen,
    PromiseToPay,
)
from workflows.money import format_money
from workflows.policy import Policy


class CallRefused(ValueError):
    """The call cannot be logged (unknown or closed task, 7 calls in 7 days, quiet hours)."""


class TaskLine(BaseModel):
    """One task as `dunning tasks list` shows it."""

    task: int
    step: str
    case: str
    customer: str
    name: str | None
    phone: str | None
    amount_due: str
    status: str
    attempts: int
    max_attempts: int
    last_outcome: str | None
    call_after: datetime
    call_after_local: str
    calls_this_week: int


@dataclass
class Call:
    """A call on an open task, checked: the task and the rules it was checked under."""

    task: CallTask
    zones: list[str]
    hours: ContactHours
    earlier: list[datetime]
    """The customer's calls in the 7 days before this one."""


def task_lines(
    store: CaseStore,
    now: datetime,
    customer_id: str | None = None,
    include_closed: bool = False,
) -> list[TaskLine]:
    """The tasks to call (every task with `include_closed`), the soonest first."""
    lines = []
    for task in store.call_tasks(customer_id=customer_id, include_closed=include_closed):
        customer = store.get_customer(task.customer_id)
        case = store.get_case(task.case_id)
        zones = contact_zones(customer.time_zone, customer.phone) if customer else []
        local = task.call_after.astimezone(ZoneInfo(zones[0])) if zones else None
        lines.append(
            TaskLine(
                task=task.id,
                step=task.step,
                case=task.case_id,
                customer=task.customer_id,
                name=customer.name if customer else None,
                phone=customer.phone if customer else None,
                amount_due=format_money(case.amount_due, case.currency) if case else "-",
                status=task.status,
                attempts=task.attempts,
                max_attempts=task.max_attempts,
                last_outcome=task.last_outcome,
                call_after=task.call_after,
                call_after_local=(
                    f"{local:%Y-%m-%d %H:%M} {zones[0]}"
                    if local
                    else f"{task.call_after:%Y-%m-%d %H:%M} UTC (zone unknown)"
                ),
                calls_this_week=len(
                    store.calls_to_customer_since(task.customer_id, now - CALL_WINDOW)
                ),
            )
        )
    return lines


def check_call(store: CaseStore, policies: list[Policy], task_id: int, now: datetime) -> Call:
    """A call made at `now` on task `task_id`, or `CallRefused` saying why it may not be
    logged: no such task, a task no longer open (a finished case cancels its tasks), the
    customer's 8th call in 7 days, or a quiet hour in one of their zones."""
    task = store.call_task(task_id)
    if task is None:
        raise CallRefused(f"no call task {task_id}")
    if task.status != CallTaskStatus.OPEN:
        why = " (its case has finished)" if task.status == CallTaskStatus.CANCELLED else ""
        raise CallRefused(f"call task {task_id} is already {task.status}{why}")
    customer = store.get_customer(task.customer_id)
    zones = contact_zones(customer.time_zone, customer.phone) if customer else []
    hours = _calling_hours(store, policies, task.case_id)
    earlier = store.calls_to_customer_since(task.customer_id, now - CALL_WINDOW)
    refusal = refuse_call(now, earlier, zones, hours)
    if refusal is not None:
        raise CallRefused(f"not logged: {refusal}")
    return Call(task=task, zones=zones, hours=hours, earlier=earlier)


def case_request(
    call: Call,
    outcome: CallOutcome,
    actor: str,
    pay_on: date | None = None,
    installments: int | None = None,
    amount: int | None = None,
) -> PromiseToPay | PlanChosen | PaymentReceived | CallNoted:
    """What the case is told of the call: a promise (charged at 10:00 on `pay_on` in the
    customer's zone, as on the recovery page), a chosen plan, a payment taken on the phone
    (`amount` in minor units), or else the outcome alone, for its timeline."""
    match outcome:
        case CallOutcome.PROMISE:
            zone = ZoneInfo(call.zones[0]) if call.zones else UTC
            pay_at = datetime.combine(pay_on, PROMISE_HOUR, tzinfo=zone)
            return PromiseToPay(pay_on=pay_at, actor=actor)
        case CallOutcome.PLAN:
            return PlanChosen(installments=installments, actor=actor)
        case CallOutcome.PAID:
            reference = f"phone payment, call task {call.task.id}"
            return PaymentReceived(amount=amount, reference=reference, actor=actor)
    return CallNoted(
        step=call.task.step, outcome=outcome, attempt=call.task.attempts + 1, actor=actor
    )


def log_call(
    store: CaseStore, call: Call, outcome: CallOutcome, actor: str, note: str, now: datetime
) -> CallTask:
    """Store the call and what became of its task: open, to be called again from the next
    best time the rules allow, while the customer was not reached and attempts are left;
    else done."""
    stays_open = task_stays_open(outcome, call.task.attempts + 1, call.task.max_attempts)
    call_after = next_call_at(now, [*call.earlier, now], call.zones, call.hours)
    return store.record_call(call.task.id, now, outcome, actor, note, stays_open, call_after)


def describe_task(task: CallTask, zones: list[str]) -> str:
    """Where a task stands after a call, in one line."""
    if task.status != CallTaskStatus.OPEN:
        return f"task {task.id} {task.status} after {task.attempts} of {task.max_attempts} calls"
    local = task.call_after.astimezone(ZoneInfo(zones[0]) if zones else UTC)
    zone = zones[0] if zones else "UTC"
    return (
        f"task {task.id} open, {task.attempts} of {task.max_attempts} calls made; "
        f"call again from {local:%Y-%m-%d %H:%M} {zone}"
    )


def calls_this_week(line: TaskLine) -> str:
    """``3/7``: the customer's calls in the last 7 days, of the most Regulation F allows."""
    return f"{line.calls_this_week}/{CALL_LIMIT}"


def _calling_hours(store: CaseStore, policies: list[Policy], case_id: str) -> ContactHours:
    """The contact hours of the case's policy; the defaults when the case's row or policy
    cannot be found (calls keep 08:00-21:00 whatever the policy says, see `call_hours`)."""
    case = store.get_case(case_id)
    if case is None:
        return ContactHours()
    try:
        return find_policy(policies, case.policy, case.policy_version).contact_hours
    except PolicyError:
        return ContactHours()
