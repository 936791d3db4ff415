"""The customer's conversation, alone: merging, the weekly budget, contact hours, repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.conversation import (
    MERGE_WINDOW,
    OUTCOME_GATHER,
    CaseJoined,
    CaseLeft,
    Close,
    Conclude,
    Conversation,
    ConversationCase,
    OutcomeDue,
    ReminderDue,
    Rest,
    Send,
    Settle,
    conversation_view,
    decide_conversation,
    outcome_request,
)
from workflows.policy import Channel, Tone

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def case(n: int, amount: int = 1000, currency: str = "USD") -> ConversationCase:
    return ConversationCase(
        case_id=f"in_{n}",
        invoice_id=f"in_{n}",
        workflow_id=f"dunning-in_{n}",
        amount_due=amount,
        currency=currency,
        collections_at=NOON + timedelta(days=21),
    )


def reminder(
    n: int,
    at: datetime,
    tone: Tone = Tone.GENTLE,
    step: str = "reminder-1",
    channels: tuple[Channel, ...] = (Channel.EMAIL,),
    deadline: datetime | None = None,
) -> ReminderDue:
    return ReminderDue(
        customer_id="cus_1",
        case=case(n),
        step=step,
        template="final_notice" if tone is Tone.FINAL else f"reminder_{tone}",
        tone=tone,
        channels=list(channels),
        due_at=at,
        deadline=deadline,
        failed_at=at,
    )


def conversation(*cases: int, per_week: int = 4, zones: tuple[str, ...] = ()) -> Conversation:
    talk = Conversation(customer_id="cus_1")
    for n in cases:
        talk.hear(
            CaseJoined(
                customer_id="cus_1",
                case=case(n),
                time_zones=list(zones),
                messages_per_week=per_week,
            ),
            NOON,
        )
    return talk


def send_now(talk: Conversation, now: datetime) -> Send:
    step = decide_conversation(talk, now)
    assert isinstance(step, Send), step
    talk.record_sent(step, now)
    return step


def test_a_lone_reminder_goes_out_at_once_naming_every_open_invoice():
    talk = conversation(1, 2)
    talk.hear(reminder(1, NOON), NOON)
    step = send_now(talk, NOON)
    assert step.lead.case.case_id == "in_1"
    assert [i.invoice_id for i in step.open_invoices] == ["in_1", "in_2"]
    rest = decide_conversation(talk, NOON)
    assert isinstance(rest, Rest)
    assert rest.until is None


def test_a_reminder_the_last_message_already_carried_is_settled_without_a_message():
    talk = conversation(1, 2)
    talk.hear(reminder(1, NOON), NOON)
    send_now(talk, NOON)
    later = NOON + timedelta(hours=5)
    talk.hear(reminder(2, later), later)
    step = decide_conversation(talk, later)
    assert isinstance(step, Settle)
    assert [r.case.case_id for r in step.reminders] == ["in_2"]


def test_a_firmer_reminder_is_not_carried_by_a_gentler_message_and_waits_out_the_window():
    talk = conversation(1, 2)
    talk.hear(reminder(1, NOON), NOON)
    send_now(talk, NOON)
    later = NOON + timedelta(hours=5)
    talk.hear(reminder(2, later, Tone.FIRM, "reminder-3"), later)
    step = decide_conversation(talk, later)
    assert isinstance(step, Rest)
    assert step.until == NOON + MERGE_WINDOW


def test_reminders_of_invoices_that_failed_the_same_day_travel_as_one_message():
    talk = conversation(1)
    talk.hear(reminder(1, NOON), NOON)
    send_now(talk, NOON)
    for n, hours in ((2, 3), (3, 20)):
        at = NOON + timedelta(hours=hours)
        talk.hear(CaseJoined(customer_id="cus_1", case=case(n)), at)
        talk.hear(reminder(n, at), at)
    assert isinstance(decide_conversation(talk, NOON + timedelta(hours=21)), Rest)
    step = send_now(talk, NOON + MERGE_WINDOW)
    assert sorted(r.case.case_id for r in step.reminders) == ["in_2", "in_3"]
    assert [i.invoice_id for i in step.open_invoices] == ["in_1", "in_2", "in_3"]


def test_the_firmest_reminder_leads_and_the_channels_are_their_union():
    talk = conversation(1, 2)
    talk.hear(reminder(1, NOON, Tone.GENTLE, channels=(Channel.IN_APP,)), NOON)
    final = reminder(2, NOON, Tone.FINAL, "reminder-4", (Channel.SMS, Channel.EMAIL))
    talk.hear(final, NOON)
    step = send_now(talk, NOON)
    assert step.lead == final
    assert step.channels == [Channel.EMAIL, Channel.SMS, Channel.IN_APP]


@pytest.mark.parametrize("per_week", [1, 2, 3])
def test_reminders_give_way_once_the_week_is_spent_and_in_app_counts(per_week: int):
    talk = conversation(1, per_week=per_week)
    for day in range(per_week):
        at = NOON + timedelta(days=2 * day)
        talk.hear(reminder(1, at, step=f"r-{day}", channels=(Channel.IN_APP,)), at)
        send_now(talk, at)
    # Firmer, so no earlier message carries it; the budget is spent within the week.
    later = NOON + timedelta(days=2 * per_week)
    talk.hear(reminder(1, later, Tone.FIRM, "firm"), later)
    step = decide_conversation(talk, later)
    assert isinstance(step, Settle)
    assert "frequency cap" in step.detail
    # A week after the first, there is room again.
    talk.hear(reminder(1, NOON + timedelta(days=7, hours=1), Tone.FIRM, "firm-2"), later)
    assert isinstance(decide_conversation(talk, NOON + timedelta(days=7, hours=1)), Send)


def test_a_final_notice_never_gives_way_it_waits_for_room_and_names_a_later_deadline():
    talk = conversation(1, per_week=2)
    for hours in (0, 30):
        at = NOON + timedelta(hours=hours)
        talk.hear(reminder(1, at, Tone.GENTLE, f"r-{hours}"), at)
        send_now(talk, at)
    due = NOON + timedelta(days=2)
    deadline = due + timedelta(days=7)
    talk.hear(reminder(1, due, Tone.FINAL, "final", deadline=deadline), due)
    rest = decide_conversation(talk, due)
    assert isinstance(rest, Rest)
    assert rest.until == NOON + timedelta(days=7)  # the oldest message leaves the window
    step = send_now(talk, rest.until)
    assert step.lead.step == "final"
    named = next(i for i in step.open_invoices if i.case_id == "in_1")
    assert named.deadline == deadline + (rest.until - due)


def test_messages_wait_for_contact_hours_in_every_zone_of_the_customer():
    talk = conversation(1, zones=("Asia/Tokyo",))
    night = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo
    talk.hear(reminder(1, night), night)
    step = decide_conversation(talk, night)
    assert isinstance(step, Rest)
    assert step.until == datetime(2026, 12, 7, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo


def test_a_repeated_note_is_heard_once_and_a_finished_case_never_rejoins():
    talk = conversation(1, 2)
    note = reminder(2, NOON)
    talk.hear(note, NOON)
    talk.hear(note, NOON)
    assert len(talk.waiting) == 1
    send_now(talk, NOON)
    talk.hear(note, NOON + timedelta(minutes=1))
    assert talk.waiting == []

    talk.hear(CaseLeft(customer_id="cus_1", case_id="in_2", outcome="recovered"), NOON)
    talk.hear(CaseJoined(customer_id="cus_1", case=case(2)), NOON)
    assert list(talk.cases) == ["in_1"]


def test_a_reminder_of_a_case_that_finished_is_dropped_and_the_last_case_closes_it():
    talk = conversation(1)
    talk.hear(reminder(1, NOON), NOON)
    talk.hear(CaseLeft(customer_id="cus_1", case_id="in_1", outcome="recovered"), NOON)
    assert talk.waiting == []
    assert isinstance(decide_conversation(talk, NOON), Close)


def test_earlier_messages_count_against_a_new_conversations_budget():
    talk = conversation(1, per_week=2)
    talk.remember_sent([NOON - timedelta(days=6), NOON - timedelta(days=1)])
    talk.hear(reminder(1, NOON), NOON)
    step = decide_conversation(talk, NOON)
    assert isinstance(step, Settle)


def test_the_view_shows_what_is_owed_messages_this_week_and_next_contact():
    talk = conversation(1, 2, per_week=3)
    talk.hear(reminder(1, NOON), NOON)
    send_now(talk, NOON)
    later = NOON + timedelta(hours=2)
    talk.hear(reminder(2, later, Tone.FIRM, "reminder-3"), later)
    view = conversation_view(talk, later)
    assert view.owed == {"USD": 2000}
    assert view.messages_this_week == 1
    assert view.waiting_reminders == ["in_2:reminder-3"]
    assert view.next_contact_at == NOON + MERGE_WINDOW


def test_the_state_forgets_what_it_no_longer_needs():
    talk = conversation(1, 2)
    talk.hear(reminder(2, NOON), NOON)
    send_now(talk, NOON)
    talk.hear(CaseLeft(customer_id="cus_1", case_id="in_2", outcome="recovered"), NOON)
    month_later = NOON + timedelta(days=30)
    talk.hear(reminder(1, month_later, step="late"), month_later)
    assert talk.sent == []
    assert talk.answered == []


def test_the_merge_window_is_the_policys():
    talk = conversation(1, 2)
    talk.hear(
        CaseJoined(customer_id="cus_1", case=case(2), merge_window=timedelta(minutes=20)), NOON
    )
    talk.hear(reminder(1, NOON), NOON)
    send_now(talk, NOON)
    later = NOON + timedelta(minutes=5)
    talk.hear(reminder(2, later, Tone.FIRM, "reminder-3"), later)
    rest = decide_conversation(talk, later)
    assert isinstance(rest, Rest)
    assert rest.until == NOON + timedelta(minutes=20)


def outcome(n: int, at: datetime, template: str = "recovered") -> OutcomeDue:
    return OutcomeDue(
        customer_id="cus_1",
        case=case(n),
        step=f"outcome-{template}",
        template=template,
        channels=[Channel.EMAIL],
        due_at=at,
        amount_paid=1000 * n,
    )


def test_receipts_of_cases_paid_together_go_out_as_one():
    talk = conversation(1, 2, 3)
    for n in (1, 2, 3):
        at = NOON + timedelta(seconds=10 * n)
        talk.hear(outcome(n, at), at)
        talk.hear(CaseLeft(customer_id="cus_1", case_id=f"in_{n}", outcome="recovered"), at)
    rest = decide_conversation(talk, NOON + timedelta(seconds=30))
    assert isinstance(rest, Rest)
    assert rest.until == NOON + timedelta(seconds=10) + OUTCOME_GATHER
    step = decide_conversation(talk, rest.until)
    assert isinstance(step, Conclude)
    assert [o.case.case_id for o in step.outcomes] == ["in_1", "in_2", "in_3"]
    request = outcome_request(talk, step, rest.until)
    assert [(i.invoice_id, i.amount_due) for i in request.open_invoices] == [
        ("in_1", 1000),
        ("in_2", 2000),
        ("in_3", 3000),
    ]
    assert request.tone is None and request.failed_at is None  # a receipt goes out regardless
    talk.record_concluded(step)
    talk.hear(outcome(2, rest.until), rest.until)  # a repeat, after its case left
    assert isinstance(decide_conversation(talk, rest.until), Close)


def test_a_hand_off_to_collections_goes_out_on_its_own():
    talk = conversation(1, 2)
    talk.hear(outcome(1, NOON, "collections"), NOON)
    talk.hear(outcome(2, NOON, "collections"), NOON)
    step = decide_conversation(talk, NOON + OUTCOME_GATHER)
    assert isinstance(step, Conclude)
    assert [o.case.case_id for o in step.outcomes] == ["in_1"]
    assert outcome_request(talk, step, NOON).open_invoices == []
