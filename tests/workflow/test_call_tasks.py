"""Agent call tasks on the real time-skipping server: a policy's call step creates exactly one
task; calls logged on it with `dunning tasks complete` (run as a user runs it) reach the case:
no answer in its timeline with the task kept open, a promise holding the case until the date;
a case that finishes cancels its open task."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from activities.store import CallTaskStatus, CustomerProfile
from config.policies import find_policy, load_policies
from config.settings import CONFIG_DIR
from tests.support.cli import cli_env, zone_at_local_hour
from tests.support.cli import dunning as run_dunning
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CaseInput, Failure, PaymentReceived
from workflows.policy import Outcome

CALLING_POLICY = (CONFIG_DIR / "policies/standard-v1.toml").read_text().replace(
    'name = "standard"', 'name = "calling"'
).replace(
    'retries = ["P1D", "P3D", "P5D", "P7D"]', 'retries = ["P10D"]'
) + '\n[[calls]]\nafter = "P2D"\nmax_attempts = 3\n'


async def calling_case(dunning: Dunning, tmp_path: Path, zone: str) -> tuple[CaseInput, dict]:
    """A customer in `zone`, a case on the calling policy, and the CLI's environment."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "calling-v1.toml").write_text(CALLING_POLICY)
    (policies / "standard-v1.toml").write_text(
        (CONFIG_DIR / "policies/standard-v1.toml").read_text()
    )
    dunning.activities.policies = load_policies(policies, CONFIG_DIR / "declines.toml")
    assert find_policy(dunning.activities.policies, "calling").calls
    customer = CustomerProfile(
        customer_id=f"cus_{uuid.uuid4().hex[:8]}",
        name="Ann Lee",
        email="ann@example.com",
        phone="+12125550123",
        time_zone=zone,
        payment_method="pm_card_visa",
    )
    dunning.activities.store.upsert_customer(customer)
    invoice = f"in_{uuid.uuid4().hex[:12]}"
    case = CaseInput(
        case_id=invoice,
        invoice_id=invoice,
        customer_id=customer.customer_id,
        amount_due=4900,
        currency="USD",
        failure=Failure(decline_code="insufficient_funds", failed_at=await dunning.now()),
        policy_name="calling",
        policy_version=1,
    )
    env = cli_env(
        tmp_path,
        TEMPORAL_ADDRESS=dunning.env.client.service_client.config.target_host,
        DATABASE_URL=str(dunning.activities.store.engine.url),
        POLICIES_DIR=str(policies),
    )
    return case, env


async def cli(env: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(run_dunning, env, *args, cwd=tmp_path)


def has(kind: str):
    return lambda view: any(entry.kind == kind for entry in view.timeline)


async def test_a_call_step_makes_one_task_and_a_promise_on_the_call_holds_the_case(
    dunning: Dunning, tmp_path: Path
) -> None:
    zone = zone_at_local_hour(13)
    case, env = await calling_case(dunning, tmp_path, zone)
    store = dunning.activities.store
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: len(v.messages) == 1, "the first reminder")
        await dunning.env.sleep(timedelta(days=2, hours=1))
        view = await status_when(handle, has("call_task"), "the call task")
        [task] = store.call_tasks(include_closed=True)
        assert (task.case_id, task.step, task.max_attempts) == (case.case_id, "call-1", 3)
        assert f"call-1: task {task.id}, best time" in view.timeline[-1].detail
        assert task.call_after.astimezone(ZoneInfo(zone)).hour in (10, 11, 17, 18)

        listed = await cli(env, tmp_path, "tasks", "list", "--json")
        [line] = json.loads(listed.stdout)
        assert (line["task"], line["name"], line["phone"]) == (task.id, "Ann Lee", "+12125550123")
        assert (line["amount_due"], line["calls_this_week"]) == ("$49.00", 0)

        done = await cli(
            env, tmp_path, "tasks", "complete", str(task.id), "--outcome", "no_answer",
            "--note", "rang out", "--actor", "kim",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"task {task.id} open, 1 of 3 calls made; call again from" in done.stdout
        await status_when(handle, has("call"), "the call in the timeline")

        now = await dunning.now()
        too_late = (now + timedelta(days=20)).astimezone(ZoneInfo(zone)).date()
        refused = await cli(
            env, tmp_path, "tasks", "complete", str(task.id), "--outcome", "promise",
            "--pay-on", too_late.isoformat(), "--actor", "kim",
        )  # fmt: skip
        assert refused.returncode == 1 and "refused: the date must be" in refused.stderr
        assert store.call_task(task.id).attempts == 1  # nothing written for a refused call

        pay_day = (now + timedelta(days=3)).astimezone(ZoneInfo(zone)).date()
        pay_on = datetime.combine(pay_day, datetime.min.time().replace(hour=10), ZoneInfo(zone))
        done = await cli(
            env, tmp_path, "tasks", "complete", str(task.id), "--outcome", "promise",
            "--pay-on", pay_day.isoformat(), "--actor", "kim",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"promise logged on dunning-{case.case_id}: ")
        assert done.stdout.endswith(f"; task {task.id} done after 2 of 3 calls\n")
        view = await status_when(handle, lambda v: v.next_action_at == pay_on, "the promise")
        assert view.promised_for == pay_on
        result = await handle.result()

    assert result.outcome is Outcome.RECOVERED and result.reason == "paid on the promised date"
    kinds = [(e.kind, e.actor) for e in result.timeline]
    assert kinds.count(("call_task", "dunning")) == 1
    assert ("call", "kim") in kinds and ("promise_made", "kim") in kinds
    after_promise = result.timeline[kinds.index(("promise_made", "kim")) :]
    # Held until the promised date: its confirmation, then the charge on the day.
    assert [e.kind for e in after_promise][:3] == ["promise_made", "message", "recovered"]
    assert after_promise[2].at >= pay_on and result.charge_attempts == 1
    task = store.call_task(task.id)
    assert (task.status, task.attempts, task.last_outcome) == (CallTaskStatus.DONE, 2, "promise")
    assert (
        len(store.calls_to_customer_since(case.customer_id, datetime(2000, 1, 1, tzinfo=UTC))) == 2
    )


async def test_a_case_that_finishes_cancels_its_open_call_task(
    dunning: Dunning, tmp_path: Path
) -> None:
    # A zone where it is early afternoon now: the first reminder goes out at once, whatever
    # hour the suite runs (New York's contact hours had it wait from 02:00 to 13:00 UTC).
    case, _ = await calling_case(dunning, tmp_path, zone_at_local_hour(13))
    store = dunning.activities.store
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: len(v.messages) == 1, "the first reminder")
        await dunning.env.sleep(timedelta(days=2, hours=1))
        await status_when(handle, has("call_task"), "the call task")
        [task] = store.call_tasks()
        await handle.execute_update(
            DunningWorkflow.record_payment, PaymentReceived(amount=4900, actor="kim")
        )
        result = await handle.result()
    assert result.outcome is Outcome.RECOVERED
    assert store.call_task(task.id).status == CallTaskStatus.CANCELLED
    assert store.call_tasks() == []


async def test_a_payment_taken_on_the_call_recovers_the_case_and_closes_the_task(
    dunning: Dunning, tmp_path: Path
) -> None:
    case, env = await calling_case(dunning, tmp_path, zone_at_local_hour(13))
    store = dunning.activities.store
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: len(v.messages) == 1, "the first reminder")
        await dunning.env.sleep(timedelta(days=2, hours=1))
        await status_when(handle, has("call_task"), "the call task")
        [task] = store.call_tasks()
        done = await cli(
            env, tmp_path, "tasks", "complete", str(task.id), "--outcome", "paid",
            "--actor", "kim",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = await handle.result()
        again = await cli(env, tmp_path, "tasks", "complete", str(task.id), "--outcome", "paid")
        assert again.returncode == 1 and f"call task {task.id} is already done" in again.stderr

    assert (result.outcome, result.amount_recovered) == (Outcome.RECOVERED, 4900)
    [payment] = [e for e in result.timeline if e.kind == "payment_received"]
    assert payment.actor == "kim" and f"call task {task.id}" in payment.detail
    task = store.call_task(task.id)
    assert (task.status, task.attempts, task.last_outcome) == (CallTaskStatus.DONE, 1, "paid")
