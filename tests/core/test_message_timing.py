"""Learned message timing, pure: the message model finds what planted histories hold (and
nothing in thin or confounded ones), and `decide` applies a case's plan inside contact hours.

Histories are synthetic: reminders sent at hours and on channels drawn evenly (as explored
reminders are), each segment with its own planted best hour and channel.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.support.core import FAILED_AT, at, make_policy, open_case, play
from workflows import message_timing
from workflows.case import CaseState
from workflows.contact_hours import ContactHours
from workflows.decide import Notify, decide, reminder_at
from workflows.message_timing import (
    SEND_HOURS,
    MessageModel,
    MessageOutcome,
    MessagePlan,
    SegmentAdvice,
    choose_message,
    fit_messages,
    plan_messages,
    send_time,
)
from workflows.policy import Channel, Policy, Tone

NOW = datetime(2026, 11, 1, tzinfo=UTC)
BERLIN = "Europe/Berlin"
EMAIL, SMS, IN_APP = Channel.EMAIL, Channel.SMS, Channel.IN_APP


def history(
    segment: str,
    n: int,
    *,
    best_hour: int = 12,
    best_channel: Channel = EMAIL,
    final_one_helps: bool | None = None,
    drawn: bool = True,
    seed: int = 1,
) -> list[MessageOutcome]:
    """`n` reminders of `segment` at hours and on one channel drawn evenly (when `drawn`);
    customers act on 8% of them, 25% at `best_hour` or on `best_channel`. A fifth are final
    notices, on one channel or on three; `final_one_helps` plants which loses customers."""
    rng = random.Random(f"{segment}:{seed}")
    outcomes = []
    for _ in range(n):
        hour = rng.choice(SEND_HOURS)
        final = rng.random() < 0.2
        channel = rng.choice([EMAIL, SMS])
        several = final and rng.random() < 0.5
        channels = [EMAIL, SMS, IN_APP] if several else [channel]
        act = 0.08 + 0.17 * (hour == best_hour) + 0.17 * (channel == best_channel and not final)
        lost = 0.02
        if final and final_one_helps is not None:
            lost = 0.3 if several == final_one_helps else 0.02
        outcomes.append(
            MessageOutcome(
                segment=segment,
                hour=hour,
                tone=Tone.FINAL if final else Tone.GENTLE,
                channels=channels,
                acted=rng.random() < act,
                lost=rng.random() < lost,
                hour_propensity=0.2 if drawn else 1.0,
                channel_propensity=(1 / 3 if final else 0.5) if drawn else 1.0,
            )
        )
    return outcomes


# Fitting -------------------------------------------------------------------------------------


def test_fit_finds_each_segments_planted_hour_and_channel() -> None:
    outcomes = history("DE", 4000, best_hour=18, best_channel=SMS)
    outcomes += history("US", 4000, best_hour=12, best_channel=EMAIL)

    model = fit_messages(outcomes, version=3, now=NOW)

    de, us = model.segments["DE"], model.segments["US"]
    assert (de.send_hour, de.channel_order) == (18, (SMS, EMAIL))
    assert (us.send_hour, us.channel_order) == (12, (EMAIL, SMS))
    assert model.trained_on == 8000
    assert MessageModel.model_validate_json(model.model_dump_json()) == model


def test_thin_history_changes_nothing() -> None:
    model = fit_messages(history("DE", 60, best_hour=18, best_channel=SMS), version=1, now=NOW)

    plan = plan_messages(model, "de")

    assert (plan.send_hour, plan.channel_order, plan.escalate_final) == (None, None, True)
    assert plan.model_version == 1
    assert plan.reason.startswith("message model v1, DE (60 reminders)")


def test_hours_nobody_drew_do_not_steer() -> None:
    """Reminders as written go at the hour the payment failed, which is also when the fixed
    retries charge: however strong, such a pattern is not evidence about the hour."""
    outcomes = history("DE", 4000, best_hour=18, best_channel=SMS, drawn=False)

    advice = fit_messages(outcomes, version=1, now=NOW).segments["DE"]

    assert (advice.send_hour, advice.channel_order) == (None, None)


def test_final_notice_goes_on_one_channel_only_where_that_was_shown_to_help() -> None:
    outcomes = history("GB", 4000, final_one_helps=True)
    outcomes += history("JP", 4000, final_one_helps=False)
    outcomes += history("FR", 4000)  # either way alike
    outcomes += history("NL", 100, final_one_helps=True)  # too few final notices

    segments = fit_messages(outcomes, version=1, now=NOW).segments

    assert segments["GB"].escalate_final is False
    assert segments["JP"].escalate_final is True
    assert segments["FR"].escalate_final is True
    assert segments["NL"].escalate_final is True


def test_no_model_or_an_unseen_segment_is_the_policy_as_written() -> None:
    model = fit_messages(history("DE", 4000, best_hour=18), version=2, now=NOW)

    for plan in (plan_messages(None, "DE"), plan_messages(model, None)):
        assert (plan.send_hour, plan.channel_order, plan.escalate_final) == (None, None, True)
    assert plan_messages(None, "DE").reason == "as written: no message model"
    assert plan_messages(model, None).reason == (
        "as written: message model v2 has no reminders of unknown"
    )
    assert plan_messages(model, " de ").send_hour == 18


# Applying a plan -----------------------------------------------------------------------------

SMS_AT_18 = MessagePlan(
    send_hour=18, channel_order=(SMS, EMAIL), escalate_final=False, reason="planted"
)


def messaging_policy(**changes: object) -> Policy:
    """The small policy with a final notice on three channels."""
    reminders = [
        {"after": timedelta(0), "tone": "gentle", "channels": ["email"]},
        {"after": timedelta(days=3), "tone": "firm", "channels": ["email", "sms"]},
        {"after": timedelta(days=5), "tone": "final", "channels": ["email", "sms", "in_app"]},
    ]
    return make_policy(reminders=reminders, message_timing="learned", **changes)


def planned_case(policy: Policy, plan: MessagePlan | None, zone: str = BERLIN) -> CaseState:
    state = open_case(policy)
    state.time_zones = [zone]
    if plan is not None:
        state.follow_message_plan(plan, FAILED_AT)
    return state


def notifications(state: CaseState) -> list[tuple[datetime, list[Channel]]]:
    steps = play(state, FAILED_AT, at(12))
    return [(when, step.channels) for when, step in steps if isinstance(step, Notify)]


def test_decide_sends_reminders_at_the_plans_hour_on_its_channels() -> None:
    state = planned_case(messaging_policy(), SMS_AT_18)

    # Berlin is UTC+1 in November: 18:00 there is 17:00 UTC, on each reminder's due day.
    assert notifications(state) == [
        (FAILED_AT, [SMS]),  # day 0 goes when due, SMS first
        (at(4, 17), [SMS, EMAIL]),  # both interrupting channels, as written
        (at(6, 17), [SMS, IN_APP]),  # the final notice: the first channel and in-app
    ]
    assert state.timeline[1].kind == "message_plan"


def test_a_send_hour_already_passed_on_the_due_day_waits_for_the_next_day() -> None:
    state = planned_case(messaging_policy(), SMS_AT_18.model_copy(update={"send_hour": 9}))

    # Due at 10:00 Berlin; 09:00 has passed, so 09:00 the next day: never more than a day late.
    assert reminder_at(state, 1) == at(5, 8)


def test_the_final_notice_escalates_where_the_plan_says_so() -> None:
    plan = SMS_AT_18.model_copy(update={"escalate_final": True})

    final = notifications(planned_case(messaging_policy(), plan))[-1]

    assert final == (at(6, 17), [SMS, EMAIL, IN_APP])


@pytest.mark.parametrize("hour", SEND_HOURS)
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles", BERLIN])
def test_a_plan_never_breaks_contact_hours(hour: int, zone: str) -> None:
    hours = ContactHours(start=time(10), end=time(17))
    plan = SMS_AT_18.model_copy(update={"send_hour": hour})
    state = planned_case(messaging_policy(contact_hours=hours), plan, zone)

    sent = notifications(state)

    assert len(sent) == 3
    assert all(hours.allows(when, zone) for when, _ in sent)


def test_a_plan_as_written_changes_nothing() -> None:
    policy = messaging_policy()
    as_written = MessagePlan(reason="as written: no message model")

    planned = play(planned_case(policy, as_written), FAILED_AT, at(12))
    unplanned = play(planned_case(policy, None), FAILED_AT, at(12))

    assert [when for when, _ in planned] == [when for when, _ in unplanned]
    assert [steady(step) for _, step in planned] == [steady(step) for _, step in unplanned]


def steady(step: object) -> dict:
    """A step without the chances a planned reminder records."""
    return step.model_dump(exclude={"hour_propensity", "channel_propensity"})


def test_the_shift_never_passes_the_next_reminder() -> None:
    reminders = [
        {"after": timedelta(days=1), "tone": "gentle", "channels": ["email"]},
        {"after": timedelta(days=1, hours=2), "tone": "firm", "channels": ["email"]},
    ]
    state = planned_case(make_policy(reminders=reminders, message_timing="learned"), SMS_AT_18)

    # 18:00 Berlin would come after the firm reminder is due (12:00 Berlin): kept as due.
    assert reminder_at(state, 0) == at(2, 9)
    assert reminder_at(state, 1) == at(2, 17)


def test_send_time_is_within_a_day_and_never_past_its_limit() -> None:
    due = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # the night Berlin moves to summer time
    for hour in range(24):
        sent = send_time(due, hour, BERLIN, due + timedelta(days=2))
        assert due <= sent < due + timedelta(days=1)
        assert sent.astimezone(ZoneInfo(BERLIN)).hour == hour or hour == 2  # 02:00 is skipped
    assert send_time(due, 9, BERLIN, due + timedelta(hours=1)) == due


def test_exploration_draws_hours_and_channels_evenly_and_records_their_chances() -> None:
    plan = MessagePlan(send_hour=18, reason="planted")
    choices = [
        choose_message(plan, f"case-{i}", 1, Tone.GENTLE, (EMAIL, IN_APP), 0.2, 10)
        for i in range(3000)
    ]

    moved = [c for c in choices if c.hour != 18]
    assert 0.13 < len(moved) / len(choices) < 0.19  # 20% drawn, a fifth of them land on 18
    assert {round(c.hour_propensity, 6) for c in moved} == {0.04}
    assert {round(c.hour_propensity, 6) for c in choices if c.hour == 18} == {0.84}
    assert {c.channels for c in choices} == {(EMAIL, IN_APP), (SMS, IN_APP)}
    sms = [c for c in choices if c.channels == (SMS, IN_APP)]
    assert 0.07 < len(sms) / len(choices) < 0.13
    assert {round(c.channel_propensity, 6) for c in sms} == {0.1}
    message_timing._choose.cache_clear()  # drawn again, not remembered
    again = choose_message(plan, "case-7", 1, Tone.GENTLE, (EMAIL, IN_APP), 0.2, 10)
    assert again == choices[7]


def test_day_zero_reminders_keep_their_hour_even_when_explored() -> None:
    plan = MessagePlan(send_hour=18, reason="planted")

    choices = [
        choose_message(plan, f"case-{i}", 0, Tone.GENTLE, (EMAIL,), 0.2, None) for i in range(500)
    ]

    assert {(c.hour, c.hour_propensity) for c in choices} == {(None, 1.0)}


def test_segment_advice_of_a_plan_is_what_the_model_says() -> None:
    model = MessageModel(
        version=4,
        trained_at=NOW,
        trained_on=5000,
        segments={
            "BR": SegmentAdvice(
                reminders=5000, send_hour=9, channel_order=(SMS, EMAIL), escalate_final=False
            )
        },
    )

    plan = plan_messages(model, "BR")

    assert (plan.send_hour, plan.channel_order, plan.escalate_final) == (9, (SMS, EMAIL), False)
    assert plan.reason == (
        "message model v4, BR (5000 reminders): reminders at 9:00 local, channels sms first, "
        "final notice on one channel"
    )
    assert decide(planned_case(messaging_policy(), plan), FAILED_AT).channels == [SMS]
