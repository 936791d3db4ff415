"""Outbound case events in the pure core: when the grace period ends and access is
restricted (held time does not count), one event per occurrence, and every payload as the
published JSON Schema says."""

from __future__ import annotations

import json
from datetime import timedelta

import jsonschema
import pytest
from pydantic import ValidationError

from tests.support.core import CONFIG, at, make_policy, open_case, play, summary
from workflows.case import CaseState
from workflows.case_events import (
    CaseEvent,
    CaseEventType,
    PublishEvent,
    case_event,
    case_event_schema,
    due_event,
)
from workflows.decide import Finish, Wait, case_step, decide
from workflows.models import CancelRequest, PauseRequest, PaymentReceived, ResumeRequest

SCHEMA_FILE = CONFIG / "case-event.schema.json"
GRACE = {"grace_period": timedelta(days=3), "restrict_access_after": timedelta(days=5)}


def publishing_case(**policy) -> CaseState:
    state = open_case(make_policy(**(GRACE | policy)))
    state.publishes_events = True
    return state


def published(steps) -> list[tuple[object, str]]:
    return [(when, what) for when, kind, what in summary(steps) if kind == "publish"]


def publish(state: CaseState, now) -> CaseEvent:
    """Carry the due publish step out as the workflow does; the event it sent."""
    step = decide(state, now)
    assert isinstance(step, PublishEvent), step
    state.mark_published(step.event_id)
    return case_event(state, step, now)


def test_grace_end_and_restriction_publish_at_their_offsets_once_each():
    state = publishing_case()
    steps = play(state, at(1), end=at(12))
    assert published(steps) == [
        (at(1), "case-1:case.opened:1"),
        (at(4), "case-1:case.grace_ending:1"),
        (at(6), "case-1:case.access_restricted:1"),
    ]
    # Reaching collections owes the product one more event, after which none is due.
    assert isinstance(steps[-1][1], Finish)
    event = publish(state, at(11))
    assert (event.type, event.data.access) == (CaseEventType.SENT_TO_COLLECTIONS, "restrict")
    assert due_event(state, at(30)) is None


def test_the_case_sleeps_until_the_grace_period_ends_and_says_so():
    state = publishing_case(grace_period=timedelta(days=1, hours=3))
    play(state, at(1), end=at(2, 9))  # opened, the first reminder, the first retry
    step = decide(state, at(2, 9, 1))
    assert isinstance(step, Wait)
    assert (step.until, step.reason) == (at(2, 12), "before the grace period ends")


def test_a_pause_publishes_each_time_and_shifts_grace_and_restriction_by_its_length():
    state = publishing_case()
    play(state, at(1), end=at(2, 10))
    state.hold(PauseRequest(actor="support", reason="ticket 12"), at(2, 10))
    # Operators are shown what the case waits for, not the event being published.
    assert isinstance(case_step(state, at(2, 10)), Wait)
    paused = publish(state, at(2, 10))
    assert (paused.id, paused.data.reason, paused.data.status) == (
        "case-1:case.paused:1",
        "ticket 12",
        "paused",
    )
    assert isinstance(decide(state, at(5)), Wait)  # held: the grace period does not end
    state.release(ResumeRequest(actor="support"), at(4, 10))  # held two days
    state.hold(PauseRequest(actor="support", reason="again"), at(4, 11))
    assert publish(state, at(4, 11)).id == "case-1:case.paused:2"
    state.release(ResumeRequest(actor="support"), at(4, 12))  # and one hour more
    steps = play(state, at(4, 12), end=at(14))
    assert published(steps) == [
        (at(6, 10), "case-1:case.grace_ending:1"),
        (at(8, 10), "case-1:case.access_restricted:1"),
    ]


@pytest.mark.parametrize(
    ("ending", "event", "access"),
    [
        (PaymentReceived(amount=4900, reference="bank"), CaseEventType.RECOVERED, "restore"),
        (CancelRequest(reason="customer left", actor="support"), CaseEventType.CANCELLED, None),
    ],
)
def test_an_outcome_is_published_before_the_case_finishes(ending, event, access):
    state = publishing_case()
    play(state, at(1), end=at(4, 10))
    if isinstance(ending, PaymentReceived):
        state.receive_payment(ending, at(4, 10))
    else:
        state.cancel(ending, at(4, 10))
    sent = publish(state, at(4, 10))
    assert (sent.type, sent.data.outcome, sent.data.access) == (event, state.outcome, access)
    assert sent.data.reason == state.outcome_reason
    assert isinstance(decide(state, at(4, 10)), Finish)  # and never again


def test_cases_started_before_outbound_events_take_exactly_the_steps_they_took():
    before = open_case(make_policy(**GRACE))
    after = publishing_case()
    old = summary(play(before, at(1), end=at(12)))
    new = [row for row in summary(play(after, at(1), end=at(12))) if row[1] != "publish"]
    # Only a wait's reason may name the grace period; when and what the case does is unchanged.
    assert [(w, k) for w, k, _ in old if k != "wait"] == [(w, k) for w, k, _ in new if k != "wait"]
    assert not any(kind == "publish" for _, kind, _ in old)


def test_a_policy_without_grace_or_restriction_publishes_only_opened_and_the_outcome():
    state = open_case(make_policy())
    state.publishes_events = True
    steps = play(state, at(1), end=at(12))
    assert [what for _, what in published(steps)] == ["case-1:case.opened:1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"grace_period": timedelta(days=5), "restrict_access_after": timedelta(days=3)},
            "must not come before the grace period ends",
        ),
        ({"grace_period": timedelta(days=11)}, "grace_period: must not come after"),
        ({"restrict_access_after": timedelta(days=11)}, "restrict_access_after: must not come"),
        ({"grace_period": timedelta(0)}, "greater than 0"),
    ],
)
def test_policies_with_impossible_access_dates_are_refused(changes, message):
    with pytest.raises(ValidationError, match=message):
        make_policy(**changes)


def test_the_published_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == case_event_schema(), (
        "config/case-event.schema.json is stale: regenerate it with "
        "`python -m workflows.case_events > config/case-event.schema.json`"
    )


def test_every_event_the_core_emits_validates_against_the_published_schema():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    state = publishing_case()
    events = []
    for now, step in play(state, at(1), end=at(7)):
        if isinstance(step, PublishEvent):
            events.append(case_event(state, step, now))
    state.hold(PauseRequest(actor="support", reason="ticket"), at(7))
    events.append(publish(state, at(7)))
    state.receive_payment(PaymentReceived(amount=4900, reference="bank"), at(8))
    events.append(publish(state, at(8)))
    assert {e.type for e in events} == {
        CaseEventType.OPENED,
        CaseEventType.GRACE_ENDING,
        CaseEventType.ACCESS_RESTRICTED,
        CaseEventType.PAUSED,
        CaseEventType.RECOVERED,
    }
    for event in events:
        validator.validate(json.loads(event.body()))
    bad = json.loads(events[0].body()) | {"type": "case.unknown"}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)
