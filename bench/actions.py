"""Billable actions per case on every outcome path, from real histories, against the bound.

    .venv/bin/python bench/actions.py

Runs each path of `tests/workflow/cost_paths.py` on the time-skipping test server with a real
worker, the real activities and the simulated gateway, one case at a time (the server's clock
is global), fetches each case's history (every run) and prints per path: billable actions
(counted as Temporal Cloud bills, `analytics.actions`), steps, support actions, the bound
``2 x steps + support + 3``, their ratio, the encoded history size against 12 KiB, and which
kinds of action the case spent. `pinned` leaves out the `load_policy` activity, which goes
once cases take their policy by content hash from the worker's registry (issue 15).
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from activities.dunning import DunningActivities  # noqa: E402
from analytics.actions import HISTORY_LIMIT, total  # noqa: E402
from bench.servers import time_skipping_server  # noqa: E402
from config.settings import Settings  # noqa: E402
from tests.support.harness import Dunning  # noqa: E402
from tests.workflow.cost_paths import PATHS, conversation_actions, run_path  # noqa: E402


async def main() -> None:
    async with time_skipping_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", _env_file=None)
            activities = DunningActivities.from_settings(settings)
            dunning = Dunning(env=env, activities=activities, task_queue=f"bench-{uuid.uuid4()}")
            print(
                f"{'path':<20} {'actions':>7} {'pinned':>6} {'steps':>5} {'support':>7} "
                f"{'bound':>5} {'ratio':>5} {'history':>13}  spent on"
            )
            async with dunning.worker():
                for name in PATHS:
                    cost, spent = await run_path(dunning, name)
                    kinds = ", ".join(f"{k} {n}" for k, n in sorted(spent.items()) if n)
                    pinned = cost.actions - spent["activity:load_policy"]
                    print(
                        f"{name:<20} {cost.actions:>7} {pinned:>6} {cost.steps:>5} "
                        f"{cost.support:>7} "
                        f"{cost.bound:>5} {cost.ratio:>5.2f} "
                        f"{cost.history_bytes / 1024:>5.1f}/{HISTORY_LIMIT // 1024} KiB  {kinds}"
                    )
                    if name == "conversation":
                        await print_conversation(dunning)


async def print_conversation(dunning: Dunning) -> None:
    """The customer's conversation of the `conversation` path, per case: shared by all of a
    customer's open cases, its actions are no case's own and stay out of the bound; here it
    served one case, so all of them fall to that case (two cases would halve the share)."""
    spent = await conversation_actions(dunning)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(spent.items()) if n)
    print(f"{'  its conversation':<20} {total(spent):>7} {'':>6} (per case, 1 case)  {kinds}")


if __name__ == "__main__":
    asyncio.run(main())
    # sdk-python#300 can crash the interpreter's exit after a successful run.
    os._exit(0)
