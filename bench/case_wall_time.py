"""How long whole dunning cases take in wall time on the time-skipping test server.

    .venv/bin/python bench/case_wall_time.py [--runs 5]

Prints the median wall time of a full 21-day case (schedule exhausted → collections), of a
30-day one (paused by support for 9 days first) and of one that recovers on retry 2, with
the ratio of virtual to wall time. Cases run one at a time: the test server's clock is
global, so concurrent cases would skip each other's activity timeouts.
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import WorkflowHandle  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.dunning import DunningActivities  # noqa: E402
from activities.store import CustomerProfile  # noqa: E402
from bench.servers import time_skipping_server  # noqa: E402
from config.settings import Settings  # noqa: E402
from workflows.dunning import DunningWorkflow  # noqa: E402
from workflows.models import CaseInput, CaseResult, Failure, PauseRequest  # noqa: E402
from workflows.search import initial_search_attributes  # noqa: E402


def bench_activities(folder: str) -> DunningActivities:
    """The real activities over a SQLite store in `folder`, with the bench's customer."""
    activities = DunningActivities.from_settings(
        Settings(database_url=f"sqlite:///{folder}/bench.db")
    )
    activities.store.upsert_customer(
        CustomerProfile(customer_id="cus_bench", email="bench@example.com")
    )
    return activities


async def start_case(
    env: WorkflowEnvironment, queue: str, payment_method: str, policy_hash: str | None = None
) -> WorkflowHandle[DunningWorkflow, CaseResult]:
    """A case whose payment failed just now, on `payment_method`, as billing starts one."""
    invoice = f"in_bench_{uuid.uuid4().hex[:10]}"
    case = CaseInput(
        case_id=invoice,
        invoice_id=invoice,
        customer_id="cus_bench",
        amount_due=4900,
        currency="USD",
        failure=Failure(decline_code="insufficient_funds", failed_at=await env.get_current_time()),
        policy_version=1,
        policy_hash=policy_hash,
        payment_method=payment_method,
    )
    return await env.client.start_workflow(
        DunningWorkflow.run,
        case,
        id=f"dunning-{invoice}",
        task_queue=queue,
        search_attributes=initial_search_attributes(case),
    )


async def run_case(
    env: WorkflowEnvironment, payment_method: str, queue: str, paused_days: int = 0
) -> CaseResult:
    """One case from failure to outcome; support pauses it for `paused_days` at the start."""
    failed_at = await env.get_current_time()
    handle = await start_case(env, queue, payment_method)
    if paused_days:
        until = failed_at + timedelta(days=paused_days)
        await handle.signal(
            DunningWorkflow.pause, PauseRequest(reason="bench", actor="bench", until=until)
        )
    return await handle.result()


async def main(runs: int) -> None:
    async with time_skipping_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            activities = bench_activities(tmp)
            queue = "bench"
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[DunningWorkflow],
                activities=activities.all(),
                activity_executor=ThreadPoolExecutor(16),
            ):
                await run_case(env, "pm_card_visa", queue)  # warm-up
                declined = "pm_card_chargeDeclinedInsufficientFunds"
                for label, token, paused_days in [
                    ("21-day case to collections", declined, 0),
                    ("30-day case (paused 9 days, then collections)", declined, 9),
                    ("case recovered on retry 2", "pm_sim_recovers_on_attempt_2", 0),
                ]:
                    walls = []
                    for _ in range(runs):
                        started = time.perf_counter()
                        result = await run_case(env, token, queue, paused_days)
                        walls.append(time.perf_counter() - started)
                    days = (result.closed_at - result.opened_at).total_seconds() / 86400
                    wall = statistics.median(walls)
                    print(
                        f"{label}: median {wall * 1000:.0f} ms wall for {days:.1f} virtual days "
                        f"({result.charge_attempts} charges, {result.messages_sent} messages); "
                        f"virtual/wall ratio {days * 86400 / wall:,.0f}"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each case (median shown)")
    asyncio.run(main(parser.parse_args().runs))
