"""The daily pre-dunning schedule: created when a worker starts, visible in the Temporal UI
under Schedules as `dunning-pre-dunning`.

Every worker ensures it at start-up: the first creates it, the others find it and bring its
time (PRE_DUNNING_AT, UTC) and task queue up to date, keeping whatever an operator set on it
(paused, a note). A start-up never fails because the schedule exists.
"""

from __future__ import annotations

import dataclasses

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from workflows.pre_dunning import SCHEDULE_ID, PreDunningRun, PreDunningWorkflow


def pre_dunning_schedule(settings: Settings) -> Schedule:
    """Once a day at PRE_DUNNING_AT (UTC), a pre-dunning run on the worker's task queue; a
    run still going (waiting for a customer's morning) makes the next one skip."""
    at = settings.pre_dunning_at
    return Schedule(
        action=ScheduleActionStartWorkflow(
            PreDunningWorkflow.run,
            PreDunningRun(),
            id=SCHEDULE_ID,
            task_queue=settings.task_queue,
            static_summary="Pre-dunning: notices for expiring cards and yearly renewals",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    second=[ScheduleRange(0)],
                    minute=[ScheduleRange(at.minute)],
                    hour=[ScheduleRange(at.hour)],
                )
            ],
            time_zone_name="UTC",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="created by the dunning worker"),
    )


async def ensure_pre_dunning_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    """Create the schedule, or update the existing one's time and action. Idempotent: safe
    for every worker at every start."""
    wanted = pre_dunning_schedule(settings)
    try:
        return await client.create_schedule(SCHEDULE_ID, wanted)
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(SCHEDULE_ID)

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        kept = current.description.schedule  # its state: paused by an operator stays paused
        return ScheduleUpdate(
            schedule=dataclasses.replace(kept, action=wanted.action, spec=wanted.spec)
        )

    await handle.update(update)
    return handle


async def run_pre_dunning_now(client: Client) -> None:
    """Start a run at once, beside one that may be waiting for a customer's morning (a
    notice goes out once whichever run sends it)."""
    await client.get_schedule_handle(SCHEDULE_ID).trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
