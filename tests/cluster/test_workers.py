"""Several workers on one task queue and one PostgreSQL store, on the dev server.

Two `python worker.py` processes share the cases while the simulated gateway and the outbox
fail a fifth of their calls (FAULT_RATE). One worker is killed with SIGKILL mid-run: every case
still finishes, on the other, with no charge or message twice and its audit trail whole.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.store import CaseStore, MessageStatus
from config.converter import compact_data_converter
from config.settings import Settings
from intake.cases import CaseOpener
from tests.support.workers import (
    WorkerProcess,
    billing_event,
    fast_policy_files,
    outbox_sends,
    own_database,
)
from workflows.dunning import DunningWorkflow

# Payment method → (outcome, charges) under the fast policy.
CASES = {
    "pm_card_visa": ("recovered", 1),
    "pm_sim_recovers_on_attempt_2": ("recovered", 2),
    "pm_sim_recovers_on_attempt_3": ("recovered", 3),
    "pm_card_chargeDeclinedInsufficientFunds": ("collections", None),
}
CASES_PER_METHOD = 4


@pytest.fixture
def cluster_database(postgres_url: str) -> Iterator[str]:
    """A database of its own on the suite's PostgreSQL, shared by the test's workers."""
    with own_database(postgres_url) as url:
        yield url


@pytest.fixture
def cluster_env(dev_server: WorkflowEnvironment, cluster_database: str, tmp_path: Path):
    """Settings of every worker: the dev server, the shared store, one task queue, faults."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": cluster_database,
        "TASK_QUEUE": f"cluster-{uuid.uuid4().hex[:8]}",
        **fast_policy_files(tmp_path),
        "SELF_SERVICE_SECRET": "self-service-secret-for-tests-3b9e",
        "FAULT_RATE": "0.2",
        "EVENT_SWEEP_SECONDS": "3600",
        "PYTHONUNBUFFERED": "1",
    }


async def test_a_killed_worker_leaves_every_case_to_the_others_with_nothing_twice(
    cluster_env: dict[str, str], tmp_path: Path
):
    workers = [WorkerProcess(cluster_env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        for worker in workers:
            worker.wait_polling()
        names = ("DATABASE_URL", "TASK_QUEUE", "POLICIES_DIR", "SEGMENTS_FILE")
        settings = Settings(_env_file=None, **{n.lower(): cluster_env[n] for n in names})
        store = CaseStore(settings.database_url)
        client = await Client.connect(
            cluster_env["TEMPORAL_ADDRESS"], data_converter=compact_data_converter
        )
        opener = CaseOpener.from_settings(settings)
        methods = {}
        for method in CASES:
            for _ in range(CASES_PER_METHOD):
                invoice = f"in_cl_{uuid.uuid4().hex[:10]}"
                started = await opener.start(client, store, billing_event(invoice, method))
                assert started.started, started.message
                methods[invoice] = method

        # Kill a worker once it has done real work and cases are mid-schedule.
        victim, survivor = workers
        deadline = time.monotonic() + 60
        while not outbox_sends(victim.log) or sum(len(store.attempts(i)) for i in methods) < 8:
            assert time.monotonic() < deadline, "the workers never got going"
            await asyncio.sleep(0.2)
        victim.kill()

        handles = [
            client.get_workflow_handle_for(DunningWorkflow.run, f"dunning-{invoice}")
            for invoice in methods
        ]
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 240)
        assert survivor.process.poll() is None, survivor.log.read_text()
    finally:
        for worker in workers:
            worker.stop()

    sends = outbox_sends(*(w.log for w in workers))
    assert sends and max(sends.values()) == 1, [k for k, n in sends.items() if n > 1]
    # Faults did strike: sends whose answer was lost were retried and not sent again.
    statuses = Counter(m.status for invoice in methods for m in store.messages(invoice))
    assert statuses[MessageStatus.UNCONFIRMED] > 0, statuses
    for invoice, result in zip(methods, results, strict=True):
        outcome, charges = CASES[methods[invoice]]
        assert result.outcome == outcome, (invoice, result)
        # The gateway's ledger: one charge per attempt's key, the same attempts the case counted.
        attempts = store.attempts(invoice)
        keys = [a.idempotency_key for a in attempts]
        assert keys == [f"dunning:{invoice}:attempt:{n}" for n in range(1, len(keys) + 1)]
        assert all(store.simulated_charge(key) is not None for key in keys)
        assert len(keys) == result.charge_attempts == (charges or len(keys))
        assert sum(a.approved for a in attempts) == (outcome == "recovered")
        # The outbox: one row per (case, step, channel), each sent at most once.
        messages = store.messages(invoice)
        assert len({(m.step, m.channel) for m in messages}) == len(messages)
        assert (f"outcome-{outcome}", "email") in {(m.step, m.channel) for m in messages}
        # The audit trail: every line in sequence, from opening to the outcome.
        trail = store.case_events(invoice)
        assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
        assert trail[0].kind == "opened" and outcome in [e.kind for e in trail]
        declined = [e for e in trail if e.kind == "charge_declined"]
        assert len(declined) == sum(not a.approved for a in attempts)
        assert store.get_case(invoice).status == outcome
