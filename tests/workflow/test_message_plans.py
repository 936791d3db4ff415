"""Learned message timing on the time-skipping server: a case on a learned policy asks for a
message plan when it opens, says so in its timeline and status, sends its later reminders at
the plan's local hour, and stores the chance each reminder had for the next model. Intake
keeps the customer's country, the segment plans are made for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.worker import Replayer

from activities.message_training import write_message_model
from activities.store import CustomerProfile
from config.converter import compact_data_converter
from config.settings import Settings
from intake.cases import CaseOpener
from intake.events import BillingEvent
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.message_timing import MessageModel, SegmentAdvice
from workflows.models import CancelRequest, CaseInput, Failure

TOKYO = ZoneInfo("Asia/Tokyo")
EVENING = 20


async def test_a_learned_case_follows_its_segments_message_plan(
    dunning: Dunning, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    dunning.activities.retry_models_dir = models
    advice = SegmentAdvice(reminders=500, send_hour=EVENING)
    write_message_model(
        MessageModel(
            version=1, trained_at=datetime.now(UTC), trained_on=500, segments={"JP": advice}
        ),
        models,
    )
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id="cus_jp",
            email="cus_jp@example.com",
            time_zone="Asia/Tokyo",
            country="JP",
            payment_method="pm_card_chargeDeclinedInsufficientFunds",
        )
    )
    case = CaseInput(
        case_id="in_learned",
        invoice_id="in_learned",
        customer_id="cus_jp",
        amount_due=4900,
        currency="JPY",
        failure=Failure(decline_code="insufficient_funds", failed_at=await dunning.now()),
        policy_name="smart",
        policy_version=2,
    )

    async with dunning.worker():
        handle = await dunning.start(case)
        opened = await status_when(handle, lambda v: v.message_plan is not None, "a message plan")
        await dunning.env.sleep(timedelta(days=5))  # past the day-4 reminder
        await handle.signal(DunningWorkflow.cancel, CancelRequest(reason="done", actor="test"))
        await handle.result()

    [entry] = [e for e in opened.timeline if e.kind == "message_plan"]
    assert entry.detail.startswith("message model v1, JP (500 reminders): reminders at 20:00")
    assert opened.message_plan == entry.detail
    rows = {row.step: row for row in dunning.activities.store.messages(case.case_id)}
    later = rows["reminder-2"]
    assert later.step_at.astimezone(TOKYO).hour == EVENING
    # Exploration (5%) left this reminder at the planned hour: 95% + 5% of five hours.
    assert later.hour_propensity == 0.96 and later.channel_propensity is not None

    # The history of the new path replays on today's code.
    replayer = Replayer(workflows=[DunningWorkflow], data_converter=compact_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_intake_keeps_the_customers_country_else_the_cards(dunning: Dunning) -> None:
    opener = CaseOpener.from_settings(Settings(_env_file=None))
    store = dunning.activities.store
    for customer, card_country in [
        (CustomerProfile(customer_id="cus_card"), "JP"),
        (CustomerProfile(customer_id="cus_fr", country="fr"), "JP"),
        (CustomerProfile(customer_id="cus_none"), None),
    ]:
        event = BillingEvent(
            invoice_id=f"in_{customer.customer_id}",
            customer=customer,
            amount_due=4900,
            currency="USD",
            card_country=card_country,
        )
        await opener.start(dunning.env.client, store, event)

    assert [store.get_customer(c).country for c in ("cus_card", "cus_fr", "cus_none")] == [
        "JP",
        "FR",
        None,
    ]
