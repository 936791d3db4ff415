"""Learned message timing in the simulator: a case pins its plan when it opens, its reminders
follow it through the same `Outbox` (so an opt-out, the weekly cap and contact hours still
win), its reminders become training records, and `compare` fits the model it plans with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from config.policies import find_policy, load_policies
from simulation.simulator import compare, run_case, simulate
from simulation.world import ActionKind, ChargeAnswer, CustomerAction, SentMessage, SimCase
from workflows.message_timing import MessageModel, SegmentAdvice
from workflows.policy import Channel, DeclineCodes, Tone

CONFIG = Path(__file__).resolve().parents[2] / "config"
POLICIES = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
LEARNED = find_policy(POLICIES, "standard").model_copy(
    update={"message_timing": "learned", "message_exploration": 0.0}
)
SMART = find_policy(POLICIES, "smart")
FAILED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
SMS_FIRST_AT_20 = MessageModel(
    version=7,
    trained_at=FAILED_AT,
    trained_on=9000,
    segments={
        "DE": SegmentAdvice(
            reminders=9000, send_hour=20, channel_order=(Channel.SMS, Channel.EMAIL)
        )
    },
)


Answer = tuple[ActionKind, timedelta, Channel | None] | None
"""What a customer does, how long after the message, and the channel an opt-out stops."""


class Listener:
    """A customer whose card stays declined and who answers the n-th message as `answers`
    says; it writes down every message that reached them."""

    def __init__(self, answers: list[Answer] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[datetime, SentMessage]] = []

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        return ChargeAnswer.declined_with("insufficient_funds")

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        self.received.append((at, message))
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            return None
        kind, after, channel = answer
        return CustomerAction(kind=kind, at=at + after, channel=channel)


def case(i: int = 1, country: str | None = "DE") -> SimCase:
    return SimCase(
        id=f"case-{i}",
        customer_id=f"cus-{i}",
        amount=2500,
        currency="EUR",
        failure=DeclineCodes(decline_code="insufficient_funds"),
        failed_at=FAILED_AT + timedelta(minutes=i),
        time_zone="Europe/Berlin",
        country=country,
    )


def test_reminders_follow_the_plan_of_the_customers_segment() -> None:
    world = Listener()

    run = run_case(case(), LEARNED, world, message_model=SMS_FIRST_AT_20)

    reminders = [(at, m) for at, m in world.received if m.tone is not None]
    assert [m.step for _, m in reminders] == [f"reminder-{i}" for i in range(1, 5)]
    assert reminders[0][0] == FAILED_AT + timedelta(minutes=1)  # day 0: when due
    assert [at.astimezone(BERLIN).hour for at, _ in reminders[1:]] == [20, 20, 20]
    assert [m.channels for _, m in reminders] == [
        [Channel.SMS, Channel.IN_APP],
        [Channel.SMS],
        [Channel.SMS, Channel.EMAIL],
        [Channel.SMS, Channel.EMAIL, Channel.IN_APP],
    ]
    assert run.reason == "the dunning schedule is exhausted"


def test_a_customer_who_stopped_sms_never_gets_one_whatever_the_plan_ranks_first() -> None:
    world = Listener([(ActionKind.OPT_OUT, timedelta(minutes=10), Channel.SMS)])

    run_case(case(), LEARNED, world, message_model=SMS_FIRST_AT_20)

    after = [m for at, m in world.received[1:]]
    assert after and all(Channel.SMS not in m.channels for m in after)
    # A reminder that asked for SMS alone reached them by email instead.
    assert [m.channels for m in after if m.step == "reminder-2"] == [[Channel.EMAIL]]


def test_the_weekly_cap_and_contact_hours_still_hold() -> None:
    world = Listener()
    cap = 1

    simulate([case()], LEARNED, world, message_model=SMS_FIRST_AT_20, messages_per_week=cap)

    capped = [(at, m) for at, m in world.received if {Channel.EMAIL, Channel.SMS} & set(m.channels)]
    for at, message in capped:
        if message.tone in (Tone.GENTLE, Tone.FIRM):
            earlier = [a for a, _ in capped if at - timedelta(days=7) < a < at]
            assert len(earlier) < cap, message.step
    assert all(8 <= at.astimezone(BERLIN).hour < 21 for at, _ in world.received)
    assert "reminder-2" not in [m.step for _, m in world.received]  # gave way to the cap


def test_kept_reminders_say_what_the_customer_did_within_three_days() -> None:
    world = Listener([None, (ActionKind.PAY, timedelta(hours=5), None)])
    result = simulate([case()], LEARNED, world, message_model=SMS_FIRST_AT_20, keep_messages=True)

    (run,) = result.runs
    assert [(o.tone, o.hour, o.acted, o.lost) for o in run.message_outcomes] == [
        (Tone.GENTLE, 10, False, False),
        (Tone.GENTLE, 20, True, False),
    ]
    assert {o.segment for o in run.message_outcomes} == {"DE"}
    assert run.message_outcomes[1].channels == [Channel.SMS]


def test_compare_fits_the_message_model_on_the_same_history() -> None:
    report = compare([SMART], n_cases=150, seed=3)

    assert report.message_model is not None
    assert report.message_model.startswith("trained on ")
    assert report.retry_model is not None
