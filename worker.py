"""Run a dunning worker; with no Temporal cluster configured, run the bundled dev server too.

    dunning worker            # or: python worker.py

Settings come from the environment (see config/settings.py): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, DATABASE_URL, TASK_QUEUE. Every
EVENT_SWEEP_SECONDS the worker carries out stored billing events no delivery finished, and every
OUTBOUND_DELIVERY_SECONDS it delivers the outbound case events that are due. At start it
ensures the daily pre-dunning schedule (PRE_DUNNING_AT, UTC). With METRICS_PORT set it serves
Prometheus /metrics there (dunning's and the SDK's); LOG_FORMAT=json logs JSON lines.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities import metrics
from activities.dunning import DunningActivities
from activities.logs import configure_logging
from activities.outbound import delivering
from activities.pre_dunning import PreDunningActivities
from config.settings import SecretsProblem, Settings
from intake.client import temporal
from intake.demo import run_demo, run_pre_dunning_demo
from intake.pre_dunning import ensure_pre_dunning_schedule
from webhooks.app import serve as serve_receiver
from webhooks.codec_server import serve_demo_codec
from webhooks.sweeper import sweeping
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow
from workflows.policy_versions import POLICY_VERSIONS
from workflows.pre_dunning import PreDunningWorkflow

log = logging.getLogger("dunning.worker")


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The sandbox when WORKER_SANDBOX asks for it; else workflows run as plain code, loaded
    once per process instead of once per case."""
    return SandboxedWorkflowRunner() if settings.worker_sandbox else UnsandboxedWorkflowRunner()


def build_worker(
    client: Client,
    settings: Settings,
    activities: DunningActivities,
    pre_dunning: PreDunningActivities,
) -> Worker:
    """A worker for dunning cases and the daily pre-dunning runs on the configured task queue."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DunningWorkflow, CustomerWorkflow, PreDunningWorkflow],
        activities=[*activities.all(), *pre_dunning.all()],
        # A thread for every slot: an activity the worker accepts starts at once, instead of
        # queueing for a thread while its start-to-close timeout runs.
        max_concurrent_activities=settings.worker_activity_slots,
        activity_executor=ThreadPoolExecutor(max_workers=settings.worker_activity_slots),
        max_cached_workflows=settings.worker_cache_size,
        workflow_runner=workflow_runner(settings),
    )


async def run(settings: Settings, demo: bool = False, serve: bool = False) -> None:
    """Run the worker until interrupted; with `demo`, start the demo cases once it polls;
    with `serve`, serve the billing-event receiver beside it on the same client.
    `SecretsProblem` before anything starts when a needed secret is unset or guessable
    (the demo needs none)."""
    if demo:
        settings = settings.in_demo_mode()
    settings.check_secrets(serving=serve)
    activities = DunningActivities.from_settings(settings)
    pre_dunning = PreDunningActivities.from_settings(settings, activities)
    activities.warm_up()
    activities.store.fill_policy_versions(POLICY_VERSIONS, activities.policies)
    # SIGTERM and Ctrl-C end the wait below, so every context unwinds and the dev server
    # stops with the worker (Python's default SIGTERM would leave it running as an orphan).
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    async with (
        temporal(settings) as client,
        build_worker(client, settings, activities, pre_dunning),
        sweeping(settings, client, activities.store),
        delivering(activities.publisher, settings.outbound_delivery_seconds),
        metrics.serving(settings, activities.store),
    ):
        print(f"Worker polling task queue {settings.task_queue!r}", flush=True)
        await ensure_pre_dunning_schedule(client, settings)
        running = [asyncio.create_task(stopping.wait())]
        if serve:

            async def worker_client() -> Client:
                return client

            running.append(
                asyncio.create_task(serve_receiver(settings, worker_client, activities.store))
            )
        # The demo's dev UI shows payloads decrypted through it; the demo goes on without it.
        codec = asyncio.create_task(serve_demo_codec(settings)) if demo else None
        if demo:
            await run_demo(client, settings, activities.store)
            await run_pre_dunning_demo(client, activities.store)
        # Until a signal, or until the receiver stops (it handles signals once it serves).
        done, pending = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if codec is not None:
            codec.cancel()
            pending.add(codec)
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a receiver that failed (its port taken) fails the worker


def main(settings: Settings | None = None, demo: bool = False, serve: bool = False) -> None:
    """Entry point of `python worker.py` and `dunning worker`."""
    settings = settings or Settings()
    configure_logging(settings.log_format)
    try:
        asyncio.run(run(settings, demo, serve))
    except SecretsProblem as err:
        sys.exit(f"worker: {err}")  # one line on stderr, exit status 1


if __name__ == "__main__":
    main()
