"""How much memory one worker process holds with many sleeping cases (the bound: 300 MiB
at 10,000 cases).

    .venv/bin/python bench/memory.py [--cases 10000] [--port 7322]

Runs the bundled dev server, and `python worker.py` as a subprocess against it (its own
SQLite store; WORKER_CACHE_SIZE and the other settings from this environment). Starts
`--cases` cases the way intake does, `--batch` at a time, and waits until each went to
sleep (its first timer in its history), then reads the worker's resident memory (VmRSS of
/proc/<pid>/status). Prints the RSS before any case and at the end, per case, and against the
bound; after every batch a progress line. When the cases take too long to start, Ctrl-C
prints the figures reached so far.
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.api.enums.v1 import EventType  # noqa: E402

from activities.store import CaseStore  # noqa: E402
from bench.servers import dev_server  # noqa: E402
from bench.throughput import all_reached, declining_card_event, started_together  # noqa: E402
from config.settings import Settings  # noqa: E402
from intake.cases import CaseOpener  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BOUND_MIB = 300
TIMER_STARTED = EventType.EVENT_TYPE_TIMER_STARTED


def rss_mib(pid: int) -> float:
    """The process's resident set, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def main(cases: int, batch: int, port: int) -> None:
    async with dev_server(port) as env:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                _env_file=None,
                database_url=f"sqlite:///{folder}/bench.db",
                temporal_address=f"localhost:{port}",
                task_queue=f"bench-memory-{uuid.uuid4().hex[:6]}",
                retry_models_dir=Path(folder) / "models",
            )
            store = CaseStore(settings.database_url)
            store.upgrade()
            worker = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                cwd=folder,
                env=os.environ
                | {
                    "TEMPORAL_ADDRESS": settings.temporal_address,
                    "DATABASE_URL": settings.database_url,
                    "TASK_QUEUE": settings.task_queue,
                    "RETRY_MODELS_DIR": str(settings.retry_models_dir),
                    "SELF_SERVICE_SECRET": secrets.token_hex(32),
                },
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                while "polling" not in worker.stdout.readline():
                    if worker.poll() is not None:
                        raise SystemExit("the worker did not start")
                await asyncio.sleep(2)
                before = rss_mib(worker.pid)
                print(f"worker RSS before any case: {before:.0f} MiB", flush=True)
                await run_cases(settings, store, env, worker.pid, cases, batch, before)
            finally:
                worker.terminate()
                worker.wait(30)
                store.engine.dispose()


async def run_cases(
    settings, store, env, pid: int, cases: int, batch_size: int, before: float
) -> None:
    opener = CaseOpener.from_settings(settings)
    prefix = f"in_mem_{uuid.uuid4().hex[:6]}_"
    now = datetime.now(UTC)
    began = time.perf_counter()
    asleep = 0
    try:
        for first in range(0, cases, batch_size):
            batch = range(first, min(first + batch_size, cases))
            results = await started_together(
                [
                    opener.start(
                        env.client, store, declining_card_event(f"{prefix}{n}", f"cus_mem_{n}", now)
                    )
                    for n in batch
                ]
            )
            await all_reached(env.client, [r.workflow_id for r in results], TIMER_STARTED)
            asleep = batch.stop
            rss = rss_mib(pid)
            print(
                f"{asleep:6,} cases asleep after {time.perf_counter() - began:5.0f} s: "
                f"worker RSS {rss:.0f} MiB",
                flush=True,
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped early: the figures below are for the cases reached")
    await asyncio.sleep(5)  # the last workflow tasks settle into the cache
    rss = rss_mib(pid)
    per_case = (rss - before) * 1024 / max(asleep, 1)
    verdict = "meets" if rss <= BOUND_MIB else "misses"
    print(f"worker RSS with {asleep:,} sleeping cases: {rss:.0f} MiB "
          f"({rss / BOUND_MIB:.2f} of the {BOUND_MIB} MiB bound: {verdict})")  # fmt: skip
    print(f"per case: {per_case:.1f} KiB above the {before:.0f} MiB of an idle worker")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="cases started before a wait")
    parser.add_argument("--port", type=int, default=7322)
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.batch, args.port))
