"""Load across several workers: N cases, two `python worker.py` processes, injected faults.

    .venv/bin/python bench/load.py [--cases 10000] [--workers 2] [--fault-rate 0.2]
        [--database-url postgresql+psycopg://...] [--port 7330] [--sample 200]

Runs the bundled dev server (on --port) and the workers against one PostgreSQL store (a new
database on --database-url's server, or on DATABASE_URL's, or on a pgserver of its own;
dropped at the end), with the fast test policy (a case ends within seconds) and FAULT_RATE
set, so a share of charges and messages meet a 5xx or a timeout and are retried. Starts the
cases, waits for every one to close, then checks and prints:

- every case terminal and completed, its audit trail in sequence from `opened` to its outcome;
- duplicates: charges (more than one per idempotency key, or more than one approved per
  invoice) and messages (more than one row per case, step and channel, or more than one send
  of a key in the workers' logs): all must be 0;
- cases/s (first start to last close), billable actions per case and p50/p99 step latency
  (activity scheduled → completed, retries included) from the histories of a sample of cases,
  and each worker's peak RSS (VmHWM) and CPU time (from /proc).

A benchmark: it prints figures and asserts nothing; a broken check prints as such.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from activities.store import CaseStore  # noqa: E402
from bench.servers import dev_server  # noqa: E402
from config.settings import Settings  # noqa: E402
from intake.cases import CaseOpener  # noqa: E402
from tests.support.harness import postgres_for_tests  # noqa: E402
from tests.support.workers import (  # noqa: E402
    WorkerProcess,
    billing_event,
    fast_policy_files,
    outbox_sends,
    own_database,
)

# A mix of endings under the fast policy: recovered at once, on a retry, or to collections.
METHODS = [
    "pm_card_visa",
    "pm_sim_recovers_on_attempt_2",
    "pm_sim_recovers_on_attempt_3",
    "pm_card_chargeDeclinedInsufficientFunds",
]
OUTCOMES = ("recovered", "collections", "cancelled")

# History events Temporal Cloud bills as one action each (activity attempts are counted apart).
BILLED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (from /proc); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


async def start_cases(
    client: Client, opener: CaseOpener, store: CaseStore, count: int, concurrency: int
) -> list[str]:
    """Start `count` cases, `concurrency` at a time; their invoice ids."""
    invoices = [f"in_load_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def start(n: int, invoice: str) -> None:
        async with gate:
            started = await opener.start(client, store, billing_event(invoice, METHODS[n % 4]))
            if not started.started:
                raise RuntimeError(started.message)

    await asyncio.gather(*(start(n, invoice) for n, invoice in enumerate(invoices)))
    return invoices


async def wait_closed(
    client: Client, task_queue: str, count: int, workers: list
) -> dict[float, float]:
    """Wait until every case on `task_queue` has closed, printing progress; when the first
    10%, 90% and 100% of them had closed."""
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus != 'Running'"
    closed, last, reached = 0, time.monotonic(), {}
    while closed < count:
        await asyncio.sleep(2)
        closed = (await client.count_workflows(query)).count
        for share in (0.1, 0.9, 1.0):
            if closed >= share * count:
                reached.setdefault(share, time.monotonic())
        if time.monotonic() - last > 15:
            rss = " ".join(f"{peak_rss_mib(w.process.pid):.0f}" for w in workers)
            print(f"  {closed:,}/{count:,} closed; worker peak RSS MiB: {rss}", flush=True)
            last = time.monotonic()
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"a worker died: see {worker.log}")
    return reached


async def history_figures(client: Client, invoices: list[str]) -> tuple[list[int], list[float]]:
    """Billable actions per case and activity step latencies (s), from the cases' histories."""
    actions, latencies = [], []
    for invoice in invoices:
        history = await client.get_workflow_handle(f"dunning-{invoice}").fetch_history()
        scheduled, count = {}, 0
        for event in history.events:
            if event.event_type in BILLED:
                count += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = event.event_time.ToDatetime()
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                count += event.activity_task_started_event_attributes.attempt
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                began = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
                latencies.append((event.event_time.ToDatetime() - began).total_seconds())
        actions.append(count)
    return actions, latencies


def check_store(store: CaseStore, invoices: list[str], logs: list[Path]) -> dict[str, int]:
    """What must be zero (or all) after the run, counted in SQL over the whole store."""
    queries = {
        "cases not terminal in the store": (
            "SELECT count(*) FROM cases WHERE status NOT IN ('recovered', 'collections', "
            "'cancelled') OR closed_at IS NULL"
        ),
        "audit trails out of sequence": (
            "SELECT count(*) FROM (SELECT case_id FROM case_events GROUP BY case_id "
            "HAVING min(seq) <> 1 OR max(seq) <> count(*)) gaps"
        ),
        "audit trails without opened and outcome": (
            "SELECT count(*) FROM cases c WHERE NOT EXISTS (SELECT 1 FROM case_events e "
            "WHERE e.case_id = c.case_id AND e.kind = 'opened') OR NOT EXISTS (SELECT 1 "
            "FROM case_events e WHERE e.case_id = c.case_id AND e.kind = c.status)"
        ),
        "charges twice on one key": (
            "SELECT count(*) FROM (SELECT idempotency_key FROM charge_attempts "
            "GROUP BY idempotency_key HAVING count(*) > 1) twice"
        ),
        "attempts without a ledger charge": (
            "SELECT count(*) FROM charge_attempts a WHERE NOT EXISTS (SELECT 1 FROM "
            "simulated_charges s WHERE s.idempotency_key = a.idempotency_key)"
        ),
        "invoices approved twice": (
            "SELECT count(*) FROM (SELECT case_id FROM charge_attempts WHERE approved "
            "GROUP BY case_id HAVING count(*) > 1) twice"
        ),
        "messages twice per case, step and channel": (
            "SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY case_id, step, channel "
            "HAVING count(*) > 1) twice"
        ),
    }
    with store.engine.connect() as connection:
        found = {what: connection.execute(text(sql)).scalar_one() for what, sql in queries.items()}
        found["cases in the store"] = connection.execute(
            text("SELECT count(*) FROM cases")
        ).scalar_one()
    sends = outbox_sends(*logs)
    found["messages sent twice (workers' logs)"] = sum(1 for n in sends.values() if n > 1)
    found["messages sent"] = len(sends)
    return found


async def run(args: argparse.Namespace) -> None:
    server_url = args.database_url or os.environ.get("DATABASE_URL", "")
    with ExitStack() as stack:
        if not server_url.startswith("postgresql"):
            server_url = stack.enter_context(postgres_for_tests())
        database = stack.enter_context(own_database(server_url, prefix="load"))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dunning-load-")))
        # An overloaded server's complaints would drown the figures.
        async with dev_server(args.port, dev_server_log_level="never") as env:
            worker_env = {
                **os.environ,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{args.port}",
                "DATABASE_URL": database,
                "TASK_QUEUE": f"load-{uuid.uuid4().hex[:8]}",
                **fast_policy_files(folder),
                "SELF_SERVICE_SECRET": "load-bench-self-service-secret-9d1f",
                "FAULT_RATE": str(args.fault_rate),
                "EVENT_SWEEP_SECONDS": "3600",
                "PYTHONUNBUFFERED": "1",
            }
            settings = Settings(
                _env_file=None,
                database_url=database,
                task_queue=worker_env["TASK_QUEUE"],
                policies_dir=worker_env["POLICIES_DIR"],
                segments_file=worker_env["SEGMENTS_FILE"],
            )
            workers = [
                WorkerProcess(worker_env, folder / f"worker-{n}.log")
                for n in range(1, args.workers + 1)
            ]
            try:
                for worker in workers:
                    worker.wait_polling()
                await measure(args, env.client, settings, workers)
            finally:
                for worker in workers:
                    worker.stop()


async def measure(
    args: argparse.Namespace, client: Client, settings: Settings, workers: list[WorkerProcess]
) -> None:
    store = CaseStore(settings.database_url)
    opener = CaseOpener.from_settings(settings)
    print(
        f"{args.cases:,} cases, {len(workers)} workers, FAULT_RATE={args.fault_rate}, "
        f"store {store.engine.url.get_backend_name()}",
        flush=True,
    )
    began = time.monotonic()
    invoices = await start_cases(client, opener, store, args.cases, args.concurrency)
    started = time.monotonic()
    print(f"  started in {started - began:.1f} s ({args.cases / (started - began):.1f}/s)")
    reached = await wait_closed(client, settings.task_queue, args.cases, workers)
    ended = reached[1.0]
    rss = [peak_rss_mib(w.process.pid) for w in workers]
    cpu = [cpu_seconds(w.process.pid) for w in workers]

    query = f"TaskQueue = '{settings.task_queue}' AND ExecutionStatus = 'Completed'"
    completed = (await client.count_workflows(query)).count
    sample = random.Random(7).sample(invoices, min(args.sample, len(invoices)))
    actions, latencies = await history_figures(client, sample)
    found = check_store(store, invoices, [w.log for w in workers])
    statuses = [
        (await client.get_workflow_handle(f"dunning-{i}").describe()).status for i in sample[:20]
    ]

    elapsed = ended - began
    print(f"cases completed: {completed:,}/{args.cases:,} (sample statuses: "
          f"{sorted({s.name for s in statuses if s is not None})})")  # fmt: skip
    for what, count in found.items():
        print(f"  {what}: {count:,}")
    quantiles = statistics.quantiles(latencies, n=100)
    steady = 0.8 * args.cases / max(reached[0.9] - reached[0.1], 1e-9)
    print(f"throughput: {args.cases / elapsed:.1f} cases/s ({args.cases:,} in {elapsed:.0f} s, "
          f"first start to last close; a case lasts ~15 s of policy time plus fault retries); "
          f"steady {steady:.1f} cases/s (10% to 90% closed)")  # fmt: skip
    print(f"billable actions per case (sample of {len(sample)}): mean "
          f"{statistics.mean(actions):.1f}, median {statistics.median(actions):.0f}, "
          f"max {max(actions)} (activity retries of injected faults included)")  # fmt: skip
    print(f"step latency, activity scheduled → completed ({len(latencies):,} steps): p50 "
          f"{quantiles[49] * 1000:.0f} ms, p99 {quantiles[98] * 1000:.0f} ms "
          f"(retry backoff of faulted steps included)")  # fmt: skip
    print("worker peak RSS: " + ", ".join(f"{r:.0f} MiB" for r in rss))
    load = f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    print("worker CPU: " + ", ".join(f"{c:.0f} s ({c / elapsed:.0%} of a core)" for c in cpu))
    print(load)
    if args.cases < 10_000:
        print(f"extrapolated to 10,000 cases at the steady rate: {10_000 / steady:.0f} s")
    store.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server to use")
    parser.add_argument("--port", type=int, default=7330, help="the dev server's port")
    parser.add_argument("--sample", type=int, default=200, help="histories read for figures")
    parser.add_argument("--concurrency", type=int, default=32, help="starts in flight")
    args = parser.parse_args()
    asyncio.run(run(args))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a crash at interpreter exit must not turn a run red


if __name__ == "__main__":
    main()
