"""The shared messaging rules (workflows/messaging.py): pure, so every driver agrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.store import CaseStore, Message
from workflows.messaging import CAPPED_CHANNELS, fallback_channels, gives_way_to_cap, needs_fallback
from workflows.policy import Channel, Tone


@pytest.mark.parametrize(
    ("tone", "sent", "skipped"),
    [
        (Tone.GENTLE, 3, False),
        (Tone.GENTLE, 4, True),
        (Tone.FIRM, 9, True),
        (Tone.FINAL, 9, False),  # the final notice never gives way
        (None, 9, False),  # nor does an outcome message
    ],
)
def test_only_reminders_give_way_to_the_weekly_cap(tone, sent, skipped) -> None:
    assert gives_way_to_cap(tone, lambda: sent, cap=4) is skipped


def test_a_step_falls_back_when_it_reached_nobody_or_interrupted_nobody() -> None:
    email, sms, in_app = Channel.EMAIL, Channel.SMS, Channel.IN_APP
    assert needs_fallback([email], set())
    assert needs_fallback([sms, in_app], {in_app})  # no phone: the reminder goes by email
    assert not needs_fallback([email, in_app], {email, in_app})
    assert not needs_fallback([email, sms], {sms})
    assert not needs_fallback([in_app], {in_app})  # a banner was all it asked for


def test_fallback_tries_the_other_channels_in_a_fixed_order() -> None:
    assert fallback_channels([Channel.SMS]) == [Channel.EMAIL, Channel.IN_APP]
    assert fallback_channels([Channel.EMAIL, Channel.SMS, Channel.IN_APP]) == []


def test_a_message_that_may_have_gone_out_counts_for_the_cap(tmp_path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'cap.db'}")
    store.create_schema()
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    for step, status in [
        ("r1", "sent"),
        ("r2", "unconfirmed"),
        ("r3", "failed"),
        ("r4", "pending"),
    ]:
        row = store.claim_message(
            Message(
                case_id="in_1",
                customer_id="cus_1",
                step=step,
                channel="email",
                template="reminder_gentle",
                recipient="a@example.com",
                body="...",
                step_at=at,
            )
        )
        store.mark_message(row.id, status)
    capped = [c.value for c in CAPPED_CHANNELS]
    assert store.messages_to_customer_since("cus_1", at - timedelta(days=7), capped) == 2
