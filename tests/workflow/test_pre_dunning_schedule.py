"""The daily pre-dunning schedule on the bundled dev server (schedules are the real server's):
every worker start ensures it without failing, an existing one takes the configured time and
task queue but keeps an operator's pause, and a run it starts sends the notice due."""

from __future__ import annotations

import asyncio
import time as clock
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dunning import DunningActivities
from activities.pre_dunning import PreDunningActivities
from activities.store import CustomerProfile, SimulatedCard
from config.settings import Settings
from intake.pre_dunning import ensure_pre_dunning_schedule, run_pre_dunning_now
from workflows.contact_hours import ContactHours
from workflows.notice_windows import PreDunning
from workflows.pre_dunning import SCHEDULE_ID, PreDunningResult, PreDunningWorkflow


@pytest.fixture
async def client(dev_server: WorkflowEnvironment) -> AsyncIterator[Client]:
    """The dev server's client, with no pre-dunning schedule before or after the test."""
    await _delete_schedule(dev_server.client)
    yield dev_server.client
    await _delete_schedule(dev_server.client)


async def _delete_schedule(client: Client) -> None:
    try:
        await client.get_schedule_handle(SCHEDULE_ID).delete()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


def settings_for(tmp_path: Path, at: time) -> Settings:
    return Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        task_queue=f"pre-dunning-{uuid.uuid4().hex[:8]}",
        pre_dunning_at=at,
    )


async def test_every_worker_start_ensures_one_schedule_at_the_configured_time(
    client: Client, tmp_path: Path
):
    first = settings_for(tmp_path, time(6, 0))
    moved = settings_for(tmp_path, time(7, 30))

    await ensure_pre_dunning_schedule(client, first)
    handle = await ensure_pre_dunning_schedule(client, first)  # a second worker: no error
    await handle.pause(note="paused by an operator")
    await _until(handle, lambda d: d.schedule.state.paused)  # the pause took (it is a signal)
    await ensure_pre_dunning_schedule(client, moved)  # a redeploy with another time

    described = await handle.describe()
    [calendar] = described.schedule.spec.calendars
    assert (calendar.hour[0].start, calendar.minute[0].start) == (7, 30)
    assert described.schedule.spec.time_zone_name == "UTC"
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == ("PreDunningWorkflow", moved.task_queue)
    assert described.schedule.state.paused  # the operator's pause stands
    next_run = described.info.next_action_times[0].astimezone(UTC)
    assert (next_run.hour, next_run.minute) == (7, 30)
    listed = [s.id async for s in await client.list_schedules()]
    assert listed.count(SCHEDULE_ID) <= 1


async def test_a_run_the_schedule_starts_sends_the_notice_due(client: Client, tmp_path: Path):
    settings = settings_for(tmp_path, time(6, 0))
    activities = DunningActivities.from_settings(settings)
    expires_soon = datetime.now(UTC) + timedelta(days=3)
    activities.store.upsert_customer(
        CustomerProfile(customer_id="cus_dee", email="dee@example.com", payment_method="pm_dee")
    )
    activities.store.save_simulated_card(
        SimulatedCard(
            payment_method="pm_dee",
            customer_id="cus_dee",
            exp_month=expires_soon.month,
            exp_year=expires_soon.year,
        )
    )
    # Any day of the month: the card of the month three days from now is in a 60-day window.
    pre_dunning = PreDunningActivities(
        activities, PreDunning(card_windows=[60], contact_hours=ContactHours(enabled=False))
    )
    handle = await ensure_pre_dunning_schedule(client, settings)

    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[PreDunningWorkflow],
            activities=pre_dunning.all(),
            activity_executor=executor,
            workflow_failure_exception_types=[Exception],
        ):
            await run_pre_dunning_now(client)
            run = await _first_run(client, handle)
            result = await run.result()

    assert result.sent == 1
    [email, _] = activities.store.messages("card-pm_dee")
    assert (email.channel, email.template) == ("email", "card_expiring")


async def _first_run(client: Client, handle: ScheduleHandle):
    """The handle of the schedule's first run, once the server has started it."""
    described = await _until(handle, lambda d: bool(d.info.recent_actions))
    workflow_id = described.info.recent_actions[0].action.workflow_id
    return client.get_workflow_handle(workflow_id, result_type=PreDunningResult)


async def _until(
    handle: ScheduleHandle, condition: Callable[[ScheduleDescription], bool], within: float = 30
) -> ScheduleDescription:
    """The schedule's description once `condition` holds: the server applies changes to a
    schedule asynchronously."""
    deadline = clock.monotonic() + within
    while clock.monotonic() < deadline:
        described = await handle.describe()
        if condition(described):
            return described
        await asyncio.sleep(0.2)
    raise AssertionError(f"the schedule never reached the condition: {described}")
