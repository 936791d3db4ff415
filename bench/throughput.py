"""How fast cases start and take their first step, against a no-op workflow on the same server.

    .venv/bin/python bench/throughput.py [--cases 300] [--port 7320] [--profile]

Runs the bundled dev server and, in this process, one worker as `dunning worker` builds it
(worker.py `build_worker`). First it starts `--cases` no-op workflows (on their own task
queue, a plain worker) and times until every one completed; then it starts as many dunning
cases the way intake does (`CaseOpener.start`, the store and the client the receiver uses)
and times until every case took its first step: its first message or its first record is in
the store. Prints both rates and their ratio (the bound is 0.7x). `--profile` prints where
the case phase spent this process's time (cProfile, top 25 by cumulative time).
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

from sqlalchemy import text  # noqa: E402
from temporalio import workflow  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.dunning import DunningActivities  # noqa: E402
from activities.pre_dunning import PreDunningActivities  # noqa: E402
from activities.store import CaseStore, CustomerProfile  # noqa: E402
from config.settings import Settings  # noqa: E402
from intake.cases import CaseOpener  # noqa: E402
from intake.client import bundled_binary  # noqa: E402
from intake.events import BillingEvent  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.search import SEARCH_ATTRIBUTES  # noqa: E402

BOUND = 0.7
# Starts in flight at once, as a receiver under a burst of events would have.
CONCURRENT_STARTS = 50


@workflow.defn(sandboxed=False)
class NoOpWorkflow:
    """The yardstick: a workflow that completes in its first task."""

    @workflow.run
    async def run(self) -> None:
        return None


async def started_together(starts: list) -> None:
    """Await the start coroutines, at most CONCURRENT_STARTS at a time."""
    gate = asyncio.Semaphore(CONCURRENT_STARTS)

    async def one(start) -> None:
        async with gate:
            await start

    await asyncio.gather(*(one(start) for start in starts))


async def no_op_rate(client: Client, count: int) -> float:
    """No-op workflows started and completed per second."""
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[NoOpWorkflow]):
        began = time.perf_counter()
        handles = []

        async def start(n: int) -> None:
            handles.append(
                await client.start_workflow(
                    NoOpWorkflow.run, id=f"noop-{queue}-{n}", task_queue=queue
                )
            )

        await started_together([start(n) for n in range(count)])
        await asyncio.gather(*(handle.result() for handle in handles))
        return count / (time.perf_counter() - began)


def cases_stepped(store: CaseStore, prefix: str) -> int:
    """Cases of this run with a message or a case row in the store: each took a step."""
    with store.engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT COUNT(*) FROM (SELECT case_id FROM messages WHERE case_id LIKE :p"
                " UNION SELECT case_id FROM cases WHERE case_id LIKE :p) AS stepped"
            ),
            {"p": f"{prefix}%"},
        ).scalar_one()


async def case_rate(client: Client, settings: Settings, count: int) -> float:
    """Dunning cases started (as intake starts them) and through their first step per second."""
    activities = DunningActivities.from_settings(settings)
    pre_dunning = PreDunningActivities.from_settings(settings, activities)
    activities.warm_up()
    store = activities.store
    opener = CaseOpener.from_settings(settings)
    prefix = f"in_bench_{uuid.uuid4().hex[:6]}_"
    now = datetime.now(UTC)
    events = [
        BillingEvent(
            invoice_id=f"{prefix}{n}",
            customer=CustomerProfile(
                customer_id=f"cus_bench_{n}",
                email=f"bench{n}@example.com",
                payment_method="pm_card_chargeDeclinedInsufficientFunds",
                time_zone="UTC",
            ),
            amount_due=4900,
            currency="USD",
            decline_code="insufficient_funds",
            failed_at=now,
        )
        for n in range(count)
    ]
    async with build_worker(client, settings, activities, pre_dunning):
        began = time.perf_counter()
        await started_together([opener.start(client, store, event) for event in events])
        while await asyncio.to_thread(cases_stepped, store, prefix) < count:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - began
    store.engine.dispose()
    return count / elapsed


async def main(cases: int, port: int, profile: bool) -> None:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        port=port,
        ui=False,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=bundled_binary("temporal"),
    )
    async with env:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                _env_file=None,
                database_url=f"sqlite:///{folder}/bench.db",
                task_queue=f"bench-cases-{uuid.uuid4().hex[:6]}",
                retry_models_dir=Path(folder) / "models",
            )
            await no_op_rate(env.client, min(cases, 20))  # warm-up: server and SDK
            no_op = await no_op_rate(env.client, cases)
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            case = await case_rate(env.client, settings, cases)
            if profiler:
                profiler.disable()
    print(f"no-op workflows:            {no_op:7.1f} /s ({cases} started and completed)")
    print(f"case start plus first step: {case:7.1f} /s ({cases} cases)")
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
