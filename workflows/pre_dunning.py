"""PreDunningWorkflow: one day's notices before payments fail, started by the daily schedule.

It reads like the job: scan the store's customers a page at a time for cards expiring and
yearly renewals coming up, then send each due notice at the first contact hour in its
customer's zones, sleeping until then (never past the next day's scan, which takes over what
is left). Which windows are due and when each notice may go out is the pure core's
(`workflows.notice_windows`); the outbox makes every notice go out once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.pre_dunning import PreDunningActivities
    from workflows.models import DeliveryStatus
    from workflows.notice_windows import NoticeBatch, NoticeRequest, NoticeScan, send_times

SCHEDULE_ID = "dunning-pre-dunning"
"""The daily schedule's id; the runs it starts are ``dunning-pre-dunning-<time>``."""
RUN_EVERY = timedelta(days=1)
# A run ends before the next one starts (the schedule skips a run while one is running).
HORIZON = RUN_EVERY - timedelta(hours=1)
SCAN_TIMEOUT = timedelta(minutes=10)
SEND_TIMEOUT = timedelta(seconds=30)
SCAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=10)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_attempts=10,
    non_retryable_error_types=["NotifierConfigError"],
)


class PreDunningRun(BaseModel):
    """The schedule's input; fields may be added, never removed or renamed."""

    model_config = ConfigDict(extra="forbid")


class PreDunningResult(BaseModel):
    """What one day's run did: notices due, sent (on some channel), and held back (the
    weekly cap, suppressions, no contact, or a contact hour after the next run)."""

    model_config = ConfigDict(extra="forbid")

    due: int = 0
    sent: int = 0
    held: int = 0


@workflow.defn
class PreDunningWorkflow:
    """One run of the daily pre-dunning scan."""

    @workflow.run
    async def run(self, _: PreDunningRun) -> PreDunningResult:
        started = workflow.now()
        batch = await self._scan(started)
        result = PreDunningResult(due=len(batch.notices))
        for at, notices in send_times(batch, started, started + HORIZON):
            if at > workflow.now():
                workflow.set_current_details(f"{len(notices)} notices wait for {at:%H:%M} UTC")
                await workflow.sleep(at - workflow.now(), summary="contact hours")
            for notice in notices:
                delivered = await workflow.execute_activity_method(
                    PreDunningActivities.send_notice,
                    NoticeRequest(notice=notice, channels=batch.channels, at=workflow.now()),
                    start_to_close_timeout=SEND_TIMEOUT,
                    retry_policy=SEND_RETRY,
                    summary=f"{notice.kind.value} {notice.step}",
                )
                if any(d.status is DeliveryStatus.SENT for d in delivered.deliveries):
                    result.sent += 1
        result.held = result.due - result.sent
        workflow.set_current_details(f"sent {result.sent} of {result.due} notices due")
        return result

    async def _scan(self, now: datetime) -> NoticeBatch:
        """Every page of the scan, as one batch."""
        batch = NoticeBatch(next_after=None)
        after = None
        while True:
            page = await workflow.execute_activity_method(
                PreDunningActivities.due_notices,
                NoticeScan(at=now, after=after),
                start_to_close_timeout=SCAN_TIMEOUT,
                retry_policy=SCAN_RETRY,
                summary="scan cards and renewals",
            )
            batch = page.model_copy(update={"notices": [*batch.notices, *page.notices]})
            if page.next_after is None:
                return batch
            after = page.next_after
