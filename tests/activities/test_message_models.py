"""Message models from the store: the reminder history they learn from (on SQLite and on
PostgreSQL), their files, and the plan_messages activity with and without a usable model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.dunning import DunningActivities
from activities.message_training import (
    MESSAGE_FILES,
    message_history,
    message_model_version,
    newest_message_model,
    write_message_model,
)
from activities.retry_training import ModelFileError, TrainingError
from activities.store import CaseStore, CustomerProfile, Message, Suppression
from config.settings import Settings
from workflows.message_timing import MessageModel, SegmentAdvice
from workflows.models import CaseRecord, CaseStatus, MessagePlanRequest, TimelineEntry
from workflows.policy import Channel, Tone

SENT = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # 09:30 in Tokyo
JUST_IN = timedelta(hours=71, minutes=59)
JUST_OUT = timedelta(hours=72, minutes=1)


def reminder(
    store: CaseStore,
    n: int,
    events: list[tuple[timedelta, str, str]] = (),
    opt_out: tuple[timedelta, str] | None = None,
    template: str = "reminder_gentle",
    rows: list[dict] | None = None,
    customer: dict | None = None,
) -> None:
    """Customer `cus_<n>` in Tokyo (unless `customer` says otherwise), their case with the
    audit lines `events` (after the reminder, kind, actor) and one reminder step sent `n`
    minutes after `SENT` (by email unless `rows` says otherwise); `opt_out` suppresses their
    email then."""
    customer_id, case_id = f"cus_{n}", f"case-{n}"
    sent = SENT + timedelta(minutes=n)  # history comes oldest first
    details = {"time_zone": "Asia/Tokyo", "country": "JP"} | (customer or {})
    store.upsert_customer(
        CustomerProfile(customer_id=customer_id, email=f"c{n}@example.com", **details)
    )
    store.record_case(
        CaseRecord(
            case_id=case_id,
            invoice_id=f"in_{n}",
            customer_id=customer_id,
            status=CaseStatus.ACTIVE,
            amount_due=4900,
            amount_recovered=0,
            currency="USD",
            policy="smart-v2",
            policy_version=1,
            opened_at=SENT - timedelta(days=1),
            entries=[
                TimelineEntry(seq=i, at=sent + after, kind=kind, actor=actor)
                for i, (after, kind, actor) in enumerate(events)
            ],
        )
    )
    with store.session() as session:
        for row in rows or [{"channel": "email"}]:
            session.add(
                Message(
                    **{
                        "case_id": case_id,
                        "customer_id": customer_id,
                        "step": "reminder-1",
                        "template": template,
                        "recipient": f"C{n}@example.com",  # as given: suppressions lower it
                        "body": "Please pay",
                        "status": "sent",
                        "step_at": sent,
                        "created_at": sent,
                    }
                    | row
                )
            )
        if opt_out is not None:
            after, reason = opt_out
            session.add(
                Suppression(
                    channel="email",
                    contact=f"c{n}@example.com",
                    reason=reason,
                    source="sendgrid",
                    created_at=sent + after,
                )
            )
        session.commit()


def test_each_reminder_that_reached_a_customer_is_kept_with_what_they_did_within_72_hours(
    store: CaseStore,
) -> None:
    reminder(store, 1, [(JUST_IN, "pay_now", "customer")])
    reminder(store, 2, [(JUST_OUT, "payment_method_updated", "customer")])
    reminder(store, 3, [(timedelta(hours=1), "payment_method_updated", "support")])
    reminder(store, 4, [(timedelta(hours=5), "plan_chosen", "customer")])
    reminder(store, 5, [(timedelta(hours=5), "payment_received", "stripe")])
    reminder(store, 6, [(timedelta(hours=2), "cancel", "customer")])
    reminder(store, 7, [(timedelta(hours=2), "cancel", "stripe")])
    reminder(store, 8, [(JUST_IN, "dispute_opened", "stripe")])
    reminder(store, 9, opt_out=(timedelta(hours=3), "unsubscribed"))
    reminder(store, 10, opt_out=(timedelta(hours=3), "bounced"))
    reminder(store, 11, opt_out=(JUST_OUT, "opted_out"))
    reminder(store, 12, [(-timedelta(hours=1), "pay_now", "customer")])  # before it
    reminder(store, 13, template="recovered")  # an outcome message is no reminder
    reminder(store, 14, rows=[{"channel": "email", "status": "failed"}])
    reminder(store, 15, rows=[{"channel": "email", "delivery": "bounced"}])

    history = message_history(store)

    answers = [(o.acted, o.lost) for o in history]
    assert answers == [
        (True, False),  # paid now, a minute inside the window
        (False, False),  # a new card, a minute too late
        (False, False),  # a card support entered
        (True, False),  # a plan
        (True, False),  # paid at the biller
        (False, True),  # cancelled
        (False, False),  # the biller cancelled
        (False, True),  # disputed
        (False, True),  # unsubscribed
        (False, False),  # a bounce is no choice
        (False, False),  # opted out too late
        (False, False),  # paid before the reminder
    ]
    assert {(o.segment, o.hour, o.tone) for o in history} == {("JP", 9, Tone.GENTLE)}


def test_a_reminder_keeps_its_channels_chances_segment_and_local_hour(store: CaseStore) -> None:
    reminder(
        store,
        1,
        template="final_notice",
        rows=[
            {"channel": "email", "hour_propensity": 0.25, "channel_propensity": 0.5},
            {
                "channel": "sms",
                "recipient": "+819012345678",
                "hour_propensity": 0.25,
                "channel_propensity": 0.5,
            },
        ],
    )
    reminder(store, 2, customer={"time_zone": None, "country": None})

    final, plain = message_history(store)

    assert final.model_dump() == {
        "segment": "JP",
        "hour": 9,
        "tone": Tone.FINAL,
        "channels": [Channel.EMAIL, Channel.SMS],
        "acted": False,
        "lost": False,
        "hour_propensity": 0.25,
        "channel_propensity": 0.5,
    }
    assert (plain.segment, plain.hour, plain.hour_propensity) == ("unknown", None, 1.0)


# Files and the activity ----------------------------------------------------------------------


def model(version: int = 1) -> MessageModel:
    return MessageModel(
        version=version,
        trained_at=SENT,
        trained_on=400,
        segments={"JP": SegmentAdvice(reminders=400, send_hour=20)},
    )


@pytest.fixture
def activities(tmp_path: Path) -> Iterator[DunningActivities]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        retry_models_dir=tmp_path / "models",
        _env_file=None,
    )
    activities = DunningActivities.from_settings(settings)
    activities.store.upsert_customer(CustomerProfile(customer_id="cus_jp", country="JP"))
    yield activities
    activities.store.engine.dispose()


def plan_request(model_version: int | None = None) -> MessagePlanRequest:
    return MessagePlanRequest(
        customer_id="cus_jp",
        policy_name="smart-v2",
        policy_version=1,
        model_version=model_version,
    )


def test_a_model_file_reads_back_and_is_never_overwritten(tmp_path: Path) -> None:
    path = write_message_model(model(), tmp_path)

    assert path == tmp_path / "message-model-v1.json"
    assert message_model_version(tmp_path, 1) == newest_message_model(tmp_path) == model()
    with pytest.raises(TrainingError, match="already exists"):
        write_message_model(model(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["message-model-v1.json"]  # no temporaries


def test_the_activity_plans_with_the_customers_segment_or_as_written(
    activities: DunningActivities,
) -> None:
    assert activities.plan_messages(plan_request()).reason == "as written: no message model"
    write_message_model(model(), activities.retry_models_dir)

    plan = activities.plan_messages(plan_request())

    assert (plan.send_hour, plan.model_version) == (20, 1)
    assert plan.reason.startswith("message model v1, JP (400 reminders): reminders at 20:00")


def test_a_corrupt_or_missing_model_file_plans_as_written_and_says_why(
    activities: DunningActivities,
) -> None:
    folder = activities.retry_models_dir
    folder.mkdir()
    MESSAGE_FILES.path(folder, 1).write_text('{"version": 1, "segments": ')

    plan = activities.plan_messages(plan_request())

    assert plan.send_hour is None and plan.channel_order is None and plan.escalate_final
    assert plan.reason.startswith(f"as written: {folder / 'message-model-v1.json'}: not a message")
    missing = activities.plan_messages(plan_request(model_version=4))
    assert missing.reason.startswith("as written: ") and "message-model-v4.json: cannot read" in (
        missing.reason
    )
    with pytest.raises(ModelFileError):
        message_model_version(folder, 1)
