"""How big a full-schedule case's history is, against the 12 KiB bound (issue 15).

    .venv/bin/python bench/history_size.py

Runs one `standard` v1 case from a soft decline through every retry and reminder to
collections on the time-skipping test server, twice: pinned by content hash (as intake opens
cases now) and unpinned (as cases were opened before: the policy loaded into the history).
The size is the server's encoded size: the sum of `event.ByteSize()` over the fetched
history's events (the serialized `History` message is printed beside it, a few bytes more
for the field tags). Also prints the largest contributors by event kind (activity scheduled
and completed events by activity name), then the bytes of payloads by what carries them
(each activity's input and result, the case's input and result, signals), of user metadata
(summaries), and of everything else (the events' own fields, which no payload change
shrinks). A benchmark: it prints, it asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.history.v1 import History, HistoryEvent  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from bench.case_wall_time import bench_activities, start_case  # noqa: E402
from bench.servers import time_skipping_server  # noqa: E402
from config.policies import find_policy  # noqa: E402
from config.settings import Settings  # noqa: E402
from workflows.dunning import DunningWorkflow  # noqa: E402
from workflows.policy_versions import POLICY_VERSIONS  # noqa: E402

BOUND = 12 * 1024
DECLINED = "pm_card_chargeDeclinedInsufficientFunds"
QUEUE = Settings.model_fields["task_queue"].default
"""Production's task queue: its name is in every task event, so its length counts."""


def contributor(event: HistoryEvent) -> str:
    """An event's kind, activity events named by their activity."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    if event.HasField("activity_task_scheduled_event_attributes"):
        return f"{kind} {event.activity_task_scheduled_event_attributes.activity_type.name}"
    return kind


async def full_schedule_history(
    env: WorkflowEnvironment, queue: str, policy_hash: str | None
) -> list[HistoryEvent]:
    """The events of one case run to collections."""
    handle = await start_case(env, queue, DECLINED, policy_hash)
    result = await handle.result()
    assert result.outcome == "collections", result.outcome
    return list((await handle.fetch_history()).events)


def payload_bytes(events: list[HistoryEvent]) -> Counter[str]:
    """Bytes of payloads in `events` by what carries them, and of user metadata."""
    activities: dict[int, str] = {}
    carried: Counter[str] = Counter()
    for event in events:
        carried["user metadata (summaries)"] += event.user_metadata.ByteSize()
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            activities[event.event_id] = scheduled.activity_type.name
            carried[f"{scheduled.activity_type.name} input"] += scheduled.input.ByteSize()
        elif event.HasField("activity_task_completed_event_attributes"):
            completed = event.activity_task_completed_event_attributes
            name = activities.get(completed.scheduled_event_id, "?")
            carried[f"{name} result"] += completed.result.ByteSize()
        elif event.HasField("workflow_execution_started_event_attributes"):
            started = event.workflow_execution_started_event_attributes
            carried["case input"] += started.input.ByteSize()
        elif event.HasField("workflow_execution_completed_event_attributes"):
            completed = event.workflow_execution_completed_event_attributes
            carried["case result"] += completed.result.ByteSize()
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            signaled = event.workflow_execution_signaled_event_attributes
            carried[f"signal {signaled.signal_name}"] += signaled.input.ByteSize()
    return carried


def report(label: str, events: list[HistoryEvent]) -> int:
    """Print the history's size, its top contributors and its payloads; the size."""
    size = sum(event.ByteSize() for event in events)
    serialized = History(events=events).ByteSize()
    verdict = "within" if size <= BOUND else "over"
    print(
        f"{label}: {len(events)} events, {size:,} B encoded ({size / 1024:.1f} KiB; "
        f"serialized History {serialized:,} B) = {size / BOUND:.2f}x the 12 KiB bound, {verdict}"
    )
    by_kind: Counter[str] = Counter()
    for event in events:
        by_kind[contributor(event)] += event.ByteSize()
    for kind, total in by_kind.most_common(5):
        print(f"    {total:6,} B  {kind}")
    carried = payload_bytes(events)
    print(f"  payloads and metadata {carried.total():,} B, of which:")
    for what, total in carried.most_common():
        print(f"    {total:6,} B  {what}")
    print(f"  the rest of {len(events)} events: {size - carried.total():,} B")
    return size


async def main() -> None:
    async with time_skipping_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            activities = bench_activities(tmp)
            activities.store.fill_policy_versions(POLICY_VERSIONS, activities.policies)
            pinned = POLICY_VERSIONS.add(find_policy(activities.policies, "standard", 1))
            async with Worker(
                env.client,
                task_queue=QUEUE,
                workflows=[DunningWorkflow],
                activities=activities.all(),
                activity_executor=ThreadPoolExecutor(16),
            ):
                before = report(
                    "before (policy loaded into the history)",
                    await full_schedule_history(env, QUEUE, None),
                )
                after = report(
                    "pinned by hash",
                    await full_schedule_history(env, QUEUE, pinned.hash),
                )
    print(f"pinned/before: {after / before:.2f} ({before - after:,} B less per case)")


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300 can crash the interpreter's exit after a good run
