"""The pre-dunning workflow on the time-skipping server, with the real worker and activities
(simulated gateway's ledger, outbox notifier, SQLite store): one notice per card per window
however often the run repeats, a wait for the customer's morning, nothing to a customer who
opted out, and the weekly cap."""

from __future__ import annotations

import uuid
from datetime import time, timedelta

from activities.store import CASE_SCOPE, CustomerProfile, Message, SimulatedCard
from tests.support.harness import Dunning
from workflows.contact_hours import ContactHours
from workflows.notice_windows import PreDunning, card_expires_at
from workflows.pre_dunning import PreDunningResult, PreDunningRun, PreDunningWorkflow

ANY_HOUR = PreDunning(contact_hours=ContactHours(enabled=False))


async def seed(dunning: Dunning, window: int = 31, **profile) -> SimulatedCard:
    """Ann, whose card expires in a month or two; virtual time skips to an hour inside the
    card's `window`-day notice."""
    later = await dunning.now() + timedelta(days=40)
    month, year = later.month, later.year
    expires = card_expires_at(month, year)
    await dunning.env.sleep(expires - timedelta(days=window, hours=-1) - await dunning.now())
    store = dunning.activities.store
    customer = CustomerProfile(
        customer_id="cus_ann",
        name="Ann",
        email="ann@example.com",
        payment_method="pm_sim_ann",
        time_zone="UTC",
    ).model_copy(update=profile)
    store.upsert_customer(customer)
    card = SimulatedCard(
        payment_method="pm_sim_ann",
        customer_id="cus_ann",
        brand="visa",
        last4="4242",
        exp_month=month,
        exp_year=year,
    )
    store.save_simulated_card(card)
    return card


async def run_once(dunning: Dunning) -> PreDunningResult:
    return await dunning.env.client.execute_workflow(
        PreDunningWorkflow.run,
        PreDunningRun(),
        id=f"dunning-pre-dunning-{uuid.uuid4().hex[:8]}",
        task_queue=dunning.task_queue,
    )


def notices(dunning: Dunning) -> list[Message]:
    return dunning.activities.store.messages("card-pm_sim_ann")


async def test_a_card_gets_one_notice_per_window_however_often_the_run_repeats(
    dunning: Dunning,
):
    dunning.pre_dunning = ANY_HOUR
    card = await seed(dunning, window=31)

    async with dunning.worker():
        first = await run_once(dunning)
        again = await run_once(dunning)

    assert first == PreDunningResult(due=1, sent=1, held=0)
    assert again == PreDunningResult(due=0, sent=0, held=0)  # the outbox has it
    sent = notices(dunning)
    step = f"expiry-{card.exp_year:04d}-{card.exp_month:02d}-P31D"
    assert [(m.step, m.channel, m.template) for m in sent] == [
        (step, "email", "card_expiring"),
        (step, "in_app", "card_expiring"),
    ]
    assert "Visa ending in 4242" in sent[0].subject
    assert "/account?token=" in sent[0].body  # the customer's account page


async def test_a_card_first_seen_in_the_last_week_gets_the_seven_day_notice_only(
    dunning: Dunning,
):
    dunning.pre_dunning = ANY_HOUR
    await seed(dunning, window=7)

    async with dunning.worker():
        result = await run_once(dunning)

    assert result.sent == 1
    assert {m.step.rsplit("-", 1)[1] for m in notices(dunning)} == {"P7D"}


async def test_a_notice_found_in_quiet_hours_waits_for_the_customers_morning(dunning: Dunning):
    await seed(dunning)
    now = await dunning.now()
    opens = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    if opens.hour == 23:  # a window within one day
        opens += timedelta(hours=1)
    closes = time(opens.hour + 1, 0) if opens.hour < 23 else time(23, 59)
    dunning.pre_dunning = PreDunning(contact_hours=ContactHours(start=opens.time(), end=closes))

    async with dunning.worker():
        result = await run_once(dunning)

    assert result.sent == 1
    sent_at = [m.step_at for m in notices(dunning)]
    assert sent_at and all(opens <= at < opens + timedelta(minutes=1) for at in sent_at)


async def test_a_customer_who_opted_out_gets_no_notice(dunning: Dunning):
    dunning.pre_dunning = ANY_HOUR
    await seed(dunning, phone="+15555550123")
    store = dunning.activities.store
    for channel, contact in (("email", "ann@example.com"), ("sms", "+15555550123")):
        store.suppress(channel, contact, "opted_out", source="support:test")
    store.suppress("in_app", "cus_ann", "opted_out", source="support:test")

    async with dunning.worker():
        result = await run_once(dunning)

    assert result == PreDunningResult(due=1, sent=0, held=1)
    assert notices(dunning) == []
    assert store.suppression(CASE_SCOPE, "card-pm_sim_ann") is None


async def test_a_notice_gives_way_to_the_weekly_cap_like_a_gentle_reminder(dunning: Dunning):
    dunning.pre_dunning = ANY_HOUR
    await seed(dunning)
    store = dunning.activities.store
    for n in range(dunning.activities.messages_per_week):
        row = store.claim_message(
            Message(
                case_id="in_earlier",
                customer_id="cus_ann",
                step=f"reminder-{n}",
                channel="email",
                template="reminder_gentle",
                recipient="ann@example.com",
                body="...",
                step_at=await dunning.now(),
            )
        )
        store.mark_message(row.id, "sent")

    async with dunning.worker():
        result = await run_once(dunning)

    assert result == PreDunningResult(due=1, sent=0, held=1)
    assert notices(dunning) == []  # and the next day's run tries again
