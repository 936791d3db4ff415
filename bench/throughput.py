"""How fast cases start and take their first step, against a no-op workflow on the same server.

    .venv/bin/python bench/throughput.py [--cases 300] [--port 7320] [--profile]

Runs the bundled dev server and, in this process, one worker as `dunning worker` builds it
(worker.py `build_worker`). First it starts `--cases` no-op workflows (on their own task
queue, a plain worker) and times until every one completed; then it starts as many dunning
cases the way intake does (`CaseOpener.start`, the store and the client the receiver uses)
and times until every case took its first step: its first activity completed, by the time
the server wrote in its history. Both phases run workflows the way the worker runs them
(WORKER_SANDBOX). Prints both rates, their ratio (the bound is 0.7x) and the CPU time this
process (client and worker) spent per workflow. `--profile` prints where the case phase
spent it (cProfile of the event loop's thread, top 25 by cumulative time).
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.dunning import DunningActivities  # noqa: E402
from activities.pre_dunning import PreDunningActivities  # noqa: E402
from activities.store import CustomerProfile  # noqa: E402
from bench.no_op import NoOpWorkflow  # noqa: E402
from bench.servers import dev_server  # noqa: E402
from config.settings import Settings  # noqa: E402
from intake.cases import CaseOpener  # noqa: E402
from intake.events import BillingEvent  # noqa: E402
from worker import build_worker, workflow_runner  # noqa: E402

BOUND = 0.7
ACTIVITY_COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
# Starts in flight at once, as a receiver under a burst of events would have.
CONCURRENT_STARTS = 50


async def started_together(starts: list) -> list:
    """Await the start coroutines, at most CONCURRENT_STARTS at a time; their results."""
    gate = asyncio.Semaphore(CONCURRENT_STARTS)

    async def one(start):
        async with gate:
            return await start

    return await asyncio.gather(*(one(start) for start in starts))


async def no_op_rate(client: Client, settings: Settings, count: int) -> float:
    """No-op workflows started and completed per second, run as the worker runs cases
    (sandboxed or not: WORKER_SANDBOX)."""
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    runner = workflow_runner(settings)
    async with Worker(client, task_queue=queue, workflows=[NoOpWorkflow], workflow_runner=runner):
        began = time.perf_counter()
        handles = await started_together(
            [
                client.start_workflow(NoOpWorkflow.run, id=f"noop-{queue}-{n}", task_queue=queue)
                for n in range(count)
            ]
        )
        await asyncio.gather(*(handle.result() for handle in handles))
        return count / (time.perf_counter() - began)


async def reached(client: Client, workflow_id: str, event_type: EventType) -> datetime:
    """When the server wrote the workflow's first event of `event_type`: waits for it."""
    handle = client.get_workflow_handle(workflow_id)
    async for history_event in handle.fetch_history_events(wait_new_event=True):
        if history_event.event_type == event_type:
            return history_event.event_time.ToDatetime(tzinfo=UTC)
    raise RuntimeError(f"{workflow_id} closed before its first {event_type.name}")


async def all_reached(client: Client, workflow_ids: list[str], event_type: EventType) -> datetime:
    """When the last of the workflows reached `event_type`."""
    gate = asyncio.Semaphore(CONCURRENT_STARTS)

    async def one(workflow_id: str) -> datetime:
        async with gate:
            return await reached(client, workflow_id, event_type)

    return max(await asyncio.gather(*(one(workflow_id) for workflow_id in workflow_ids)))


def declining_card_event(invoice_id: str, customer_id: str, now: datetime) -> BillingEvent:
    """A failed payment on a card that keeps declining softly: the case sends its first
    reminder, then sleeps until its first retry a day later."""
    return BillingEvent(
        invoice_id=invoice_id,
        customer=CustomerProfile(
            customer_id=customer_id,
            email=f"{customer_id}@example.com",
            payment_method="pm_card_chargeDeclinedInsufficientFunds",
            time_zone="UTC",
        ),
        amount_due=4900,
        currency="USD",
        decline_code="insufficient_funds",
        failed_at=now,
    )


async def case_rate(
    client: Client, settings: Settings, activities: DunningActivities, count: int
) -> float:
    """Dunning cases started (as intake starts them) and through their first step per second."""
    pre_dunning = PreDunningActivities.from_settings(settings, activities)
    store = activities.store
    opener = CaseOpener.from_settings(settings)
    prefix = f"in_bench_{uuid.uuid4().hex[:6]}_"
    now = datetime.now(UTC)
    events = [declining_card_event(f"{prefix}{n}", f"cus_bench_{n}", now) for n in range(count)]
    async with build_worker(client, settings, activities, pre_dunning):
        began = datetime.now(UTC)
        results = await started_together([opener.start(client, store, event) for event in events])
        first_steps = ACTIVITY_COMPLETED
        done = await all_reached(client, [result.workflow_id for result in results], first_steps)
    store.engine.dispose()
    return count / (done - began).total_seconds()


async def main(cases: int, port: int, profile: bool) -> None:
    async with dev_server(port) as env:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                _env_file=None,
                database_url=f"sqlite:///{folder}/bench.db",
                task_queue=f"bench-cases-{uuid.uuid4().hex[:6]}",
                retry_models_dir=Path(folder) / "models",
            )
            activities = DunningActivities.from_settings(settings)
            activities.warm_up()
            await no_op_rate(env.client, settings, min(cases, 20))  # warm-up: server and SDK
            cpu = time.process_time()
            no_op = await no_op_rate(env.client, settings, cases)
            no_op_cpu, cpu = time.process_time() - cpu, time.process_time()
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            case = await case_rate(env.client, settings, activities, cases)
            if profiler:
                profiler.disable()
            case_cpu = time.process_time() - cpu
    sandbox = "sandboxed" if settings.worker_sandbox else "not sandboxed"
    print(f"no-op workflows:            {no_op:7.1f} /s ({cases} started and completed, "
          f"{no_op_cpu / cases * 1000:.1f} ms CPU each, {sandbox})")  # fmt: skip
    print(f"case start plus first step: {case:7.1f} /s ({cases} cases, "
          f"{case_cpu / cases * 1000:.1f} ms CPU each, the whole case so far)")  # fmt: skip
    ratio = case / no_op
    verdict = "meets" if ratio >= BOUND else "misses"
    print(f"ratio {ratio:.2f}x (bound >= {BOUND}x: {verdict})")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--port", type=int, default=7320)
    parser.add_argument("--profile", action="store_true", help="cProfile the case phase")
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.port, args.profile))
