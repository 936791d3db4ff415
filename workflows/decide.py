"""The policy core: from a case's state, its policy and the time, the one next step.

Pure (no I/O, no Temporal import), so every timing rule is unit-tested without a server and
the workflow is only its durable driver: decide, carry the step out, fold the result in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel

from workflows.arrangements import installment_charge_at
from workflows.case import CaseState
from workflows.case_events import PublishEvent, due_event, next_event_at
from workflows.late_fee import late_fee_amount, late_fee_at
from workflows.message_timing import MessageChoice, choose_message, send_time
from workflows.policy import Channel, DeclineClass, Outcome, Tone, WriteBackAction


class Charge(BaseModel):
    """Charge the invoice now; `scheduled` is False for a retry of a new payment method."""

    kind: Literal["charge"] = "charge"
    attempt: int
    scheduled: bool
    label: str
    method_updated_at: AwareDatetime | None = None
    """For a charge of a new payment method: the update it answers."""
    installment: int | None = None
    """For a payment plan's charge: the installment's number."""
    amount: int | None = None
    """What to charge when not all that is due (an installment)."""
    promised: bool = False
    """The charge on the date the customer promised to pay."""
    requested: bool = False
    """The charge the customer asked for on the recovery page."""


class Notify(BaseModel):
    """Send one message step; `covers` are the reminder indexes it settles (late ones fold in)."""

    kind: Literal["notify"] = "notify"
    step: str
    template: str
    tone: Tone | None
    channels: list[Channel]
    covers: list[int] = []
    deadline: AwareDatetime | None = None
    hour_propensity: float | None = None
    """Learned message timing: the chance this reminder's hour had of being chosen (and
    `channel_propensity` its channels), for the learner to weigh it by."""
    channel_propensity: float | None = None


class Wait(BaseModel):
    """Sleep until `until` (forever when None) or until a signal changes the case."""

    kind: Literal["wait"] = "wait"
    until: AwareDatetime | None
    reason: str


class AwaitPaymentMethod(BaseModel):
    """The card cannot pay: wait for a new one, reminding the customer on schedule."""

    kind: Literal["await_payment_method"] = "await_payment_method"
    until: AwareDatetime | None
    reason: str


class Call(BaseModel):
    """Create the task for a person to phone the customer. Creating it contacts nobody, so
    it does not wait for contact hours (the task names the best time to call); `covers` are
    the policy's call steps it settles (late ones fold in, as reminders do)."""

    kind: Literal["call"] = "call"
    step: str
    covers: list[int]
    max_attempts: int


class Finish(BaseModel):
    """End the case, after the outcome's message when the policy sends one."""

    kind: Literal["finish"] = "finish"
    outcome: Outcome
    reason: str
    message: Notify | None = None
    write_back: list[WriteBackAction] = []


class AddLateFee(BaseModel):
    """Add the policy's late fee (`amount`, minor units) to the customer's next invoice."""

    kind: Literal["late_fee"] = "late_fee"
    amount: int
    label: str


Step = Charge | Notify | Wait | AwaitPaymentMethod | Finish | AddLateFee | Call | PublishEvent


def decide(state: CaseState, now: datetime) -> Step:
    """The next step for this case at `now`, under the policy the case started with."""
    # The product hears of the case first: its access hooks never wait for a charge or a message.
    if (event := due_event(state, now)) is not None:
        return event
    return case_step(state, now)


def case_step(state: CaseState, now: datetime) -> Step:
    """The case's own next step at `now`, its events to the product aside: what operators and
    the customer are shown while an event is being published."""
    if state.outcome is not None:
        return _finish_in_contact_hours(state, state.outcome, state.outcome_reason, now)
    if state.blocked is not None:
        return Wait(until=None, reason=f"for an operator to fix: {state.blocked}")
    if state.dispute_reason is not None:
        return Wait(until=None, reason=f"while the dispute is open ({state.dispute_reason})")
    if state.payment_requested_at is not None:
        label = "the customer's payment on the recovery page"
        return Charge(attempt=len(state.attempts) + 1, scheduled=False, label=label, requested=True)
    if state.pause is not None:
        return Wait(until=state.pause.until, reason=f"while paused by {state.pause.actor}")
    if state.confirmation is not None:
        # The customer just arranged it on the page and expects the confirmation now.
        template = "plan_confirmed" if state.plan else "promise_confirmed"
        return Notify(step=state.confirmation, template=template, tone=None, channels=["email"])
    if state.plan:
        return _installment_step(state, now)
    if state.promise is not None:
        if now < state.promise.pay_on:
            return Wait(until=state.promise.pay_on, reason="until the date the customer promised")
        if (network_allows_at := _network_allows_at(state)) is not None and now < network_allows_at:
            return Wait(until=network_allows_at, reason="until the card's network allows a charge")
        label = "the charge on the promised date"
        return Charge(attempt=len(state.attempts) + 1, scheduled=False, label=label, promised=True)

    fee_at = late_fee_at(state)
    if fee_at is not None and fee_at <= now:
        return _late_fee(state)

    charge_at = next_charge_at(state)
    if charge_at is not None and charge_at <= now:
        return _charge(state)

    # Only a case still dunning calls: not while held, arranged, paused or finished (above).
    due_calls = [i for i in _unmade_calls(state) if call_at(state, i) <= now]
    if due_calls:
        return _call(state, due_calls)

    due = [i for i in _unsent_reminders(state) if reminder_at(state, i) <= now]
    if due:
        contact_at = contact_time(state, now)
        if contact_at <= now:
            return _reminder(state, due, now)
        # Quiet hours: the reminder waits for the morning (and, being due, before collections).
        if charge_at is not None and charge_at < contact_at:
            return Wait(until=charge_at, reason=f"before {_charge(state).label}")
        sooner = [(call_at(state, i), "before a call task") for i in _unmade_calls(state)]
        if (event := next_event_at(state)) is not None:
            sooner.append(event)
        sooner = [w for w in sooner if w[0] < contact_at]
        if sooner:
            until, reason = min(sooner, key=lambda w: w[0])
            return Wait(until=until, reason=reason)
        return Wait(
            until=contact_at, reason=f"until contact hours ({_reminder_label(state, due[-1])})"
        )

    deadline = collections_at(state)
    if now >= deadline:
        return _finish_in_contact_hours(
            state, Outcome.COLLECTIONS, "the dunning schedule is exhausted", now
        )

    wakeups = [(deadline, "before the case goes to collections")]
    wakeups += [
        (reminder_at(state, i), _reminder_label(state, i)) for i in _unsent_reminders(state)
    ]
    if charge_at is not None:
        wakeups.append((charge_at, f"before {_charge(state).label}"))
    if fee_at is not None:
        wakeups.append((fee_at, "before the late fee"))
    wakeups += [(call_at(state, i), "before a call task") for i in _unmade_calls(state)]
    if (event := next_event_at(state)) is not None:
        wakeups.append(event)
    until, reason = min(wakeups, key=lambda w: w[0])
    if state.awaiting is not None and charge_at is None:
        return AwaitPaymentMethod(until=until, reason=reason)
    return Wait(until=until, reason=reason)


def next_charge_at(state: CaseState) -> datetime | None:
    """When the next charge is due, or None when no charge may happen."""
    policy = state.policy
    if len(state.attempts) >= policy.max_charge_attempts:
        return None
    if state.method_updated_at is not None:
        at = state.method_updated_at + policy.retry_after_method_update
    elif state.awaiting is not None:
        return None
    elif state.scheduled_retries_done < len(state.retry_offsets):
        at = state.schedule_origin + state.retry_offsets[state.scheduled_retries_done]
    else:
        return None
    if state.last_charge_at is not None:
        at = max(at, state.last_charge_at + policy.min_retry_gap)
    if (network_allows_at := _network_allows_at(state)) is not None:
        at = max(at, network_allows_at)
    return at


def _installment_step(state: CaseState, now: datetime) -> Charge | Wait:
    """A payment plan runs: charge the next installment on its date (or its retry, or soon
    after a new card), else wait for it."""
    installment = state.next_installment()
    retries = state.plan_offer.retries if state.plan_offer else []
    at = installment_charge_at(installment, state.installment_declines, retries) or now
    if state.method_updated_at is not None and state.installment_declines:
        at = min(at, state.method_updated_at + state.policy.retry_after_method_update)
    if (network_allows_at := _network_allows_at(state)) is not None:
        at = max(at, network_allows_at)
    label = f"installment {installment.number} of {len(state.plan)}"
    if at > now:
        return Wait(until=at, reason=f"before {label}")
    return Charge(
        attempt=len(state.attempts) + 1,
        scheduled=False,
        label=label,
        installment=installment.number,
        amount=state.installment_amount(installment),
    )


def _network_allows_at(state: CaseState) -> datetime | None:
    """When the card's network allows another reattempt (Visa: 15, Mastercard: 35 in 30
    days), or None when its cap is not reached: counted over this case's charges of the card,
    and over all of the customer's cases when the charge activity found the cap reached."""
    on_card = [a for a in state.attempts if a.payment_method == state.payment_method]
    rules = state.policy.declines.network(state.card_brand)
    own = None if rules is None else rules.allows_at([a.at for a in on_card])
    held = state.network_hold_until
    return max((at for at in (own, held) if at is not None), default=None)


def contact_time(state: CaseState, now: datetime) -> datetime:
    """The first moment from `now` at which the customer may be messaged."""
    return state.policy.contact_hours.next_contact_time(now, state.time_zones)


def reminder_at(state: CaseState, index: int) -> datetime:
    """When reminder `index` goes out: when the policy has it due, or, for a case with a
    message plan, at its send hour within a day of that (never past the next reminder's due
    time or collections, so the ladder keeps its order)."""
    choice = _message_choice(state, index)
    due = _due_at(state, index)
    if choice is None or choice.hour is None:
        return due
    later = [_due_at(state, i) for i in range(index + 1, len(state.policy.reminders))]
    return send_time(due, choice.hour, state.time_zones[0], min([collections_at(state), *later]))


def _due_at(state: CaseState, index: int) -> datetime:
    return state.schedule_origin + state.policy.reminders[index].after


def _message_choice(state: CaseState, index: int) -> MessageChoice | None:
    """Reminder `index`'s hour and channels under the case's message plan (None without
    one). Its hour moves only after day 0 and in a zone the case knows."""
    plan = state.message_plan
    if plan is None:
        return None
    reminder = state.policy.reminders[index]
    due_hour = None
    if reminder.after >= timedelta(days=1) and state.time_zones:
        due_hour = _due_at(state, index).astimezone(ZoneInfo(state.time_zones[0])).hour
    return choose_message(
        plan,
        state.case.case_id,
        index,
        reminder.tone,
        tuple(reminder.channels),
        state.policy.message_exploration,
        due_hour,
    )


def collections_at(state: CaseState) -> datetime:
    """When the case goes to collections: never sooner after the final notice than planned."""
    return _collections_at(state, state.final_notice_offset)


def _collections_at(state: CaseState, final_notice_offset: timedelta | None) -> datetime:
    """Collections for a final notice sent `final_notice_offset` into the schedule."""
    policy = state.policy
    after = policy.collections_after
    finals = [r for r in policy.reminders if r.tone is Tone.FINAL]
    if finals and final_notice_offset is not None:
        after = max(after, final_notice_offset + policy.collections_after - finals[0].after)
    return state.schedule_origin + after


def _unsent_reminders(state: CaseState) -> list[int]:
    return [i for i in range(len(state.policy.reminders)) if i not in state.reminders_done]


def call_at(state: CaseState, index: int) -> datetime:
    """When the policy's call step `index` is due: held time moves it on, as it does reminders."""
    return state.schedule_origin + state.policy.calls[index].after


def _unmade_calls(state: CaseState) -> list[int]:
    return [i for i in range(len(state.policy.calls)) if i not in state.calls_made]


def _call(state: CaseState, due: list[int]) -> Call:
    """One task for the latest due call step: after an outage nobody gets two at once."""
    index = due[-1]
    max_attempts = state.policy.calls[index].max_attempts
    return Call(step=f"call-{index + 1}", covers=due, max_attempts=max_attempts)


def _charge(state: CaseState) -> Charge:
    attempt = len(state.attempts) + 1
    if state.method_updated_at is not None:
        return Charge(
            attempt=attempt,
            scheduled=False,
            label="a charge of the new payment method",
            method_updated_at=state.method_updated_at,
        )
    retry = state.scheduled_retries_done + 1
    return Charge(
        attempt=attempt, scheduled=True, label=f"retry {retry} of {len(state.retry_offsets)}"
    )


def _late_fee(state: CaseState) -> AddLateFee:
    """The fee on what is still due when it falls due (a payment plan or promise holds it)."""
    fee = state.policy.late_fee
    amount = late_fee_amount(fee, state.amount_due)
    return AddLateFee(amount=amount, label=f"a late fee of {amount} {state.case.currency}")


def _reminder(state: CaseState, due: list[int], now: datetime) -> Notify:
    """Only the latest due reminder goes out: after an outage nobody gets a burst."""
    index = due[-1]
    reminder = state.policy.reminders[index]
    offset = state.final_notice_offset
    if reminder.tone is Tone.FINAL and offset is None:
        # A late final notice names the later collections date that sending it now sets.
        offset = now - state.schedule_origin
    choice = _message_choice(state, index)
    return Notify(
        step=f"reminder-{index + 1}",
        template=_reminder_template(state, reminder.tone),
        tone=reminder.tone,
        channels=list(reminder.channels if choice is None else choice.channels),
        covers=due,
        deadline=_collections_at(state, offset),
        hour_propensity=None if choice is None else choice.hour_propensity,
        channel_propensity=None if choice is None else choice.channel_propensity,
    )


def _reminder_template(state: CaseState, tone: Tone) -> str:
    if tone is Tone.FINAL:
        return "final_notice"
    if state.awaiting is DeclineClass.NEVER_RETRY:
        return "card_update"
    if state.awaiting is DeclineClass.NEEDS_CUSTOMER_ACTION:
        return "authentication_needed"
    return f"reminder_{tone}"


def _reminder_label(state: CaseState, index: int) -> str:
    tone = state.policy.reminders[index].tone
    return "before the final notice" if tone is Tone.FINAL else f"before the {tone} reminder"


def _finish_in_contact_hours(
    state: CaseState, outcome: Outcome, reason: str, now: datetime
) -> Finish | Wait:
    """Finish now, or wait for contact hours when the outcome sends a message."""
    finish = _finish(state, outcome, reason)
    if finish.message is not None:
        contact_at = contact_time(state, now)
        if contact_at > now:
            return Wait(until=contact_at, reason=f"until contact hours (the {outcome} message)")
    return finish


def _finish(state: CaseState, outcome: Outcome, reason: str) -> Finish:
    channels = state.policy.outcome_messages.get(outcome, [])
    message = None
    # A customer dunning never wrote to (the invoice was settled first) hears nothing now.
    if channels and (state.messages or not state.quiet_unless_messaged):
        message = Notify(
            step=f"outcome-{outcome}", template=outcome.value, tone=None, channels=list(channels)
        )
    write_back = [
        action
        for action in state.policy.write_back.get(outcome, [])
        # Only a payment the biller has not seen needs marking paid there.
        if action is not WriteBackAction.MARK_PAID_OUT_OF_BAND or state.paid_outside_biller
    ]
    return Finish(outcome=outcome, reason=reason, message=message, write_back=write_back)
