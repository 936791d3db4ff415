"""Customer messages on the time-skipping server: contact hours, STOP, the weekly cap, retries.

Real worker, real activities; SMS goes through the official Twilio SDK to the local fake
Twilio where a test needs a provider's answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from activities.dunning import DunningActivities
from activities.store import CaseStore, CustomerProfile, Message
from config.settings import Settings
from tests.support.fake_twilio import FakeTwilio
from tests.support.harness import Dunning
from workflows.dunning import DunningWorkflow
from workflows.models import CaseInput, CaseResult, DeliveryStatus, Failure

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
PHONE = "+15555550123"


def customer(dunning: Dunning, customer_id: str = "cus_ann", **changes) -> CustomerProfile:
    profile = CustomerProfile(
        customer_id=customer_id,
        name="Ann",
        email=f"{customer_id}@example.com",
        phone=PHONE,
        payment_method=SOFT_DECLINE,
    ).model_copy(update=changes)
    dunning.activities.store.upsert_customer(profile)
    return profile


async def case_for(dunning: Dunning, customer_id: str = "cus_ann", invoice: str = "") -> CaseInput:
    invoice_id = invoice or f"in_{customer_id}_{int((await dunning.now()).timestamp())}"
    return CaseInput(
        case_id=invoice_id,
        invoice_id=invoice_id,
        customer_id=customer_id,
        amount_due=4980,
        currency="JPY",
        failure=Failure(decline_code="insufficient_funds", failed_at=await dunning.now()),
        policy_version=1,
    )


def message_times(result: CaseResult) -> dict[str, datetime]:
    """When each reminder step went out, from the case's own timeline."""
    return {
        entry.detail.split(" ")[0]: entry.at for entry in result.timeline if entry.kind == "message"
    }


async def sleep_until_local(dunning: Dunning, zone: str, hour: int) -> datetime:
    """Skip virtual time to the next `hour`:00 in `zone`; returns that moment."""
    now = await dunning.now()
    local = now.astimezone(ZoneInfo(zone))
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local + timedelta(minutes=5):
        target += timedelta(days=1)
    await dunning.env.sleep(target - local)
    return target


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
async def test_reminders_due_at_two_in_the_night_go_out_at_eight_local(dunning: Dunning, zone):
    customer(dunning, time_zone=zone)
    await sleep_until_local(dunning, zone, 2)
    case = await case_for(dunning)

    async with dunning.worker():
        result = await (await dunning.start(case)).result()

    failed_local = case.failure.failed_at.astimezone(ZoneInfo(zone))
    assert failed_local.hour == 2  # every reminder of the standard policy falls due at 02:00
    for step, at in message_times(result).items():
        local = at.astimezone(ZoneInfo(zone))
        if step.startswith("reminder-"):
            assert (local.hour, local.minute) == (8, 0), (step, local)
    first = message_times(result)["reminder-1"].astimezone(ZoneInfo(zone))
    assert first.date() == failed_local.date()  # the same morning, not a day later


async def test_stop_mid_case_stops_sms_but_not_email(dunning: Dunning):
    customer(dunning)
    case = await case_for(dunning)

    async with dunning.worker():
        handle = await dunning.start(case)
        await dunning.env.sleep(timedelta(days=5))  # reminders 1 and 2 are out (no SMS yet)
        # What POST /webhooks/twilio does when the customer replies STOP.
        dunning.activities.store.suppress("sms", PHONE, "opted_out", source="twilio")
        result = await handle.result()

    store = dunning.activities.store
    channels = {(m.step, m.channel): m.status for m in store.messages(case.case_id)}
    assert ("reminder-3", "sms") not in channels
    assert ("reminder-4", "sms") not in channels
    assert channels[("reminder-3", "email")] == "sent"
    assert channels[("reminder-4", "email")] == "sent"
    skipped = [
        entry.detail
        for entry in result.timeline
        if entry.kind == "message" and "sms" in entry.detail
    ]
    assert skipped == [
        "reminder-3 (reminder_firm) email: sent, sms: skipped",
        "reminder-4 (final_notice) email: sent, sms: skipped, in_app: sent",
    ]


async def test_weekly_cap_holds_across_two_cases_of_one_customer(dunning: Dunning):
    customer(dunning)
    first = await case_for(dunning, invoice="in_cap_first")

    async with dunning.worker():
        first_handle = await dunning.start(first)
        await dunning.env.sleep(timedelta(hours=1))
        second_handle = await dunning.start(await case_for(dunning, invoice="in_cap_second"))
        await first_handle.result()
        await second_handle.result()
        # A finished case still answers the query, replayed from its history.
        views = {
            "first": await first_handle.query(DunningWorkflow.status),
            "second": await second_handle.query(DunningWorkflow.status),
        }

    steps = {
        (name, message.step): message.deliveries
        for name, view in views.items()
        for message in view.messages
    }
    # Day 8: the first case's firm reminder (email + SMS) fills the week's four messages with
    # both day-4 emails; an hour later the second case's firm reminder yields.
    assert {d.status for d in steps["first", "reminder-3"]} == {DeliveryStatus.SENT}
    second_firm = steps["second", "reminder-3"]
    assert {d.status for d in second_firm} == {DeliveryStatus.SKIPPED}
    assert second_firm[0].detail == "frequency cap: 4 messages in 7 days"
    # The final notice never yields.
    for name in ("first", "second"):
        assert DeliveryStatus.SENT in {d.status for d in steps[name, "reminder-4"]}


class FlakyStore(CaseStore):
    """The real store, whose first attempt to note a sent message dies: as if the worker
    crashed right after the provider accepted it."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.failed_once = False

    def mark_message(self, message_id: int, status: str, provider_id: str | None = None) -> None:
        with self.session() as session:
            channel = session.get(Message, message_id).channel
        if status == "sent" and channel == "sms" and not self.failed_once:
            self.failed_once = True
            raise RuntimeError("lost the database after the provider accepted the message")
        super().mark_message(message_id, status, provider_id)


async def test_a_retried_notify_after_the_provider_accepted_sends_once(
    dunning: Dunning, tmp_path: Path
):
    with FakeTwilio() as twilio:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'flaky.db'}",
            sms_provider="twilio",
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_base_url=twilio.url,
            twilio_from_number="+15005550006",
            _env_file=None,
        )
        activities = DunningActivities.from_settings(settings)
        activities.store = FlakyStore(settings.database_url)
        dunning.activities = activities
        customer(dunning)
        case = await case_for(dunning)
        async with dunning.worker():
            await (await dunning.start(case)).result()
        texts = [r for r in twilio.requests if r.path.endswith("/Messages.json")]

    assert activities.store.failed_once
    rows = {(m.step, m.channel): m.status for m in activities.store.messages(case.case_id)}
    # The first text went out, its activity died before noting it, and the retry did not
    # send it again: at most one message per (case, step, channel).
    assert rows[("reminder-3", "sms")] == "unconfirmed"
    assert rows[("reminder-4", "sms")] == "sent"
    # Each text opens with the company's name, then what it is about.
    assert [t.form["Body"].split(": ")[1].split(" ")[0] for t in texts] == ["invoice", "final"]


async def test_an_invalid_phone_number_leaves_email_working(dunning: Dunning, tmp_path: Path):
    with FakeTwilio() as twilio:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'twilio.db'}",
            sms_provider="twilio",
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_base_url=twilio.url,
            twilio_from_number="+15005550006",
            _env_file=None,
        )
        dunning.activities = DunningActivities.from_settings(settings)
        customer(dunning, phone="+15005550001")  # Twilio's "not a valid number" (21211)
        case = await case_for(dunning)
        async with dunning.worker():
            result = await (await dunning.start(case)).result()
        texts = [r for r in twilio.requests if r.path.endswith("/Messages.json")]

    store = dunning.activities.store
    rows = {(m.step, m.channel): m.status for m in store.messages(case.case_id)}
    assert rows[("reminder-3", "sms")] == "failed"
    assert ("reminder-4", "sms") not in rows  # suppressed after the first refusal
    assert len(texts) == 1  # Twilio was asked once, never again
    assert all(status == "sent" for (step, channel), status in rows.items() if channel == "email")
    assert result.outcome == "collections"
    suppression = store.suppression("sms", "+15005550001")
    assert (suppression.reason, suppression.source) == ("invalid", "provider")
    history = " ".join(entry.detail for entry in result.timeline)
    assert "15005550001" not in history
