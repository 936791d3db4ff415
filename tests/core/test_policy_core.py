"""Unit tests of the pure policy core: `decide` and the `CaseState` folding rules.

Every test builds a case, folds events into it with explicit times and asserts the exact next
step: no server, no clock, no I/O. `play` drives a case the way DunningWorkflow does (expire
pause, decide, carry the step out, fold the result in) so whole schedules can be checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from pydantic import ValidationError

from tests.support.core import (
    AMOUNT,
    FAILED_AT,
    HARD,
    SCA,
    SOFT,
    at,
    charge,
    charge_times,
    make_policy,
    open_case,
    play,
    send,
    send_due,
    summary,
    timeline_kinds,
)
from workflows.case import CaseState
from workflows.contact_hours import ContactHours
from workflows.decide import (
    AwaitPaymentMethod,
    Charge,
    Finish,
    Notify,
    Wait,
    collections_at,
    decide,
    next_charge_at,
    reminder_at,
)
from workflows.models import (
    CancelRequest,
    CaseInput,
    CaseStatus,
    ChargeResult,
    DisputeOpened,
    DisputeResolved,
    Failure,
    PauseRequest,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentReceived,
    ResumeRequest,
    RetryRequest,
)
from workflows.policy import (
    Channel,
    DeclineClass,
    DeclineCodes,
    Outcome,
    Policy,
    Tone,
    WriteBackAction,
)

# Opening a case ----------------------------------------------------------------------------


def test_open_case_records_policy_and_failure(standard: Policy) -> None:
    state = open_case(standard)

    assert state.status is CaseStatus.ACTIVE
    assert state.amount_due == AMOUNT
    assert state.payment_method == "pm_old"
    assert [(e.seq, e.kind, e.at, e.detail) for e in state.timeline] == [
        (1, "opened", FAILED_AT, "standard v1; payment failed: insufficient_funds")
    ]


def test_open_case_without_decline_code_is_a_soft_decline(standard: Policy) -> None:
    state = open_case(standard, decline_code=None)

    assert state.awaiting is None
    assert state.timeline[0].detail == "standard v1; payment failed: unknown"
    assert next_charge_at(state) == at(2)


def test_hard_decline_at_open_awaits_a_new_card(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)

    assert state.awaiting is DeclineClass.NEVER_RETRY
    assert state.status is CaseStatus.AWAITING_PAYMENT_METHOD
    assert timeline_kinds(state) == ["opened", "awaiting_customer"]
    assert state.timeline[1].detail == "stolen_card: never_retry"


def test_failure_in_another_time_zone_keeps_the_same_instants(standard: Policy) -> None:
    tokyo = timezone(timedelta(hours=9))
    case = CaseInput(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        amount_due=AMOUNT,
        currency="JPY",
        failure=Failure(decline_code=SOFT, failed_at=datetime(2026, 11, 1, 18, tzinfo=tokyo)),
        policy_version=1,
    )
    state = CaseState.open(case, standard, FAILED_AT)

    assert next_charge_at(state) == at(2)
    assert collections_at(state) == at(22)


def test_failure_time_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Failure(decline_code=SOFT, failed_at=datetime(2026, 11, 1, 9))


# The standard schedule, end to end ---------------------------------------------------------


def test_standard_case_with_soft_declines_follows_the_schedule(standard: Policy) -> None:
    state = open_case(standard)

    steps = play(state, FAILED_AT, at(30))

    assert summary(steps) == [
        (at(1), "notify", "reminder-1 reminder_gentle"),
        (at(1), "wait", "02 09:00 before retry 1 of 4"),
        (at(2), "charge", "retry 1 of 4"),
        (at(2), "wait", "04 09:00 before retry 2 of 4"),
        (at(4), "charge", "retry 2 of 4"),
        (at(4), "wait", "05 09:00 before the gentle reminder"),
        (at(5), "notify", "reminder-2 reminder_gentle"),
        (at(5), "wait", "06 09:00 before retry 3 of 4"),
        (at(6), "charge", "retry 3 of 4"),
        (at(6), "wait", "08 09:00 before retry 4 of 4"),
        (at(8), "charge", "retry 4 of 4"),
        (at(8), "wait", "09 09:00 before the firm reminder"),
        (at(9), "notify", "reminder-3 reminder_firm"),
        (at(9), "wait", "15 09:00 before the final notice"),
        (at(15), "notify", "reminder-4 final_notice"),
        (at(15), "wait", "22 09:00 before the case goes to collections"),
        (at(22), "finish", "collections the dunning schedule is exhausted"),
    ]
    assert [a.attempt for a in state.attempts] == [1, 2, 3, 4]
    assert state.scheduled_retries_done == 4
    assert state.outcome is Outcome.COLLECTIONS
    assert state.closed_at == at(22)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_scheduled_retry_k_charges_at_failure_plus_its_offset(standard: Policy, k: int) -> None:
    state = open_case(standard)
    state.reminders_done = [0, 1, 2, 3]  # keep reminders out of the way
    for done in range(k):
        now = FAILED_AT + standard.retries[done]
        state.record_attempt(done + 1, True, ChargeResult(approved=False, decline_code=SOFT), now)
    due = FAILED_AT + standard.retries[k]

    assert decide(state, due - timedelta(seconds=1)) == Wait(
        until=due, reason=f"before retry {k + 1} of 4"
    )
    assert decide(state, due) == Charge(attempt=k + 1, scheduled=True, label=f"retry {k + 1} of 4")


def test_first_reminder_goes_out_at_once(standard: Policy) -> None:
    state = open_case(standard)

    assert decide(state, FAILED_AT) == Notify(
        step="reminder-1",
        template="reminder_gentle",
        tone=Tone.GENTLE,
        channels=[Channel.EMAIL, Channel.IN_APP],
        covers=[0],
        deadline=at(22),
    )


def test_sent_reminder_is_never_sent_again(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)

    assert state.reminders_done == [0]
    assert decide(state, FAILED_AT + timedelta(hours=1)) == Wait(
        until=at(2), reason="before retry 1 of 4"
    )
    assert state.messages[0].step == "reminder-1"
    assert state.messages_sent == 2


# Finish ------------------------------------------------------------------------------------


def test_approved_charge_recovers_the_case(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    charge(state, decide(state, at(2)), at(2), approved=True)

    assert state.status is CaseStatus.RECOVERED
    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)
    assert state.closed_at == at(2)
    assert decide(state, at(2)) == Finish(
        outcome=Outcome.RECOVERED,
        reason="charge attempt 1 approved",
        message=Notify(
            step="outcome-recovered", template="recovered", tone=None, channels=[Channel.EMAIL]
        ),
    )


def test_cancelled_case_finishes_without_message_when_policy_sends_none(
    standard: Policy,
) -> None:
    state = open_case(standard)
    state.cancel(CancelRequest(reason="subscription deleted", actor="billing"), at(3))

    assert state.status is CaseStatus.CANCELLED
    assert state.timeline[-2].kind == "cancel"
    assert state.timeline[-2].actor == "billing"
    assert decide(state, at(3)) == Finish(
        outcome=Outcome.CANCELLED, reason="subscription deleted", message=None
    )


def test_cancelled_case_sends_the_policy_outcome_message() -> None:
    policy = make_policy(outcome_messages={"cancelled": ["sms", "email"]})
    state = open_case(policy)
    send_due(state, FAILED_AT)
    state.cancel(CancelRequest(reason="invoice voided", actor="billing"), at(2))

    assert decide(state, at(2)) == Finish(
        outcome=Outcome.CANCELLED,
        reason="invoice voided",
        message=Notify(
            step="outcome-cancelled",
            template="cancelled",
            tone=None,
            channels=[Channel.SMS, Channel.EMAIL],
        ),
    )


def test_case_settled_before_any_message_ends_without_an_outcome_message() -> None:
    policy = make_policy(outcome_messages={"cancelled": ["email"], "recovered": ["email"]})
    state = open_case(policy)
    state.cancel(CancelRequest(reason="invoice voided", actor="billing"), FAILED_AT)

    finish = decide(state, FAILED_AT)
    assert isinstance(finish, Finish)
    assert (finish.outcome, finish.message) == (Outcome.CANCELLED, None)


def test_exhausted_schedule_goes_to_collections_with_message(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(21))

    assert decide(state, at(22) - timedelta(seconds=1)) == Wait(
        until=at(22), reason="before the case goes to collections"
    )
    assert decide(state, at(22)) == Finish(
        outcome=Outcome.COLLECTIONS,
        reason="the dunning schedule is exhausted",
        message=Notify(
            step="outcome-collections", template="collections", tone=None, channels=[Channel.EMAIL]
        ),
        write_back=[WriteBackAction.MARK_UNCOLLECTIBLE, WriteBackAction.CANCEL_SUBSCRIPTION_NOW],
    )


def test_collections_without_outcome_message_finishes_silently() -> None:
    policy = make_policy(outcome_messages={})
    state = open_case(policy)
    play(state, FAILED_AT, at(10))

    assert decide(state, at(11)) == Finish(
        outcome=Outcome.COLLECTIONS, reason="the dunning schedule is exhausted", message=None
    )


def test_finished_case_keeps_its_outcome_forever(standard: Policy) -> None:
    state = open_case(standard)
    state.cancel(CancelRequest(reason="written off", actor="ops"), at(2))
    state.conclude(Outcome.COLLECTIONS, "the dunning schedule is exhausted", at(30))

    step = decide(state, at(30))

    assert isinstance(step, Finish)
    assert (step.outcome, step.reason) == (Outcome.CANCELLED, "written off")
    assert state.closed_at == at(2)


def test_projections_carry_the_same_figures_and_their_own_facts(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    state.hold(PauseRequest(reason="customer on holiday", actor="support"), at(2))
    with pytest.raises(ValueError, match="not concluded"):
        state.result(at(2))

    record = state.record(state.timeline[-1:])
    view = state.view("wait", at(9), "paused", at(2))
    state.receive_payment(PaymentReceived(amount=AMOUNT, actor="support"), at(3))
    result = state.result(at(4))

    assert (record.case_id, record.amount_due, record.currency) == ("case-1", AMOUNT, "USD")
    assert (record.decline_code, record.decline_class) == (HARD, "never_retry")
    assert record.status is CaseStatus.PAUSED and [e.kind for e in record.entries] == ["paused"]
    assert (view.paused_by, view.pause_reason, view.next_action_at) == (
        "support",
        "customer on holiday",
        at(9),
    )
    assert (result.outcome, result.amount_recovered, result.closed_at) == (
        Outcome.RECOVERED,
        AMOUNT,
        at(3),
    )


def test_cancel_after_finish_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT, actor="support"), at(2))
    state.cancel(CancelRequest(reason="too late", actor="billing"), at(3))

    assert state.outcome is Outcome.RECOVERED
    assert state.timeline[-1].kind == "ignored"
    assert state.timeline[-1].detail == "cancel: case is already recovered"


# Reminders: folding late ones, tone ladder and templates -----------------------------------


def test_only_the_latest_overdue_reminder_goes_out_and_covers_earlier() -> None:
    state = open_case(make_policy(retries=[]))  # reminders on days 0, 3 and 5

    step = decide(state, at(6, 10))

    assert step == Notify(
        step="reminder-3",
        template="final_notice",
        tone=Tone.FINAL,
        channels=[Channel.EMAIL],
        covers=[0, 1, 2],
        deadline=at(11, 10),
    )
    send(state, step, at(6, 10))
    assert sorted(state.reminders_done) == [0, 1, 2]
    assert [m.step for m in state.messages] == ["reminder-3"]
    assert decide(state, at(6, 11)) == Wait(
        until=at(11, 10), reason="before the case goes to collections"
    )


def test_two_overdue_reminders_send_only_the_second() -> None:
    state = open_case(make_policy(retries=[]))
    send_due(state, FAILED_AT)

    step = decide(state, at(6, 12))

    assert isinstance(step, Notify)
    assert (step.step, step.covers, step.tone) == ("reminder-3", [1, 2], Tone.FINAL)


def test_outage_catches_up_with_one_reminder_and_spaced_charges(standard: Policy) -> None:
    state = open_case(standard)  # nothing ran until day 5, 10:00

    steps = play(state, at(5, 10), at(6, 12))

    assert summary(steps) == [
        (at(5, 10), "charge", "retry 1 of 4"),
        (at(5, 10), "notify", "reminder-2 reminder_gentle"),
        (at(5, 10), "wait", "05 22:00 before retry 2 of 4"),
        (at(5, 22), "charge", "retry 2 of 4"),
        (at(5, 22), "wait", "06 10:00 before retry 3 of 4"),
        (at(6, 10), "charge", "retry 3 of 4"),
        (at(6, 10), "wait", "08 09:00 before retry 4 of 4"),
    ]
    notify = steps[1][1]
    assert isinstance(notify, Notify) and notify.covers == [0, 1]


@pytest.mark.parametrize(
    ("tone", "template"),
    [
        (Tone.GENTLE, "reminder_gentle"),
        (Tone.FIRM, "reminder_firm"),
        (Tone.FINAL, "final_notice"),
    ],
)
def test_reminder_template_follows_the_tone(tone: Tone, template: str) -> None:
    policy = make_policy(
        retries=[], reminders=[{"after": timedelta(0), "tone": tone, "channels": ["email"]}]
    )
    state = open_case(policy)

    step = decide(state, FAILED_AT)

    assert isinstance(step, Notify)
    assert (step.template, step.tone) == (template, tone)


@pytest.mark.parametrize(
    ("decline_code", "tone", "template"),
    [
        (HARD, Tone.GENTLE, "card_update"),
        (HARD, Tone.FIRM, "card_update"),
        (HARD, Tone.FINAL, "final_notice"),
        (SCA, Tone.GENTLE, "authentication_needed"),
        (SCA, Tone.FIRM, "authentication_needed"),
        (SCA, Tone.FINAL, "final_notice"),
        (SOFT, Tone.FIRM, "reminder_firm"),
    ],
)
def test_reminder_template_asks_for_what_the_decline_needs(
    decline_code: str, tone: Tone, template: str
) -> None:
    policy = make_policy(reminders=[{"after": timedelta(0), "tone": tone, "channels": ["email"]}])
    state = open_case(policy, decline_code=decline_code)

    step = decide(state, FAILED_AT)

    assert isinstance(step, Notify)
    assert (step.template, step.tone) == (template, tone)


def test_reminders_climb_the_standard_ladder(standard: Policy) -> None:
    state = open_case(standard)
    steps = play(state, FAILED_AT, at(30))

    sent = [(s.step, s.tone, s.template, s.channels) for _, s in steps if isinstance(s, Notify)]
    assert sent == [
        ("reminder-1", Tone.GENTLE, "reminder_gentle", [Channel.EMAIL, Channel.IN_APP]),
        ("reminder-2", Tone.GENTLE, "reminder_gentle", [Channel.EMAIL]),
        ("reminder-3", Tone.FIRM, "reminder_firm", [Channel.EMAIL, Channel.SMS]),
        ("reminder-4", Tone.FINAL, "final_notice", [Channel.EMAIL, Channel.SMS, Channel.IN_APP]),
    ]
    assert state.schedule_origin + state.final_notice_offset == at(15)


def test_reminder_after_new_card_uses_the_plain_tone_template() -> None:
    state = open_case(make_policy(retries=[]), decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(2))
    charge(state, decide(state, at(2, 9, 5)), at(2, 9, 5), code=SOFT)

    step = decide(state, at(4))

    assert isinstance(step, Notify)
    assert (step.step, step.template) == ("reminder-2", "reminder_firm")


# Waiting -----------------------------------------------------------------------------------


def test_wait_reason_names_the_next_retry(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    charge(state, decide(state, at(2)), at(2))

    assert decide(state, at(2)) == Wait(until=at(4), reason="before retry 2 of 4")


def test_wait_until_the_next_reminder_when_it_comes_before_the_retry() -> None:
    policy = make_policy(retries=[timedelta(days=4)])
    state = open_case(policy)
    send_due(state, FAILED_AT)

    assert decide(state, at(1, 10)) == Wait(until=at(4), reason="before the firm reminder")


def test_wait_until_collections_when_nothing_else_is_left() -> None:
    policy = make_policy(retries=[], reminders=[])
    state = open_case(policy)

    assert decide(state, FAILED_AT) == Wait(
        until=at(11), reason="before the case goes to collections"
    )


def test_retry_and_reminder_due_together_charge_first(standard: Policy) -> None:
    state = open_case(standard)

    assert decide(state, at(2)) == Charge(attempt=1, scheduled=True, label="retry 1 of 4")


# Awaiting a new payment method -------------------------------------------------------------


def test_hard_decline_waits_for_new_card(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    reminder = decide(state, FAILED_AT)
    assert isinstance(reminder, Notify)
    assert reminder.template == "card_update"
    send(state, reminder, FAILED_AT)

    assert next_charge_at(state) is None
    assert decide(state, FAILED_AT) == AwaitPaymentMethod(
        until=at(5), reason="before the gentle reminder"
    )
    # The day-1 retry never comes: a hard decline is not charged again.
    assert decide(state, at(2)) == AwaitPaymentMethod(
        until=at(5), reason="before the gentle reminder"
    )


def test_hard_decline_on_a_retry_stops_scheduled_charges(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    charge(state, decide(state, at(2)), at(2), code="lost_card")

    assert state.status is CaseStatus.AWAITING_PAYMENT_METHOD
    assert decide(state, at(4)) == AwaitPaymentMethod(
        until=at(5), reason="before the gentle reminder"
    )
    assert state.timeline[-1].kind == "awaiting_customer"
    assert state.timeline[-1].detail == "lost_card: never_retry"


def test_hard_decline_case_still_goes_to_collections(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)

    steps = play(state, FAILED_AT, at(30))

    assert charge_times(steps) == []
    templates = [s.template for _, s in steps if isinstance(s, Notify)]
    assert templates == ["card_update", "card_update", "card_update", "final_notice"]
    assert isinstance(steps[-1][1], Finish)
    assert steps[-1] == (
        at(22),
        Finish(
            outcome=Outcome.COLLECTIONS,
            reason="the dunning schedule is exhausted",
            message=Notify(
                step="outcome-collections",
                template="collections",
                tone=None,
                channels=[Channel.EMAIL],
            ),
            write_back=[
                WriteBackAction.MARK_UNCOLLECTIBLE,
                WriteBackAction.CANCEL_SUBSCRIPTION_NOW,
            ],
        ),
    )


def test_new_card_is_charged_after_retry_after_method_update(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(
        PaymentMethodUpdated(payment_method="pm_new", actor="customer"), at(3, 12)
    )

    assert state.payment_method == "pm_new"
    assert state.timeline[-1].kind == "payment_method_updated"
    assert decide(state, at(3, 12, 4)) == Wait(
        until=at(3, 12, 5), reason="before a charge of the new payment method"
    )
    assert decide(state, at(3, 12, 5)) == Charge(
        attempt=1,
        scheduled=False,
        label="a charge of the new payment method",
        method_updated_at=at(3, 12),
    )


def test_new_card_approved_recovers_the_case(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(3))
    charge(state, decide(state, at(3, 9, 5)), at(3, 9, 5), approved=True)

    assert state.outcome is Outcome.RECOVERED
    assert state.outcome_reason == "charge attempt 1 approved"
    assert state.scheduled_retries_done == 0
    assert state.method_updated_at is None


def test_new_card_soft_decline_resumes_the_scheduled_retries(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(3))
    charge(state, decide(state, at(3, 9, 5)), at(3, 9, 5), code=SOFT)

    assert state.awaiting is None
    assert state.method_updated_at is None
    assert state.status is CaseStatus.ACTIVE
    # Retry 1 (day 1) is overdue, but not sooner than 12 h after the new card's charge.
    assert next_charge_at(state) == at(3, 21, 5)
    assert decide(state, at(3, 21, 5)) == Charge(attempt=2, scheduled=True, label="retry 1 of 4")


def test_new_card_hard_decline_awaits_another_card(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(3))
    charge(state, decide(state, at(3, 9, 5)), at(3, 9, 5), code="expired_card")

    assert state.awaiting is DeclineClass.NEVER_RETRY
    assert decide(state, at(3, 10)) == AwaitPaymentMethod(
        until=at(5), reason="before the gentle reminder"
    )


def test_card_given_while_the_previous_new_card_is_charged_gets_its_own_charge(
    standard: Policy,
) -> None:
    state = open_case(standard, decline_code=HARD)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_first"), at(3))
    step = decide(state, at(3, 9, 5))
    # The customer adds another card while the first one's charge is still running.
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_second"), at(3, 9, 6))
    charge(state, step, at(3, 9, 7), code="expired_card")

    assert state.method_updated_at == at(3, 9, 6)
    assert decide(state, at(3, 21, 7)) == Charge(
        attempt=2,
        scheduled=False,
        label="a charge of the new payment method",
        method_updated_at=at(3, 9, 6),
    )


def test_new_card_during_soft_schedule_is_charged_out_of_turn(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    state.update_payment_method(PaymentMethodUpdated(payment_method=None), at(1, 15))

    assert state.payment_method == "pm_old"  # no new id given: keep charging the default
    assert decide(state, at(1, 15, 5)) == Charge(
        attempt=1,
        scheduled=False,
        label="a charge of the new payment method",
        method_updated_at=at(1, 15),
    )


def test_needs_customer_action_sends_link_and_does_not_charge(standard: Policy) -> None:
    state = open_case(standard, decline_code=SCA)

    assert state.status is CaseStatus.AWAITING_CUSTOMER_ACTION
    step = decide(state, FAILED_AT)
    assert isinstance(step, Notify)
    assert step.template == "authentication_needed"
    send(state, step, FAILED_AT)
    assert decide(state, at(2)) == AwaitPaymentMethod(
        until=at(5), reason="before the gentle reminder"
    )


def test_repeated_hard_decline_notes_awaiting_once(
    standard: Policy,
) -> None:
    state = open_case(standard, decline_code=HARD)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_2"), at(2))
    charge(state, Charge(attempt=1, scheduled=False, label="x"), at(2), code="lost_card")

    assert timeline_kinds(state).count("awaiting_customer") == 1


# Pause -------------------------------------------------------------------------------------


def pause(
    state: CaseState, now: datetime, until: datetime | None = None, actor: str = "agent@example"
) -> None:
    state.hold(PauseRequest(reason="ticket 42", actor=actor, until=until), now)


def test_paused_case_waits_until_the_pause_ends(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    pause(state, at(1, 12), until=at(4, 12))

    assert state.status is CaseStatus.PAUSED
    assert state.timeline[-1].kind == "paused"
    assert state.timeline[-1].detail == "ticket 42 until 2026-11-04 12:00 UTC"
    # The day-1 retry is due but a paused case neither charges nor reminds.
    assert decide(state, at(2)) == Wait(until=at(4, 12), reason="while paused by agent@example")


def test_pause_without_until_waits_until_resumed(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(1, 12))

    assert decide(state, at(30)) == Wait(until=None, reason="while paused by agent@example")


def test_expired_pause_resumes_and_moves_the_schedule_on(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    pause(state, at(1, 12), until=at(4, 12))

    state.expire_pause(at(4, 12))

    assert state.pause is None
    assert state.status is CaseStatus.ACTIVE
    assert state.time_held == timedelta(days=3)
    assert state.schedule_origin == at(4)
    assert (state.timeline[-1].kind, state.timeline[-1].actor) == ("resumed", "dunning")
    assert decide(state, at(4, 12)) == Wait(until=at(5), reason="before retry 1 of 4")
    assert reminder_at(state, 1) == at(8)
    assert collections_at(state) == at(25)


def test_pause_that_has_not_expired_stays(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(1, 12), until=at(4, 12))

    state.expire_pause(at(4, 11, 59))

    assert state.pause is not None
    assert state.time_held == timedelta(0)


def test_resume_moves_every_later_step_by_the_time_held(standard: Policy) -> None:
    state = open_case(standard)
    before = play(state, FAILED_AT, at(3))  # reminder 1 and retry 1 done
    pause(state, at(3))
    state.release(ResumeRequest(actor="agent@example"), at(5, 21))

    steps = play(state, at(5, 21), at(30))

    assert charge_times(before) == [at(2)]
    assert state.time_held == timedelta(days=2, hours=12)
    # Days 3, 5 and 7 of the schedule, each 2.5 days later.
    assert charge_times(steps) == [at(6, 21), at(8, 21), at(10, 21)]
    assert [t for t, s in steps if isinstance(s, Notify)] == [at(7, 21), at(11, 21), at(17, 21)]
    assert steps[-1][0] == at(24, 21)
    assert isinstance(steps[-1][1], Finish)


def test_resume_when_not_paused_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    before = state.model_dump(exclude={"timeline"})

    state.release(ResumeRequest(actor="agent@example"), at(2))

    assert state.model_dump(exclude={"timeline"}) == before
    last = state.timeline[-1]
    assert (last.kind, last.actor, last.detail) == (
        "ignored",
        "agent@example",
        "resume: case case-1 is not paused",
    )


def test_pause_when_finished_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT), at(2))

    pause(state, at(3))

    assert state.pause is None
    assert state.held_since is None
    assert state.timeline[-1].kind == "ignored"
    assert state.timeline[-1].detail == "pause: case case-1 is already recovered"
    assert decide(state, at(3)).kind == "finish"


def test_second_pause_is_ignored_and_keeps_the_first(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(2), until=at(4), actor="first@example")

    pause(state, at(3), until=at(9), actor="second@example")

    assert state.pause is not None
    assert (state.pause.actor, state.pause.until) == ("first@example", at(4))
    assert state.held_since == at(2)
    assert state.timeline[-1].detail == "pause: case case-1 is already paused by first@example"


def test_pause_until_the_past_is_ignored(standard: Policy) -> None:
    state = open_case(standard)

    pause(state, at(3), until=at(3))

    assert state.pause is None
    assert state.timeline[-1].kind == "ignored"
    assert state.timeline[-1].detail == "pause: `until` is already past"


def test_refuse_pause_and_resume_explain_why(standard: Policy) -> None:
    state = open_case(standard)
    assert state.refuse_pause() is None
    assert state.refuse_resume() == "case case-1 is not paused"

    pause(state, at(2), actor="ann")
    assert state.refuse_pause() == "case case-1 is already paused by ann"
    assert state.refuse_resume() is None

    state.cancel(CancelRequest(reason="voided", actor="billing"), at(3))
    assert state.refuse_pause() == "case case-1 is already cancelled"
    assert state.refuse_resume() == "case case-1 is already cancelled"


def test_resume_after_finish_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(2))
    state.cancel(CancelRequest(reason="voided", actor="billing"), at(3))

    state.release(ResumeRequest(actor="ann"), at(4))

    assert state.timeline[-1].detail == "resume: case case-1 is already cancelled"
    assert state.outcome is Outcome.CANCELLED


# Dispute -----------------------------------------------------------------------------------


def test_open_dispute_stops_charges_and_messages(standard: Policy) -> None:
    state = open_case(standard)
    state.open_dispute(DisputeOpened(reason="fraudulent", actor="stripe"), FAILED_AT)

    assert state.status is CaseStatus.DISPUTED
    waiting = Wait(until=None, reason="while the dispute is open (fraudulent)")
    assert decide(state, FAILED_AT) == waiting  # not even the day-0 reminder
    assert decide(state, at(2)) == waiting
    assert decide(state, at(30)) == waiting  # nor collections


def test_dispute_without_reason_still_holds() -> None:
    state = open_case(make_policy())
    state.open_dispute(DisputeOpened(), at(1, 10))

    assert state.dispute_reason == "dispute opened"
    assert decide(state, at(2)) == Wait(
        until=None, reason="while the dispute is open (dispute opened)"
    )


def test_won_dispute_resumes_with_the_schedule_moved_on(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    state.open_dispute(DisputeOpened(reason="not received"), at(1, 12))

    state.resolve_dispute(DisputeResolved(won=True, actor="stripe"), at(6, 12))

    assert state.status is CaseStatus.ACTIVE
    assert state.time_held == timedelta(days=5)
    assert state.timeline[-1].detail == "won"
    assert decide(state, at(6, 12)) == Wait(until=at(7), reason="before retry 1 of 4")
    assert collections_at(state) == at(27)


def test_lost_dispute_cancels_the_case(standard: Policy) -> None:
    state = open_case(standard)
    state.open_dispute(DisputeOpened(reason="fraudulent"), at(2))

    state.resolve_dispute(DisputeResolved(won=False), at(9))

    assert state.status is CaseStatus.CANCELLED
    assert state.dispute_reason is None
    assert decide(state, at(9)) == Finish(
        outcome=Outcome.CANCELLED, reason="dispute lost", message=None
    )


def test_second_dispute_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.open_dispute(DisputeOpened(reason="first"), at(2))

    state.open_dispute(DisputeOpened(reason="second", actor="stripe"), at(3))

    assert state.dispute_reason == "first"
    assert state.held_since == at(2)
    last = state.timeline[-1]
    assert (last.kind, last.actor, last.detail) == (
        "ignored",
        "stripe",
        "dispute_opened: a dispute is already open",
    )


def test_dispute_resolution_without_dispute_is_ignored(standard: Policy) -> None:
    state = open_case(standard)

    state.resolve_dispute(DisputeResolved(won=False), at(3))

    assert state.outcome is None
    assert state.timeline[-1].detail == "dispute_resolved: no dispute is open"


def test_dispute_after_finish_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT), at(2))

    state.open_dispute(DisputeOpened(reason="late"), at(3))

    assert state.dispute_reason is None
    assert state.timeline[-1].detail == "dispute_opened: case is already recovered"


def test_overlapping_pause_and_dispute_count_held_time_once(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(1, 12))
    state.open_dispute(DisputeOpened(reason="chargeback"), at(2, 12))
    state.release(ResumeRequest(actor="ann"), at(3, 12))

    assert state.time_held == timedelta(0)  # the dispute still holds the case
    assert decide(state, at(3, 12)).kind == "wait"

    state.resolve_dispute(DisputeResolved(won=True), at(4, 12))

    assert state.time_held == timedelta(days=3)
    assert state.held_since is None
    assert next_charge_at(state) == at(5)


def test_dispute_while_paused_outlives_the_pause_expiry(standard: Policy) -> None:
    state = open_case(standard)
    pause(state, at(1, 12), until=at(3, 12))
    state.open_dispute(DisputeOpened(reason="chargeback"), at(2, 12))

    state.expire_pause(at(3, 12))

    assert state.pause is None
    assert state.status is CaseStatus.DISPUTED
    assert decide(state, at(3, 12)) == Wait(
        until=None, reason="while the dispute is open (chargeback)"
    )


# Payments received elsewhere ---------------------------------------------------------------


def test_partial_payment_lowers_amount_due_and_case_goes_on(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)

    state.receive_payment(PaymentReceived(amount=1900, reference="bank-7"), at(1, 12))

    assert (state.amount_due, state.amount_recovered) == (3000, 1900)
    assert state.outcome is None
    assert state.timeline[-1].detail == "1900 ref bank-7"
    assert decide(state, at(1, 12)) == Wait(until=at(2), reason="before retry 1 of 4")

    charge(state, decide(state, at(2)), at(2), approved=True)

    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)
    assert state.outcome is Outcome.RECOVERED


def test_full_payment_recovers_the_case(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    state.receive_payment(PaymentReceived(amount=1000), at(2))

    state.receive_payment(
        PaymentReceived(amount=AMOUNT - 1000, reference="phone-9", actor="support"), at(3)
    )

    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)
    assert state.closed_at == at(3)
    # Paid by phone: the biller has not seen it, so the invoice is marked paid there.
    assert decide(state, at(3)) == Finish(
        outcome=Outcome.RECOVERED,
        reason="payment received ref phone-9",
        message=Notify(
            step="outcome-recovered", template="recovered", tone=None, channels=[Channel.EMAIL]
        ),
        write_back=[WriteBackAction.MARK_PAID_OUT_OF_BAND],
    )


def test_overpayment_recovers_only_the_amount_due(standard: Policy) -> None:
    state = open_case(standard)

    state.receive_payment(PaymentReceived(amount=AMOUNT * 2), at(2))

    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)
    assert state.outcome is Outcome.RECOVERED


def test_payment_after_finish_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.cancel(CancelRequest(reason="voided", actor="billing"), at(2))

    state.receive_payment(PaymentReceived(amount=AMOUNT, actor="support"), at(3))

    assert (state.amount_due, state.amount_recovered) == (AMOUNT, 0)
    assert state.outcome is Outcome.CANCELLED
    last = state.timeline[-1]
    assert (last.kind, last.actor, last.detail) == (
        "ignored",
        "support",
        "payment_received: case is already cancelled",
    )


def test_payment_method_update_after_finish_is_ignored(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT), at(2))

    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(3))

    assert state.payment_method == "pm_old"
    assert state.method_updated_at is None
    assert state.timeline[-1].kind == "ignored"


# Caps and spacing of charges ---------------------------------------------------------------


def test_new_card_charge_keeps_min_retry_gap_after_last_charge(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    charge(state, decide(state, at(2)), at(2), code=HARD)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(2, 10))

    assert next_charge_at(state) == at(2, 21)
    assert decide(state, at(2, 10, 5)) == Wait(
        until=at(2, 21), reason="before a charge of the new payment method"
    )
    assert decide(state, at(2, 21)).kind == "charge"


def test_charge_error_retries_the_same_attempt_after_the_gap(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    state.record_charge_error(1, "gateway unreachable", at(2))

    assert state.attempts == []
    assert state.timeline[-1].kind == "charge_error"
    assert decide(state, at(2, 20)) == Wait(until=at(2, 21), reason="before retry 1 of 4")
    assert decide(state, at(2, 21)) == Charge(attempt=1, scheduled=True, label="retry 1 of 4")


def test_no_two_charges_closer_than_min_retry_gap() -> None:
    policy = make_policy(
        retries=[timedelta(hours=1), timedelta(hours=2), timedelta(hours=3)],
        min_retry_gap=timedelta(hours=6),
        max_charge_attempts=3,
        reminders=[],
    )
    state = open_case(policy)

    steps = play(state, FAILED_AT, at(30))

    assert charge_times(steps) == [at(1, 10), at(1, 16), at(1, 22)]


def test_max_charge_attempts_caps_new_card_charges() -> None:
    policy = make_policy(max_charge_attempts=3, reminders=[])
    state = open_case(policy)
    play(state, FAILED_AT, at(3, 12))  # retries on days 1 and 2, both declined
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_2"), at(4))
    charge(state, decide(state, at(4, 9, 5)), at(4, 9, 5), code=HARD)
    assert len(state.attempts) == 3

    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_3"), at(5))

    assert next_charge_at(state) is None
    assert decide(state, at(5, 9, 5)) == AwaitPaymentMethod(
        until=at(11), reason="before the case goes to collections"
    )


def test_max_charge_attempts_caps_scheduled_retries() -> None:
    policy = make_policy(
        retries=[timedelta(days=1), timedelta(days=2)], max_charge_attempts=2, reminders=[]
    )
    state = open_case(policy)
    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_2"), at(1, 10))
    charge(state, decide(state, at(1, 10, 5)), at(1, 10, 5))

    steps = play(state, at(1, 10, 5), at(30))

    assert charge_times(steps) == [at(2, 9)]
    assert len(state.attempts) == 2
    assert state.scheduled_retries_done == 1
    assert steps[-2][1] == Wait(until=at(11), reason="before the case goes to collections")


def test_standard_policy_never_charges_more_than_eight_times(standard: Policy) -> None:
    state = open_case(standard, decline_code=HARD)
    now = FAILED_AT
    for _ in range(12):
        state.update_payment_method(PaymentMethodUpdated(payment_method="pm_x"), now)
        step = decide(state, now + timedelta(days=1))
        if isinstance(step, Charge):
            charge(state, step, now + timedelta(days=1), code=HARD)
        now += timedelta(days=1)

    assert len(state.attempts) == standard.max_charge_attempts == 8
    gaps = [b.at - a.at for a, b in zip(state.attempts, state.attempts[1:], strict=False)]
    assert min(gaps) >= standard.min_retry_gap


# Collections date --------------------------------------------------------------------------


def test_final_notice_on_time_keeps_the_collections_date(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(16))

    assert state.schedule_origin + state.final_notice_offset == at(15)
    assert collections_at(state) == at(22)


def test_late_final_notice_moves_collections_later(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(10))  # up to the firm reminder; then an outage until day 17

    final = decide(state, at(17))
    assert isinstance(final, Notify)
    assert (final.step, final.template) == ("reminder-4", "final_notice")
    send(state, final, at(17))

    assert collections_at(state) == at(24)
    assert decide(state, at(22)) == Wait(until=at(24), reason="before the case goes to collections")
    assert decide(state, at(24)).kind == "finish"


def test_late_final_notice_names_the_collections_date_it_sets(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(10))

    final = decide(state, at(17))

    assert isinstance(final, Notify)
    assert final.deadline == at(24)
    send(state, final, at(17))
    assert collections_at(state) == final.deadline


def test_final_notice_sent_after_collections_date_still_gives_its_week(
    standard: Policy,
) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(10))

    # The worker was down past day 22: the final notice goes first, collections a week later.
    final = decide(state, at(25))
    assert isinstance(final, Notify)
    assert final.tone is Tone.FINAL
    send(state, final, at(25))

    week_later = datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert decide(state, at(25)) == Wait(
        until=week_later, reason="before the case goes to collections"
    )


def test_pause_after_late_final_notice_still_moves_collections(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(10))
    send_due(state, at(17))  # final notice two days late: collections on day 24
    pause(state, at(18))
    state.release(ResumeRequest(actor="ann"), at(20))

    # Holding stops the clock: two days paused move collections from day 24 to day 26.
    assert collections_at(state) == at(26)
    assert decide(state, at(24)) == Wait(until=at(26), reason="before the case goes to collections")


def test_dispute_after_final_notice_moves_collections_by_time_held(standard: Policy) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(16))  # final notice on time, on day 14
    state.open_dispute(DisputeOpened(reason="chargeback"), at(16))
    state.resolve_dispute(DisputeResolved(won=True), at(19))

    assert collections_at(state) == at(25)
    assert decide(state, at(22)) == Wait(until=at(25), reason="before the case goes to collections")


def test_reminders_before_the_final_notice_name_the_planned_collections_date(
    standard: Policy,
) -> None:
    state = open_case(standard)
    play(state, FAILED_AT, at(9, 8))  # every retry done; the firm reminder is next

    firm = decide(state, at(9))

    assert isinstance(firm, Notify)
    assert firm.deadline == at(22)


# Network rules, advice codes and the biller's own failures --------------------------------


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        # Visa category 1 ("never approve") overrides a soft decline code.
        (
            {"decline_code": "do_not_honor", "network_decline_code": "04", "card_brand": "visa"},
            DeclineClass.NEVER_RETRY,
        ),
        (
            {"decline_code": "do_not_honor", "network_decline_code": "05", "card_brand": "visa"},
            DeclineClass.RETRY_LATER,
        ),
        # Mastercard merchant advice 03 and 21: stop; 01 (new account info) says nothing here.
        (
            {
                "decline_code": "do_not_honor",
                "network_advice_code": "21",
                "card_brand": "mastercard",
            },
            DeclineClass.NEVER_RETRY,
        ),
        (
            {
                "decline_code": "do_not_honor",
                "network_advice_code": "01",
                "card_brand": "mastercard",
            },
            DeclineClass.RETRY_LATER,
        ),
        # The same network code on another brand means nothing.
        (
            {"decline_code": "do_not_honor", "network_decline_code": "04", "card_brand": "amex"},
            DeclineClass.RETRY_LATER,
        ),
        # Stripe's advice_code: the most severe rule wins, whichever field it came from.
        (
            {"decline_code": "insufficient_funds", "advice_code": "do_not_try_again"},
            DeclineClass.NEVER_RETRY,
        ),
        (
            {"decline_code": "authentication_required", "advice_code": "try_again_later"},
            DeclineClass.NEEDS_CUSTOMER_ACTION,
        ),
    ],
)
def test_network_and_advice_codes_classify_declines(
    standard: Policy, codes: dict[str, str], expected: DeclineClass
) -> None:
    assert standard.declines.classify(DeclineCodes(**codes)) is expected


def test_visa_category_one_on_a_retry_stops_scheduled_charges(standard: Policy) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    result = ChargeResult(
        approved=False, decline_code="do_not_honor", network_decline_code="14", card_brand="visa"
    )
    state.record_attempt(1, True, result, at(2))

    assert state.status is CaseStatus.AWAITING_PAYMENT_METHOD
    assert next_charge_at(state) is None
    assert state.attempts[0].network_decline_code == "14"
    assert state.timeline[-2].detail == "attempt 1: do_not_honor (visa 14)"


def test_network_cap_holds_retries_until_the_window_lets_one_through() -> None:
    policy = make_policy(
        retries=[timedelta(days=1), timedelta(days=2), timedelta(days=3)],
        collections_after=timedelta(days=40),
        declines={"networks": {"visa": {"max_attempts": 2, "window": timedelta(days=30)}}},
    )
    state = open_case(policy)
    soft_visa = ChargeResult(approved=False, decline_code=SOFT, card_brand="visa")
    state.record_attempt(1, True, soft_visa, at(2))
    state.record_attempt(2, True, soft_visa, at(3))

    # Retry 3 was due on day 4; Visa allows a third reattempt only 30 days after the first.
    assert next_charge_at(state) == at(2) + timedelta(days=30)


def test_network_cap_counts_only_the_card_it_is_about() -> None:
    policy = make_policy(
        declines={"networks": {"visa": {"max_attempts": 1, "window": timedelta(days=30)}}},
    )
    state = open_case(policy)
    state.record_attempt(
        1, True, ChargeResult(approved=False, decline_code=SOFT, card_brand="visa"), at(2)
    )
    assert next_charge_at(state) == at(2) + timedelta(days=30)

    state.update_payment_method(PaymentMethodUpdated(payment_method="pm_new"), at(2, 10))
    assert next_charge_at(state) == at(2, 21)  # a new card: only the min_retry_gap applies


def test_biller_reported_hard_failure_stops_retries(standard: Policy) -> None:
    state = open_case(standard)
    state.record_failure(PaymentFailed(decline_code="lost_card", actor="stripe"), at(1, 12))

    assert state.status is CaseStatus.AWAITING_PAYMENT_METHOD
    assert next_charge_at(state) is None
    assert [e.kind for e in state.timeline][-2:] == ["payment_failed", "awaiting_customer"]


def test_payment_the_biller_already_shows_is_not_written_back(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT, paid_at_biller=True), at(3))

    step = decide(state, at(3))
    assert isinstance(step, Finish)
    assert step.outcome is Outcome.RECOVERED
    assert step.write_back == []


# Contact hours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "due_utc", "morning_utc"),
    [
        # 17:00 UTC is 02:00 in Tokyo (UTC+9): wait until 08:00 there, 23:00 UTC.
        (
            "Asia/Tokyo",
            datetime(2026, 11, 1, 17, tzinfo=UTC),
            datetime(2026, 11, 1, 23, tzinfo=UTC),
        ),
        # 10:00 UTC is 02:00 in Los Angeles (PST, UTC-8): wait until 08:00 there, 16:00 UTC.
        (
            "America/Los_Angeles",
            datetime(2026, 11, 1, 10, tzinfo=UTC),
            datetime(2026, 11, 1, 16, tzinfo=UTC),
        ),
    ],
)
def test_reminder_due_at_night_waits_for_eight_local(
    standard: Policy, zone: str, due_utc: datetime, morning_utc: datetime
) -> None:
    case = open_case(standard).case.model_copy(
        update={"failure": Failure(decline_code=SOFT, failed_at=due_utc)}
    )
    state = CaseState.open(case, standard, due_utc)
    state.time_zones = [zone]

    assert decide(state, due_utc) == Wait(
        until=morning_utc, reason="until contact hours (before the gentle reminder)"
    )
    step = decide(state, morning_utc)
    assert isinstance(step, Notify)
    assert step.step == "reminder-1"


def test_contact_hours_hold_in_every_zone_the_customer_may_be_in(standard: Policy) -> None:
    hours = standard.contact_hours
    # 15:30 UTC: 07:30 in Los Angeles, 10:30 in New York. Both allow it from 16:00 UTC.
    now = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)
    zones = ["America/New_York", "America/Los_Angeles"]

    assert hours.next_contact_time(now, zones) == datetime(2026, 11, 2, 16, tzinfo=UTC)
    assert hours.next_contact_time(now, ["America/New_York"]) == now


def test_zones_with_no_common_window_fall_back_to_the_first() -> None:
    hours = ContactHours()
    now = datetime(2026, 11, 2, 0, tzinfo=UTC)  # 09:00 in Tokyo, 01:00 in London
    # Tokyo and Honolulu (19 hours apart) never share 08:00-21:00.
    assert hours.next_contact_time(now, ["Asia/Tokyo", "Pacific/Honolulu"]) == now


def test_unknown_zone_or_disabled_hours_contact_at_once(standard: Policy) -> None:
    night = datetime(2026, 11, 2, 3, tzinfo=UTC)
    assert standard.contact_hours.next_contact_time(night, []) == night
    assert ContactHours(enabled=False).next_contact_time(night, ["UTC"]) == night


def test_outcome_message_at_night_waits_but_the_case_is_recovered(standard: Policy) -> None:
    state = open_case(standard)
    state.time_zones = ["UTC"]
    send_due(state, FAILED_AT)
    state.receive_payment(PaymentReceived(amount=AMOUNT, paid_at_biller=True), at(3, 23))

    assert state.outcome is Outcome.RECOVERED
    assert decide(state, at(3, 23)) == Wait(
        until=at(4, 8), reason="until contact hours (the recovered message)"
    )
    assert isinstance(decide(state, at(4, 8)), Finish)


def test_contact_hours_must_be_a_window_within_a_day() -> None:
    with pytest.raises(ValidationError, match="end must be after start"):
        ContactHours(start=time(21), end=time(8))


def test_the_failure_that_opened_the_case_is_not_recorded_twice(standard: Policy) -> None:
    state = open_case(standard)
    before = len(state.timeline)

    state.record_failure(PaymentFailed(decline_code=SOFT, actor="stripe"), FAILED_AT)

    assert len(state.timeline) == before


def test_a_charge_approved_after_the_case_ended_does_not_end_it_again(standard: Policy) -> None:
    state = open_case(standard)
    state.receive_payment(PaymentReceived(amount=AMOUNT, paid_at_biller=True), at(2))
    state.record_attempt(1, True, ChargeResult(approved=True), at(2, 9, 1))

    assert [e.kind for e in state.timeline].count("recovered") == 1
    assert state.timeline[-1].kind == "charge_after_outcome"
    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)


def test_a_blocked_case_waits_for_an_operator_and_never_reaches_collections(
    standard: Policy,
) -> None:
    state = open_case(standard)
    send_due(state, FAILED_AT)
    state.block("charge attempt 1: Stripe rejected the API key", at(2))

    assert state.status is CaseStatus.BLOCKED
    later = decide(state, at(30))  # long past collections
    assert later == Wait(
        until=None, reason="for an operator to fix: charge attempt 1: Stripe rejected the API key"
    )
    assert state.refuse_pause() is None  # support may still pause it
    assert state.refuse_retry() is None

    state.retry(RetryRequest(actor="ops"), at(12))
    assert state.status is CaseStatus.ACTIVE
    assert state.time_held == at(12) - at(2)  # the schedule moved on by the held time
    step = decide(state, at(12))
    assert isinstance(step, Charge) and step.attempt == 1
    assert state.refuse_retry() == "case case-1 is not blocked"


def test_cases_started_before_the_quiet_rule_still_send_their_outcome_message() -> None:
    policy = make_policy(outcome_messages={"cancelled": ["email"]})
    state = open_case(policy)
    state.quiet_unless_messaged = False  # what workflow.patched gives a case started earlier
    state.cancel(CancelRequest(reason="invoice voided", actor="billing"), FAILED_AT)

    finish = decide(state, FAILED_AT)
    assert isinstance(finish, Finish) and finish.message is not None
