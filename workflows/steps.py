"""Carrying a step out, the pure parts: what a step asks of the world and how the answer
folds into the case.

DunningWorkflow carries steps out through activities and signals; the offline simulator
(`simulation/`) carries them out against a model of customers and issuers. Both build their
requests and fold their results here, so a simulated case takes the steps a durable one
takes. Pure: no I/O and no Temporal import.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, Field

from workflows.case import DECLINE_FIELDS, CaseState, message_line
from workflows.case_events import CaseEvent
from workflows.conversation import (
    CaseJoined,
    CaseLeft,
    ConversationCase,
    ConversationReply,
    CustomerPromised,
    OutcomeDue,
    ReminderDue,
)
from workflows.decide import AddLateFee, Call, Charge, Notify, case_step, collections_at
from workflows.message_timing import MessagePlan
from workflows.models import (
    CallNoted,
    CallTaskCreated,
    CallTaskRequest,
    CancelRequest,
    CaseRecord,
    CaseUpdate,
    ChargeRequest,
    ChargeResult,
    Delivery,
    DisputeOpened,
    DisputeResolved,
    FeedbackGiven,
    InvoiceSettled,
    LateFeeRequest,
    MessagePlanRequest,
    NotifyRequest,
    PauseRequest,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentReceived,
    PayNow,
    PlanChosen,
    PlanRequest,
    PromiseToPay,
    ResumeRequest,
    RetryRequest,
    TimelineEntry,
    WriteBackRequest,
    WriteBackResult,
)
from workflows.policy import DeclineClass, NetworkRules, Outcome, WriteBackAction
from workflows.smart_retry import RetryPlan

Signal = (
    PaymentReceived
    | PaymentFailed
    | PaymentMethodUpdated
    | DisputeOpened
    | DisputeResolved
    | PauseRequest
    | ResumeRequest
    | RetryRequest
    | CancelRequest
    | PayNow
    | PlanChosen
    | PromiseToPay
    | FeedbackGiven
    | ConversationReply
    | CallNoted
)
"""Everything that may reach a case from outside while it runs."""

SHORTEST_WAIT = timedelta(seconds=1)
"""A wait whose time has already come still lasts this long: never a busy loop."""


def charge_request(state: CaseState, step: Charge, now: datetime) -> ChargeRequest:
    """The charge a `Charge` step makes: what is still due, on the case's payment method. A
    scheduled retry also carries what the planner knew just before it, the chance its time
    had and the model that chose it: stored with the attempt, they are what training reads."""
    return ChargeRequest(
        case_id=state.case.case_id,
        invoice_id=state.case.invoice_id,
        customer_id=state.case.customer_id,
        attempt=step.attempt,
        amount=step.amount or state.amount_due,
        currency=state.case.currency,
        payment_method=state.payment_method,
        failed_at=state.case.failure.failed_at,
        scheduled=step.scheduled,
        plan_facts=state.plan_facts(now) if step.scheduled else None,
        propensity=state.next_retry_propensity if step.scheduled else None,
        retry_model_version=state.retry_model_version if step.scheduled else None,
        network_rules=network_cap(state),
    )


def network_cap(state: CaseState) -> NetworkRules | None:
    """The card network's reattempt cap, all a charge checks of its rules (the never-retry
    codes are the policy core's, so they stay out of every charge's history); None: no cap."""
    rules = state.policy.declines.network(state.card_brand)
    if rules is None or rules.max_attempts is None:
        return None
    return NetworkRules(max_attempts=rules.max_attempts, window=rules.window)


def fold_charge(state: CaseState, step: Charge, result: ChargeResult, now: datetime) -> None:
    """Fold the gateway's answer to a `Charge` step into the case."""
    if result.held_until is not None:
        state.hold_for_network(result.held_until, result.message, now)
    elif step.requested:
        state.record_requested_charge(step.attempt, result, now)
    elif step.installment is not None:
        state.record_installment(step.attempt, step.installment, result, now)
    elif step.promised:
        state.record_promised_charge(step.attempt, result, now)
    else:
        state.record_attempt(step.attempt, step.scheduled, result, now, step.method_updated_at)


def replan_facts(
    sent: PlanRequest, scheduled: bool, result: ChargeResult, decline_class: DeclineClass
) -> PlanRequest:
    """The facts smart timing plans the rest of the retries from after the charge that carried
    `sent` (the case's facts just before it) declined with `result`: what
    `CaseState.plan_facts` gives once the decline is folded in, at the charge's time. The
    charge activity plans from them, so a declined retry needs no planning activity."""
    codes = result.model_dump(include=DECLINE_FIELDS)
    codes["card_brand"] = codes["card_brand"] or sent.card_brand
    done = 1 if scheduled else 0
    return sent.model_copy(
        update={
            **codes,
            "decline_class": decline_class,
            "last_charge_at": sent.planned_at,
            "attempt": sent.attempt + done,
            "retries_done": sent.retries_done + done,
            "declines": sent.declines + 1,
        }
    )


def notify_request(state: CaseState, step: Notify, now: datetime) -> NotifyRequest:
    """The message a `Notify` step sends, stamped with the case's clock (for the weekly cap)."""
    return NotifyRequest(
        case_id=state.case.case_id,
        invoice_id=state.case.invoice_id,
        customer_id=state.case.customer_id,
        step=step.step,
        template=step.template,
        tone=step.tone,
        channels=step.channels,
        amount_due=state.amount_due,
        amount_paid=state.amount_recovered,
        currency=state.case.currency,
        deadline=message_deadline(state, step),
        installments=state.plan if step.template == "plan_confirmed" else [],
        promised_for=state.promise.pay_on if state.promise else None,
        at=now,
        # A settled invoice stops reminders; an outcome message (a receipt) still goes out.
        failed_at=None if state.finished else state.case.failure.failed_at,
        hour_propensity=step.hour_propensity,
        channel_propensity=step.channel_propensity,
        late_fee=state.late_fee,
    )


def message_deadline(state: CaseState, step: Notify) -> datetime | None:
    """The day a message names: the step's (a final notice's collections date), or for the
    collections message the day the debt passed on, the day the case ended."""
    if step.deadline is not None:
        return step.deadline
    return state.closed_at if state.outcome is Outcome.COLLECTIONS else None


def late_fee_request(state: CaseState, step: AddLateFee) -> LateFeeRequest | None:
    """The fee an `AddLateFee` step asks the biller for; None when it comes to nothing (a
    percentage of a few minor units), which `fold_late_fee` records as no fee."""
    if step.amount <= 0:
        return None
    return LateFeeRequest(
        case_id=state.case.case_id,
        invoice_id=state.case.invoice_id,
        customer_id=state.case.customer_id,
        amount=step.amount,
        currency=state.case.currency,
    )


def fold_late_fee(
    state: CaseState, step: AddLateFee, reference: str | None, now: datetime, detail: str = ""
) -> None:
    """Fold the biller's answer in: the fee added as `reference`, or not added (None) for
    `detail`'s reason. Once either way: the step never comes again."""
    if reference is None:
        state.record_late_fee(None, detail or "the fee comes to nothing", now)
    else:
        state.record_late_fee(step.amount, reference, now)


def fold_message(state: CaseState, step: Notify, deliveries: list[Delivery], now: datetime) -> None:
    """Remember a sent step (so it never goes out again) and settle the reminders it covers."""
    state.record_message(step.step, step.template, deliveries, now)
    state.mark_reminders_done(step.covers, step.tone, now)


def call_task_request(state: CaseState, step: Call, now: datetime) -> CallTaskRequest:
    """The task a `Call` step creates: ids and the policy's calling hours, no contact data."""
    return CallTaskRequest(
        case_id=state.case.case_id,
        invoice_id=state.case.invoice_id,
        customer_id=state.case.customer_id,
        step=step.step,
        max_attempts=step.max_attempts,
        contact_hours=state.policy.contact_hours,
        at=now,
    )


def fold_call_task(
    state: CaseState, step: Call, task: CallTaskCreated | None, now: datetime
) -> None:
    """Remember a created task, so the call step is never made again."""
    state.record_call_task(step.step, step.covers, task, now)


def fold_signal(state: CaseState, signal: Signal, now: datetime) -> None:
    """Fold a signal into the case with the `CaseState` rule that answers it."""
    match signal:
        case PaymentReceived():
            state.receive_payment(signal, now)
        case PaymentFailed():
            state.record_failure(signal, now)
        case PaymentMethodUpdated():
            state.update_payment_method(signal, now)
        case DisputeOpened():
            state.open_dispute(signal, now)
        case DisputeResolved():
            state.resolve_dispute(signal, now)
        case PauseRequest():
            state.hold(signal, now)
        case ResumeRequest():
            state.release(signal, now)
        case RetryRequest():
            state.retry(signal, now)
        case CancelRequest():
            state.cancel(signal, now)
        case PayNow():
            state.request_payment(signal, now)
        case PlanChosen():
            state.choose_plan(signal, now)
        case PromiseToPay():
            state.make_promise(signal, now)
        case FeedbackGiven():
            state.record_feedback(signal, now)
        case ConversationReply():
            state.hear_conversation(signal, now)
        case CallNoted():
            state.note_call(signal, now)


def fold_reply(state: CaseState, reply: ConversationReply, now: datetime) -> bool:
    """Fold the conversation's reply to a reminder into the case; True when it moved the
    case's next step (a final notice sent late moves the collections date). Only then is
    it worth waking a waiting case: else the case would start the same timer again."""
    before = case_step(state, now)
    state.hear_conversation(reply, now)
    return case_step(state, now) != before


def conversation_case(state: CaseState, workflow_id: str) -> ConversationCase:
    """The case as its customer's conversation lists it."""
    return ConversationCase(
        case_id=state.case.case_id,
        invoice_id=state.case.invoice_id,
        workflow_id=workflow_id,
        amount_due=state.amount_due,
        currency=state.case.currency,
        collections_at=collections_at(state),
    )


def joined_note(state: CaseState, workflow_id: str) -> CaseJoined:
    """What an opening case tells its customer's conversation."""
    return CaseJoined(
        customer_id=state.case.customer_id,
        case=conversation_case(state, workflow_id),
        time_zones=state.time_zones,
        contact_hours=state.policy.contact_hours,
        merge_window=state.policy.conversation_window,
    )


def reminder_note(state: CaseState, step: Notify, workflow_id: str, now: datetime) -> ReminderDue:
    """A reminder step, handed to the customer's conversation to send."""
    return ReminderDue(
        customer_id=state.case.customer_id,
        case=conversation_case(state, workflow_id),
        step=step.step,
        template=step.template,
        tone=step.tone,
        channels=step.channels,
        due_at=now,
        deadline=step.deadline,
        failed_at=state.case.failure.failed_at,
        amount_paid=state.amount_recovered,
        late_fee=state.late_fee,
        hour_propensity=step.hour_propensity,
        channel_propensity=step.channel_propensity,
    )


def outcome_note(state: CaseState, step: Notify, workflow_id: str, now: datetime) -> OutcomeDue:
    """A finishing case's outcome message, handed to the customer's conversation, which
    sends those of cases ending together as one."""
    return OutcomeDue(
        customer_id=state.case.customer_id,
        case=conversation_case(state, workflow_id),
        step=step.step,
        template=step.template,
        channels=step.channels,
        due_at=now,
        amount_paid=state.amount_recovered,
        deadline=message_deadline(state, step),
    )


def promised_note(state: CaseState) -> CustomerPromised:
    """A promise made on this case, for the conversation to pass to the customer's other
    open cases; the case passes each promise on once."""
    note = CustomerPromised(
        customer_id=state.case.customer_id,
        case_id=state.case.case_id,
        promise=state.promise_to_share,
    )
    state.promise_to_share = None
    return note


def left_note(state: CaseState) -> CaseLeft:
    """What a finished case tells its customer's conversation."""
    return CaseLeft(
        customer_id=state.case.customer_id,
        case_id=state.case.case_id,
        outcome=state.outcome.value if state.outcome else "",
    )


def fold_settlement(state: CaseState, settled: InvoiceSettled, now: datetime) -> None:
    """The biller already settled the invoice: paid recovers what is due, voided or written
    off cancels, exactly as the biller's own event would have. A case that has already
    finished (the biller's event arrived while the step ran) has nothing left to settle."""
    if state.finished:
        return
    if settled.kind == "paid":
        payment = PaymentReceived(
            amount=state.amount_due, reference=settled.source, actor="biller", paid_at_biller=True
        )
        fold_signal(state, payment, now)
    else:
        reason = f"invoice {settled.kind.replace('_', ' ')} ({settled.source})"
        fold_signal(state, CancelRequest(reason=reason, actor="biller"), now)


def case_update(state: CaseState, entries: list[TimelineEntry]) -> CaseUpdate:
    """The case row's changes for the store, with `entries` as the audit lines to add: what a
    step writes once the case's opening wrote the whole row (`CaseState.record`)."""
    return CaseUpdate(
        case_id=state.case.case_id,
        currency=state.case.currency,
        status=state.status,
        amount_due=state.amount_due,
        amount_recovered=state.amount_recovered,
        closed_at=state.closed_at,
        late_fee=state.late_fee,
        entries=entries,
    )


def wait_timeout(until: datetime | None, now: datetime) -> timedelta | None:
    """How long a wait for `until` lasts from `now`: None waits for a signal alone."""
    return None if until is None else max(until - now, SHORTEST_WAIT)


# A lean case's opening and closing: one activity each -------------------------------------


class OpenCaseRequest(BaseModel):
    """Everything a new case asks of the world before its first step, in one activity: the
    customer's time zones, the case row and its first audit lines, the `case.opened` event and
    the plans its policy asks for (which need the time zones: the activity fills them in)."""

    customer_id: str
    record: CaseRecord
    opened: CaseEvent | None = None
    message_plan: MessagePlanRequest | None = None
    retry_plan: PlanRequest | None = None
    joined: CaseJoined | None = Field(
        default=None,
        description="The note joining the customer's conversation, sent last (the activity "
        "fills in the time zones it found).",
    )


class CaseOpened(BaseModel):
    """What opening found: where the customer may be, and the plans asked for."""

    time_zones: list[str] = Field(default_factory=list)
    message_plan: MessagePlan | None = None
    retry_plan: RetryPlan | None = None


class CloseCaseRequest(BaseModel):
    """Everything a finished case does in one activity: its outcome event, its outcome
    message, the write-backs to the biller, then the case row with every audit line (those
    of this activity's own work numbered from `next_seq`, at `at`)."""

    record: CaseRecord | CaseUpdate
    next_seq: int
    at: AwareDatetime
    event: CaseEvent | None = None
    message: NotifyRequest | None = None
    write_backs: list[WriteBackRequest] = Field(default_factory=list)
    outcome: OutcomeDue | None = Field(
        default=None, description="The outcome message, handed to the customer's conversation."
    )
    left: CaseLeft | None = Field(
        default=None, description="The goodbye to the customer's conversation, sent last."
    )


class WriteBackDone(BaseModel):
    """One write-back's answer, or why it could not be made."""

    action: WriteBackAction
    result: WriteBackResult | None = None
    error: str = ""


class CaseClosed(BaseModel):
    """What closing did: the outcome message's deliveries (None: it could not be sent,
    `message_error` says why) and each write-back's answer, in order."""

    deliveries: list[Delivery] | None = None
    message_error: str = ""
    write_backs: list[WriteBackDone] = Field(default_factory=list)


def write_back_line(done: WriteBackDone) -> tuple[str, str]:
    """The audit line (kind, detail) of one write-back: the workflow's and the store's."""
    if done.result is None:
        return "write_back_failed", f"{done.action}: {done.error}"
    said = "done" if done.result.done else "nothing to do"
    return "write_back", f"{done.action}: {said} {done.result.detail}".strip()


def closing_lines(step: Notify | NotifyRequest | None, closed: CaseClosed) -> list[tuple[str, str]]:
    """The audit lines (kind, detail) closing adds, in order: the outcome message's, then
    each write-back's. The activity writes them; `fold_closing` adds the same to the case."""
    lines = []
    if step is not None and closed.deliveries is not None:
        lines.append(("message", message_line(step.step, step.template, closed.deliveries)))
    elif step is not None:
        lines.append(("message_error", f"{step.step}: {closed.message_error}"))
    return lines + [write_back_line(done) for done in closed.write_backs]


def fold_closing(state: CaseState, step: Notify | None, closed: CaseClosed, at: datetime) -> None:
    """Fold what closing did into the finished case, adding the lines the activity wrote."""
    lines = closing_lines(step, closed)
    if step is not None and closed.deliveries is not None:
        fold_message(state, step, closed.deliveries, at)  # the message and its line
        lines = lines[1:]
    for kind, detail in lines:
        state.note(at, kind, detail=detail)
