"""The Temporal servers the benches run on, started from the bundled binaries as the tests do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from config.converter import compact_data_converter
from intake.client import bundled_binary
from workflows.search import SEARCH_ATTRIBUTES


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, our search attributes registered (it knows none
    by itself, and an unknown one fails every upsert)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=compact_data_converter,
        test_server_existing_path=bundled_binary("temporal-test-server"),
    )
    async with env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={k.name: k.indexed_value_type for k in SEARCH_ATTRIBUTES},
            )
        )
        yield env


@asynccontextmanager
async def dev_server(port: int, **options: Any) -> AsyncIterator[WorkflowEnvironment]:
    """The bundled dev server on `port`, without its UI; `options` go to `start_local`."""
    env = await WorkflowEnvironment.start_local(
        data_converter=compact_data_converter,
        port=port,
        ui=False,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=bundled_binary("temporal"),
        **options,
    )
    async with env:
        yield env
