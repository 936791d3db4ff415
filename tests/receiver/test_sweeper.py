"""Stored billing events that no delivery finished are carried out later: by the worker's
sweeper on a schedule, and by `dunning events retry`; final ones are never touched.

Nothing is mocked: events arrive through the real receiver (signed), Temporal "down" is a
client provider that raises, cases run on the real time-skipping server with a real worker,
and the store is SQLite in the test's `tmp_path`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus

from activities.store import CaseStore, WebhookEvent, WebhookEventStatus
from config.converter import compact_data_converter
from intake.client import case_run_status
from tests.support.harness import Dunning, status_when
from tests.support.receiver import (
    Receiver,
    case_handle,
    client_of,
    neutral_failure,
    new_invoice_id,
    receiver_settings,
    temporal_is_down,
)
from webhooks.cases import CaseDesk
from webhooks.sweeper import PROVIDERS, retry_all, sweep, sweeping

DUNNING = str(Path(sys.executable).parent / "dunning")


async def deliver(receiver: Receiver, event: dict, status: int) -> None:
    response = await receiver.billing(event)
    assert response.status_code == status, response.text


def stored(store: CaseStore, event: dict) -> WebhookEvent:
    row = store.webhook_event("billing", event["id"])
    assert row is not None
    return row


def store_as(store: CaseStore, event: dict, status: WebhookEventStatus, detail: str) -> None:
    """An event stored earlier and settled as `status` (e.g. rejected for a bad value)."""
    row, _ = store.claim_webhook_event(
        WebhookEvent(
            provider="billing",
            event_id=event["id"],
            type=event["type"],
            occurred_at=datetime.fromtimestamp(event["created"], UTC),
            invoice_id=event["data"]["invoice_id"],
            payload=event,
        )
    )
    store.settle_webhook_event(row.id, status, detail)


async def test_sweep_carries_out_what_temporal_missed_and_leaves_final_events(
    dunning: Dunning, tmp_path: Path
) -> None:
    settings = receiver_settings(tmp_path, dunning.task_queue)
    store = dunning.activities.store
    now = int((await dunning.now()).timestamp())
    missed, done, rejected, failed = (new_invoice_id() for _ in range(4))
    missed_event, done_event = neutral_failure(missed, now), neutral_failure(done, now)
    rejected_event, failed_event = neutral_failure(rejected, now), neutral_failure(failed, now)

    await deliver(Receiver(settings, temporal_is_down, store), missed_event, 503)
    store_as(store, rejected_event, WebhookEventStatus.REJECTED, "currency: unknown")
    store_as(store, failed_event, WebhookEventStatus.FAILED, "internal error: OperationalError")
    desk = CaseDesk(settings, client_of(dunning), store)
    async with dunning.worker():
        await deliver(Receiver(settings, client_of(dunning), store), done_event, 200)
        assert await sweep(desk) == []  # all just received: their delivery may still act

        swept = await sweep(desk, retry_after=timedelta(0))
        await status_when(case_handle(dunning, missed), lambda v: True, "the missed case")

    assert sorted((event.event_id, handled.status) for event, handled in swept) == sorted(
        [(missed_event["id"], "processed"), (failed_event["id"], "processed")]
    )
    assert (stored(store, missed_event).status, stored(store, missed_event).deliveries) == (
        "processed",
        2,
    )
    assert stored(store, failed_event).status == "processed"
    assert await case_run_status(dunning.env.client, f"dunning-{failed}") is not None
    # Final events are never acted on again: not the processed one, not the rejected one.
    assert stored(store, done_event).deliveries == 1
    assert (stored(store, rejected_event).status, stored(store, rejected_event).deliveries) == (
        "rejected",
        1,
    )
    assert await case_run_status(dunning.env.client, f"dunning-{rejected}") is None


async def test_event_is_left_failed_after_its_last_allowed_delivery(
    dunning: Dunning, tmp_path: Path
) -> None:
    settings = receiver_settings(tmp_path, dunning.task_queue)
    store = dunning.activities.store
    event = neutral_failure(new_invoice_id(), int((await dunning.now()).timestamp()))
    await deliver(Receiver(settings, temporal_is_down, store), event, 503)
    row = stored(store, event)

    outage = CaseDesk(settings, temporal_is_down, store)
    [(_, handled)] = await retry_all(outage, [row], max_deliveries=2)

    assert handled.status == "failed"
    assert handled.detail.startswith("gave up after 2 deliveries: Temporal is unreachable")
    assert stored(store, event).status == "failed"
    later = datetime.now(UTC) + timedelta(hours=1)
    assert store.webhook_events_to_retry(PROVIDERS, later, max_deliveries=2) == []
    assert [e.event_id for e in store.webhook_events_to_retry(PROVIDERS, later)] == [event["id"]]


def test_only_unfinished_unclaimed_billing_events_are_due(tmp_path: Path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'due.db'}")
    store.create_schema()

    def received(provider: str, event_id: str, status: WebhookEventStatus | None) -> None:
        row, _ = store.claim_webhook_event(
            WebhookEvent(
                provider=provider,
                event_id=event_id,
                type="payment_failed",
                occurred_at=datetime.now(UTC),
            )
        )
        if status is not None:  # None: a delivery is acting on it right now (a live claim)
            store.settle_webhook_event(row.id, status, "")

    received("billing", "evt_pending", WebhookEventStatus.PENDING)
    received("stripe", "evt_failed", WebhookEventStatus.FAILED)
    received("billing", "evt_claimed", None)
    received("twilio", "evt_sms", WebhookEventStatus.FAILED)
    for final in ("processed", "ignored", "rejected"):
        received("billing", f"evt_{final}", WebhookEventStatus(final))

    later = datetime.now(UTC) + timedelta(minutes=1)
    due = store.webhook_events_to_retry(PROVIDERS, later)
    assert [e.event_id for e in due] == ["evt_pending", "evt_failed"]
    assert store.webhook_events_to_retry(PROVIDERS, datetime.now(UTC) - timedelta(minutes=1)) == []


async def test_worker_sweeper_logs_a_failed_round_and_tries_again(tmp_path: Path, caplog) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'no-tables.db'}")  # every round fails: no table
    settings = receiver_settings(tmp_path).model_copy(update={"event_sweep_seconds": 1})
    client = await Client.connect("127.0.0.1:1", lazy=True, data_converter=compact_data_converter)

    with caplog.at_level(logging.WARNING, logger="dunning.webhooks"):
        async with sweeping(settings, client, store):
            await asyncio.sleep(1.5)

    rounds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event sweep")]
    assert len(rounds) >= 2, rounds
    assert all("no such table" in line and "\n" not in line for line in rounds)


async def test_events_list_and_retry_commands(dunning: Dunning, tmp_path: Path) -> None:
    settings = receiver_settings(tmp_path, dunning.task_queue)
    store = dunning.activities.store
    now = int((await dunning.now()).timestamp())
    missed, rejected = new_invoice_id(), new_invoice_id()
    missed_event, rejected_event = neutral_failure(missed, now), neutral_failure(rejected, now)
    await deliver(Receiver(settings, temporal_is_down, store), missed_event, 503)
    store_as(store, rejected_event, WebhookEventStatus.REJECTED, "currency: unknown code XYZ")
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": str(store.engine.url),
        "TEMPORAL_ADDRESS": dunning.env.client.service_client.config.target_host,
        "TASK_QUEUE": dunning.task_queue,
    }

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DUNNING, "events", *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )

    listing = await asyncio.to_thread(cli, "list", "--status", "pending")
    assert listing.returncode == 0, listing.stderr
    header, row, *more = listing.stdout.splitlines()
    assert header.split() == [
        "PROVIDER",
        "EVENT",
        "TYPE",
        "STATUS",
        "INVOICE",
        "DELIVERIES",
        "RECEIVED",
        "DETAIL",
    ]
    assert row.split()[:6] == [
        "billing",
        missed_event["id"],
        "payment_failed",
        "pending",
        missed,
        "1",
    ]
    assert "Temporal is unreachable" in row
    assert more == []
    by_invoice = await asyncio.to_thread(cli, "list", "--invoice", rejected)
    assert "currency: unknown code XYZ" in by_invoice.stdout
    assert missed_event["id"] not in by_invoice.stdout

    async with dunning.worker():
        retried = await asyncio.to_thread(
            cli, "retry", missed_event["id"], rejected_event["id"], "evt_nowhere"
        )
        await status_when(case_handle(dunning, missed), lambda v: True, "the missed case")

    assert retried.returncode == 1
    assert retried.stdout.startswith(
        f"billing {missed_event['id']} (payment_failed): processed, started dunning-{missed}"
    )
    assert retried.stderr.splitlines() == [
        "dunning: evt_nowhere: no stored billing event has this id",
        f"dunning: billing {rejected_event['id']} (payment_failed): already rejected, not retried",
    ]
    status = await case_run_status(dunning.env.client, f"dunning-{missed}")
    assert status == WorkflowExecutionStatus.RUNNING
    assert stored(store, rejected_event).deliveries == 1

    nothing = await asyncio.to_thread(cli, "retry", "--all")
    assert (nothing.returncode, nothing.stdout) == (0, "no pending or failed billing events\n")
