"""Agent call tasks, the pure rules (workflows/calls.py) and the policy core's call step: the
best local time to call, Regulation F's 7 calls in 7 days and quiet hours, across zones and
daylight-saving changes; a call step made once per case, only while it is still dunning."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from tests.support.core import at, make_policy, open_case, play, summary
from workflows.calls import (
    CALL_LIMIT,
    calls_in_window,
    limit_lifts_at,
    next_call_at,
    refuse_call,
    task_stays_open,
)
from workflows.contact_hours import ContactHours
from workflows.decide import Call, Wait, decide
from workflows.models import (
    CallNoted,
    CallOutcome,
    CallTaskCreated,
    DisputeOpened,
    PauseRequest,
    PaymentReceived,
    PlanChosen,
    PromiseToPay,
)
from workflows.policy import CallStep
from workflows.steps import fold_call_task, fold_signal

HOURS = ContactHours()
NEW_YORK = "America/New_York"
LOS_ANGELES = "America/Los_Angeles"


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def zoned(zone: str, *args: int) -> datetime:
    """A wall-clock time in `zone`, as an instant."""
    return datetime(*args, tzinfo=ZoneInfo(zone))


# The best time to call ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "best"),
    [
        # 01:00: nobody is called before 08:00, and late morning is better still.
        (zoned(NEW_YORK, 2026, 11, 10, 1, 0), zoned(NEW_YORK, 2026, 11, 10, 10, 0)),
        # Already late morning: now.
        (zoned(NEW_YORK, 2026, 11, 10, 10, 40), zoned(NEW_YORK, 2026, 11, 10, 10, 40)),
        # Lunch time: early evening.
        (zoned(NEW_YORK, 2026, 11, 10, 12, 30), zoned(NEW_YORK, 2026, 11, 10, 17, 0)),
        # Past the evening window: tomorrow's late morning, not 20:30 tonight.
        (zoned(NEW_YORK, 2026, 11, 10, 19, 30), zoned(NEW_YORK, 2026, 11, 11, 10, 0)),
    ],
)
def test_the_best_time_is_late_morning_or_early_evening_local(now, best) -> None:
    assert next_call_at(now, [], [NEW_YORK], HOURS) == best


@pytest.mark.parametrize(
    ("now", "best_utc"),
    [
        # US daylight saving ends on 1 November 2026: 10:00 that morning is EST (UTC-5).
        (zoned(NEW_YORK, 2026, 10, 31, 20, 0), datetime(2026, 11, 1, 15, 0, tzinfo=UTC)),
        # ... and begins on 8 March 2026: 10:00 that morning is EDT (UTC-4).
        (zoned(NEW_YORK, 2026, 3, 7, 20, 0), datetime(2026, 3, 8, 14, 0, tzinfo=UTC)),
    ],
    ids=["autumn", "spring"],
)
def test_the_best_time_keeps_local_hours_across_daylight_saving(now, best_utc) -> None:
    best = next_call_at(now, [], [NEW_YORK], HOURS)
    assert best == best_utc
    assert local(best, NEW_YORK).time() == time(10, 0)


def test_a_number_spanning_zones_is_called_in_hours_everywhere() -> None:
    # 05:00 in New York, 02:00 in Los Angeles: 08:00 on the west coast is 11:00 in the east,
    # late morning there, and the first moment both allow.
    now = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
    best = next_call_at(now, [], [NEW_YORK, LOS_ANGELES], HOURS)
    assert best == datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    assert all(HOURS.allows(best, zone) for zone in (NEW_YORK, LOS_ANGELES))


def test_zones_in_the_best_hours_together_are_preferred() -> None:
    # Tokyo and Seoul share a clock: 10:00 in both beats any moment good for one.
    now = zoned("Asia/Tokyo", 2026, 11, 10, 9, 0)
    best = next_call_at(now, [], ["Asia/Tokyo", "Asia/Seoul"], HOURS)
    assert best == zoned("Asia/Tokyo", 2026, 11, 10, 10, 0)


def test_zones_that_never_share_calling_hours_fall_back_to_the_first() -> None:
    narrow = ContactHours(start=time(9), end=time(12))
    now = zoned("Europe/London", 2026, 11, 10, 6, 0)
    best = next_call_at(now, [], ["Europe/London", "Asia/Tokyo"], narrow)
    assert best == zoned("Europe/London", 2026, 11, 10, 10, 0)


def test_half_hour_zones_get_their_local_best_hour() -> None:
    now = zoned("Asia/Kolkata", 2026, 11, 10, 7, 0)
    assert next_call_at(now, [], ["Asia/Kolkata"], HOURS) == zoned(
        "Asia/Kolkata", 2026, 11, 10, 10, 0
    )


def test_without_a_known_zone_the_call_may_be_made_at_once() -> None:
    now = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
    assert next_call_at(now, [], [], HOURS) == now


def test_calls_keep_quiet_hours_when_a_policy_turned_contact_hours_off() -> None:
    off = ContactHours(enabled=False)
    night = zoned(NEW_YORK, 2026, 11, 10, 23, 0)
    assert "23:00 in America/New_York" in refuse_call(night, [], [NEW_YORK], off)
    assert next_call_at(night, [], [NEW_YORK], off) == zoned(NEW_YORK, 2026, 11, 11, 10, 0)


# Regulation F: 7 calls in 7 days, none in quiet hours ---------------------------------------

MONDAY = datetime(2026, 11, 9, 15, 0, tzinfo=UTC)  # 10:00 in New York
SEVEN = [MONDAY + timedelta(hours=i) for i in range(CALL_LIMIT)]


def test_an_eighth_call_within_seven_days_is_refused_until_the_first_ages_out() -> None:
    lifts = SEVEN[0] + timedelta(days=7)
    assert limit_lifts_at(SEVEN, SEVEN[-1]) == lifts
    refused = refuse_call(lifts - timedelta(seconds=1), SEVEN, [], HOURS)
    assert refused is not None and "7 calls in the last 7 days" in refused
    assert "2026-11-16 15:00 UTC" in refused
    assert refuse_call(lifts, SEVEN, [], HOURS) is None


def test_six_calls_leave_room_for_a_seventh() -> None:
    assert refuse_call(SEVEN[-1], SEVEN[:-1], [NEW_YORK], HOURS) is None
    assert limit_lifts_at(SEVEN[:-1], SEVEN[-1]) == SEVEN[-1]


def test_the_window_counts_seven_days_back_and_no_further() -> None:
    now = MONDAY + timedelta(days=7)
    assert calls_in_window(SEVEN, now) == CALL_LIMIT - 1  # the first is exactly 7 days old
    assert calls_in_window(SEVEN, now - timedelta(microseconds=1)) == CALL_LIMIT


def test_the_next_call_waits_for_the_limit_then_for_the_best_hour() -> None:
    best = next_call_at(SEVEN[-1], SEVEN, [NEW_YORK], HOURS)
    # The limit lifts on Monday 16 November at 10:00 New York: late morning, at once.
    assert best == SEVEN[0] + timedelta(days=7)
    late = [moment + timedelta(hours=9) for moment in SEVEN]  # 19:00 onwards in New York
    best = next_call_at(late[-1], late, [NEW_YORK], HOURS)
    assert best == zoned(NEW_YORK, 2026, 11, 17, 10, 0)


def test_a_call_in_quiet_hours_is_refused_in_any_of_the_zones() -> None:
    moment = datetime(2026, 11, 10, 14, 30, tzinfo=UTC)  # 09:30 in New York, 06:30 in LA
    assert refuse_call(moment, [], [NEW_YORK], HOURS) is None
    refused = refuse_call(moment, [], [NEW_YORK, LOS_ANGELES], HOURS)
    assert refused == "it is 06:30 in America/Los_Angeles, outside the calling hours 08:00-21:00"


@pytest.mark.parametrize(
    ("outcome", "attempts", "open_"),
    [
        (CallOutcome.NO_ANSWER, 1, True),
        (CallOutcome.VOICEMAIL, 2, True),
        (CallOutcome.NO_ANSWER, 3, False),  # the task's attempts are spent
        (CallOutcome.WRONG_NUMBER, 1, False),
        (CallOutcome.REFUSED, 1, False),
        (CallOutcome.PROMISE, 1, False),
        (CallOutcome.PAID, 1, False),
    ],
)
def test_only_an_unreached_customer_is_called_again(outcome, attempts, open_) -> None:
    assert task_stays_open(outcome, attempts, max_attempts=3) is open_


# The policy's call steps ----------------------------------------------------------------------


def calling_policy(*days: float, **changes: object):
    calls = [{"after": timedelta(days=d), "max_attempts": 2} for d in days]
    return make_policy(calls=calls, **changes)


TASK = CallTaskCreated(task_id=1, call_after=at(5, 15))


def quiet_case(policy):
    """A case whose reminders so far went out and whose retries are spent: only calls, the
    later reminders and collections are left."""
    state = open_case(policy)
    state.reminders_done = [0]
    state.scheduled_retries_done = len(policy.retries)
    return state


def test_a_call_step_comes_once_when_due() -> None:
    state = open_case(calling_policy(4))
    steps = summary(play(state, at(1), at(5, 12)))
    assert [row for row in steps if row[1] == "call"] == [(at(5, 9), "call", "call-1")]
    assert state.calls_made == [0]
    assert decide(state, at(5, 9)).kind != "call"


def test_a_call_step_carries_its_attempts_and_a_created_task_is_noted() -> None:
    state = quiet_case(calling_policy(4))
    step = decide(state, at(5, 9))
    assert step == Call(step="call-1", covers=[0], max_attempts=2)
    fold_call_task(state, step, TASK, at(5, 9))
    assert state.timeline[-1].detail == "call-1: task 1, best time 2026-11-05 15:00 UTC"


def test_a_waiting_case_wakes_for_its_call() -> None:
    state = quiet_case(calling_policy(2.5))
    step = decide(state, at(3, 9))
    assert isinstance(step, Wait) and step.until == at(3, 21)
    assert step.reason == "before a call task"


def test_creating_a_task_does_not_wait_for_contact_hours() -> None:
    # Due at 04:00 in New York with a reminder: the reminder waits for 08:00, the task not.
    state = quiet_case(calling_policy(3))
    state.time_zones = [NEW_YORK]
    step = decide(state, at(4, 9))
    assert isinstance(step, Call)
    fold_call_task(state, step, None, at(4, 9))
    step = decide(state, at(4, 9))
    assert isinstance(step, Wait) and step.until == at(4, 13)


def test_a_call_due_in_quiet_hours_before_a_waiting_reminder_is_not_held_back() -> None:
    state = quiet_case(calling_policy(3.1))
    state.time_zones = [NEW_YORK]
    step = decide(state, at(4, 9))  # the day-3 reminder waits for 08:00 New York, 13:00 UTC
    assert isinstance(step, Wait) and step.until == at(1, 9) + timedelta(days=3.1)


def test_late_call_steps_make_one_task() -> None:
    state = quiet_case(calling_policy(2.5, 3.5))
    step = decide(state, at(5, 12))
    assert step == Call(step="call-2", covers=[0, 1], max_attempts=2)
    fold_call_task(state, step, None, at(5, 12))
    assert decide(state, at(5, 12)).kind != "call"


def test_held_time_moves_the_call_on() -> None:
    state = quiet_case(calling_policy(4))
    state.hold(PauseRequest(reason="ticket", actor="kim", until=at(3, 9)), at(2, 9))
    state.expire_pause(at(3, 9))
    assert decide(state, at(5, 12)).kind != "call"  # due a day later now
    assert isinstance(decide(state, at(6, 9)), Call)


@pytest.mark.parametrize(
    "hold",
    [
        PauseRequest(reason="ticket", actor="kim"),
        DisputeOpened(reason="chargeback"),
        PromiseToPay(pay_on=at(12)),
        PlanChosen(installments=2),
        PaymentReceived(amount=4900, actor="kim"),
    ],
    ids=["paused", "disputed", "promised", "plan", "finished"],
)
def test_no_call_while_the_case_is_not_dunning(hold) -> None:
    policy = calling_policy(
        4, promise_within=timedelta(days=14), payment_plans=[{"installments": 2}]
    )
    state = open_case(policy)
    state.reminders_done = [0]
    fold_signal(state, hold, at(2))
    state.confirmation = None  # a plan or promise's confirmation is not what this test is about
    for day in range(4, 10):
        assert not isinstance(decide(state, at(day, 12)), Call)


def test_a_noted_call_goes_in_the_timeline_and_is_ignored_once_finished() -> None:
    state = open_case(calling_policy(4))
    noted = CallNoted(step="call-1", outcome=CallOutcome.NO_ANSWER, attempt=1, actor="kim")
    fold_signal(state, noted, at(5))
    entry = state.timeline[-1]
    assert (entry.kind, entry.actor, entry.detail) == ("call", "kim", "call-1 attempt 1: no_answer")
    fold_signal(state, PaymentReceived(amount=4900, actor="kim"), at(5))
    fold_signal(state, noted, at(6))
    assert state.timeline[-1].kind == "ignored"


@pytest.mark.parametrize(
    ("calls", "words"),
    [
        ([{"after": timedelta(days=3)}, {"after": timedelta(days=2)}], "increasing order"),
        ([{"after": timedelta(days=10)}], "before collections_after"),
        ([{"after": timedelta(days=-1)}], "must not be negative"),
        ([{"after": timedelta(days=1), "max_attempts": 8}], "less than or equal to 7"),
    ],
)
def test_bad_call_steps_fail_the_policy_at_load(calls, words) -> None:
    with pytest.raises(ValidationError, match=words):
        make_policy(calls=calls)


def test_call_steps_are_optional_and_default_to_three_attempts() -> None:
    assert make_policy().calls == []
    assert calling_policy(1).calls[0] == CallStep(after=timedelta(days=1), max_attempts=2)
    assert CallStep(after=timedelta(days=1)).max_attempts == 3
