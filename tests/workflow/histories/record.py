"""Record one DunningWorkflow history per outcome path into tests/workflow/histories/<path>.json
(and, for a path whose customer has a conversation, its CustomerWorkflow's: <path>-customer.json).

    .venv/bin/python -m tests.workflow.histories.record            # every path, ~90 s
    .venv/bin/python -m tests.workflow.histories.record cancelled  # only those named

It starts the bundled Temporal dev server, runs a worker with the real activities (simulated
payments, outbox notifier, a SQLite store in a temporary directory) and drives each path on the
`demo` policy (its schedule fits in a minute), all at once. `tests/workflow/test_replay.py`
replays every saved file against today's workflow code, so a change that running cases could
not follow fails `make test`. Re-record after a replay-safe change; first move the files of the
old code into a subfolder (also replayed) and keep them until no case started on it is still
running (see README, "Changing workflow code while cases run").

Histories are committed: customers are invented (`cus_rec_*`, example.com, a 555 number) and
the recorder refuses to save a history that holds their name, email address or phone number.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dunning import DunningActivities
from activities.payments import GatewayConfigError
from activities.payments.simulated import SimulatedProcessor
from activities.store import CaseStore, CustomerProfile
from config.converter import compact_data_converter
from config.policies import find_policy, load_policies
from config.settings import CONFIG_DIR, Settings
from intake.client import bundled_binary, case_run_status
from tests.support.harness import status_when
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow
from workflows.models import (
    CallNoted,
    CallOutcome,
    CancelRequest,
    CaseInput,
    CaseStatus,
    CaseView,
    ChargeRequest,
    ChargeResult,
    DisputeOpened,
    DisputeResolved,
    Failure,
    PauseRequest,
    PaymentMethodUpdated,
    PaymentReceived,
    PlanChosen,
    PromiseToPay,
    ResumeRequest,
    RetryRequest,
)
from workflows.policy import LateFee, Outcome, Policy
from workflows.search import SEARCH_ATTRIBUTES, initial_search_attributes

HISTORIES = Path(__file__).parent
TASK_QUEUE = "dunning-record"
NAME = "Rec Example"
PHONE = "+15555550123"
SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
STOLEN_CARD = "pm_card_chargeDeclinedStolenCard"
RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"
SUPPORT = "support:rec"
# Also the worker's and client's identity: the default, `pid@host`, would name this machine.
IDENTITY = "dunning-record"
# The demo policy with a call step 5 s in, before its first retry.
_DEMO = find_policy(load_policies(CONFIG_DIR / "policies", CONFIG_DIR / "declines.toml"), "demo")
CALLING = Policy.model_validate(
    _DEMO.model_dump() | {"name": "demo-calls", "calls": [{"after": timedelta(seconds=5)}]}
)
# An email address or an international phone number, anywhere in a history.
CONTACT = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|\+\d{8,15}")


class Processor(SimulatedProcessor):
    """The simulated processor, refusing with a configuration error the invoices `misconfigured`
    names, as a wrong API base would."""

    def __init__(self, store: CaseStore) -> None:
        super().__init__(store)
        self.misconfigured: set[str] = set()

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if request.invoice_id in self.misconfigured:
            raise GatewayConfigError("Stripe rejected the request (resource_missing): no invoice")
        return super().charge(request)


@dataclass
class Recording:
    """The dev server's client and the worker's store and processor, shared by every path."""

    client: Client
    store: CaseStore
    processor: Processor

    async def start(
        self,
        name: str,
        payment_method: str | None,
        decline_code: str = "insufficient_funds",
        policy: str = "demo",
    ) -> WorkflowHandle:
        """Seed an invented customer and start a case for a payment that failed just now."""
        customer_id = f"cus_rec_{name}"
        self.store.upsert_customer(
            CustomerProfile(
                customer_id=customer_id,
                name=NAME,
                email=f"{customer_id}@example.com",
                phone=PHONE,
                payment_method=payment_method,
            )
        )
        invoice_id = f"in_rec_{name}_{uuid.uuid4().hex[:6]}"
        case = CaseInput(
            case_id=invoice_id,
            invoice_id=invoice_id,
            customer_id=customer_id,
            amount_due=4980,
            currency="USD",
            failure=Failure(decline_code=decline_code, failed_at=datetime.now(UTC)),
            policy_name=policy,
            policy_version=1,
        )
        return await self.client.start_workflow(
            DunningWorkflow.run,
            case,
            id=f"dunning-{invoice_id}",
            task_queue=TASK_QUEUE,
            search_attributes=initial_search_attributes(case),
        )


async def until(handle: WorkflowHandle, condition: Callable[[CaseView], bool], what: str) -> None:
    """`status_when` with a dev server's patience: real timers take their real time."""
    await status_when(handle, condition, what, within=90)


def reminded(view: CaseView) -> bool:
    """The day-0 reminder went out: the case has settled into its first wait."""
    return len(view.messages) >= 1


# A path drives one case towards its outcome and returns (handle, the outcome it must reach).
Drive = Callable[[Recording], Awaitable[tuple[WorkflowHandle, Outcome]]]


async def recovered_on_retry(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Declined once more, approved on retry 2."""
    return await rec.start("recovered_on_retry", RECOVERS_ON_2), Outcome.RECOVERED


async def recovered_by_payment_signal(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """The customer paid elsewhere: the biller's `payment_received` signal ends the case."""
    handle = await rec.start("recovered_by_payment_signal", SOFT_DECLINE)
    await until(handle, reminded, "the day-0 reminder")
    await handle.signal(
        DunningWorkflow.payment_received, PaymentReceived(amount=4980, reference="bank transfer")
    )
    return handle, Outcome.RECOVERED


async def paused_and_resumed(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Support pauses (update), resumes (update); the schedule goes on and recovers."""
    handle = await rec.start("paused_and_resumed", RECOVERS_ON_2)
    await until(handle, reminded, "the day-0 reminder")
    await handle.execute_update(
        DunningWorkflow.pause_case, PauseRequest(reason="ticket 42", actor=SUPPORT)
    )
    await asyncio.sleep(3)
    await handle.execute_update(DunningWorkflow.resume_case, ResumeRequest(actor=SUPPORT))
    return handle, Outcome.RECOVERED


async def dispute_won(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """A dispute (signals, as Stripe's webhooks send them) holds the case; won, it goes on."""
    handle = await rec.start("dispute_won", RECOVERS_ON_2)
    await until(handle, reminded, "the day-0 reminder")
    await handle.signal(DunningWorkflow.dispute_opened, DisputeOpened(reason="chargeback"))
    await until(handle, lambda v: v.status is CaseStatus.DISPUTED, "the dispute")
    await asyncio.sleep(3)
    await handle.signal(DunningWorkflow.dispute_resolved, DisputeResolved(won=True))
    return handle, Outcome.RECOVERED


async def dispute_lost(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """A dispute opened and lost through support's updates cancels the case."""
    handle = await rec.start("dispute_lost", SOFT_DECLINE)
    await until(handle, reminded, "the day-0 reminder")
    await handle.execute_update(DunningWorkflow.open_dispute, DisputeOpened(reason="fraud claim"))
    await handle.execute_update(
        DunningWorkflow.resolve_dispute, DisputeResolved(won=False, actor=SUPPORT)
    )
    return handle, Outcome.CANCELLED


async def cancelled(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """The subscription was deleted: the `cancel` signal ends the case."""
    handle = await rec.start("cancelled", SOFT_DECLINE)
    await until(handle, reminded, "the day-0 reminder")
    await handle.signal(
        DunningWorkflow.cancel, CancelRequest(reason="subscription deleted", actor="billing")
    )
    return handle, Outcome.CANCELLED


async def collections(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Every retry declines: final notice, collections, write-backs."""
    return await rec.start("collections", SOFT_DECLINE), Outcome.COLLECTIONS


async def conversation(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Two invoices of one customer on the demo policy with the conversation: both hand their
    reminders to the customer's CustomerWorkflow, which merges them; both go to collections,
    and the conversation closes (its history is saved beside the first case's)."""
    first = await rec.start("conversation", SOFT_DECLINE, policy="demo_together")
    await asyncio.sleep(2)
    await rec.start("conversation", SOFT_DECLINE, policy="demo_together")
    return first, Outcome.COLLECTIONS


async def lean_conversation(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """`conversation` as cases opened since the lean conversation run it: each case joins in
    its opening activity and leaves in its closing one, and a reminder's hand-over answers
    what became of it (or, merged later, the reply comes by signal)."""
    first = await rec.start("lean_conversation", SOFT_DECLINE, policy="demo_together")
    await asyncio.sleep(2)
    await rec.start("lean_conversation", SOFT_DECLINE, policy="demo_together")
    return first, Outcome.COLLECTIONS


async def hard_decline_new_method(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Retry 1 meets a stolen card: the case waits for a new method, which recovers it."""
    handle = await rec.start("hard_decline_new_method", STOLEN_CARD)
    await until(
        handle,
        lambda v: v.status is CaseStatus.AWAITING_PAYMENT_METHOD,
        "awaiting a new payment method",
    )
    await handle.signal(
        DunningWorkflow.payment_method_updated,
        PaymentMethodUpdated(payment_method="pm_card_visa", actor="customer"),
    )
    return handle, Outcome.RECOVERED


async def needs_customer_action(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """authentication_required: no retry; the customer pays on the hosted invoice page."""
    handle = await rec.start(
        "needs_customer_action", "pm_card_authenticationRequired", "authentication_required"
    )
    await until(
        handle,
        lambda v: v.status is CaseStatus.AWAITING_CUSTOMER_ACTION and reminded(v),
        "awaiting the customer, reminded",
    )
    await handle.execute_update(
        DunningWorkflow.record_payment,
        PaymentReceived(amount=4980, reference="hosted invoice", paid_at_biller=True),
    )
    return handle, Outcome.RECOVERED


async def operator_hold(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """A gateway configuration error blocks the case until an operator retries it."""
    handle = await rec.start("operator_hold", "pm_card_visa")
    rec.processor.misconfigured.add(handle.id.removeprefix("dunning-"))
    await until(handle, lambda v: v.status is CaseStatus.BLOCKED, "blocked")
    rec.processor.misconfigured.clear()
    await handle.execute_update(DunningWorkflow.retry_case, RetryRequest(actor="ops:rec"))
    return handle, Outcome.RECOVERED


async def smart_retry_plan(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """Smart timing plans its retries at the start (days away), then billing cancels."""
    handle = await rec.start("smart_retry_plan", SOFT_DECLINE, policy="smart")
    await until(handle, lambda v: "retry_plan" in {e.kind for e in v.timeline}, "a retry plan")
    await handle.signal(
        DunningWorkflow.cancel, CancelRequest(reason="subscription deleted", actor="billing")
    )
    return handle, Outcome.CANCELLED


async def payment_plan(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """The customer chooses two installments: the first is charged at once and the run
    continues as new (this history ends there); the second, 20 s later, recovers the case."""
    handle = await rec.start("payment_plan", "pm_card_visa")
    await until(handle, reminded, "the day-0 reminder")
    await handle.execute_update(DunningWorkflow.choose_plan, PlanChosen(installments=2))
    return handle, Outcome.RECOVERED


async def call_task(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """A call step 5 s in makes its task; the agent's first call goes unanswered (noted on
    the case), the second wins a promise to pay in 15 s, which the charge then keeps."""
    handle = await rec.start("call_task", "pm_card_visa", policy=CALLING.name)
    await until(handle, lambda v: "call_task" in {e.kind for e in v.timeline}, "the call task")
    noted = CallNoted(step="call-1", outcome=CallOutcome.NO_ANSWER, attempt=1, actor=SUPPORT)
    await handle.execute_update(DunningWorkflow.note_call, noted)
    pay_on = datetime.now(UTC) + timedelta(seconds=15)
    promise = PromiseToPay(pay_on=pay_on, actor=SUPPORT)
    await handle.execute_update(DunningWorkflow.promise_payment, promise)
    return handle, Outcome.RECOVERED


async def promise_kept(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """The customer promises to pay in 15 s: nothing happens until then, then the charge."""
    handle = await rec.start("promise_kept", "pm_card_visa")
    await until(handle, reminded, "the day-0 reminder")
    pay_on = datetime.now(UTC) + timedelta(seconds=15)
    await handle.execute_update(DunningWorkflow.promise_payment, PromiseToPay(pay_on=pay_on))
    return handle, Outcome.RECOVERED


async def late_fee(rec: Recording) -> tuple[WorkflowHandle, Outcome]:
    """A policy with a late fee (the demo's, plus a fee at 12 s): the fee is added once, the
    reminders after it name it, and every retry declines to collections."""
    return await rec.start("late_fee", SOFT_DECLINE, policy="demo_fee"), Outcome.COLLECTIONS


PATHS: dict[str, Drive] = {
    path.__name__: path
    for path in [
        recovered_on_retry,
        recovered_by_payment_signal,
        paused_and_resumed,
        dispute_won,
        dispute_lost,
        cancelled,
        collections,
        hard_decline_new_method,
        needs_customer_action,
        operator_hold,
        smart_retry_plan,
        payment_plan,
        promise_kept,
        late_fee,
        call_task,
        conversation,
        lean_conversation,
    ]
}


def payload_texts(history: str) -> Iterator[str]:
    """Every payload of a history saved as JSON, decoded (the JSON holds them in base64)."""

    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if "metadata" in node and isinstance(node.get("data"), str):
                yield base64.b64decode(node["data"]).decode(errors="replace")
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return walk(json.loads(history))


def personal_data(history: str) -> list[str]:
    """Names, email addresses and phone numbers found in a history or its payloads."""
    found = []
    for text in [history, *payload_texts(history)]:
        found += CONTACT.findall(text) + ([NAME] if NAME in text else [])
    return found


async def record(rec: Recording, name: str) -> None:
    """Drive one path to its outcome and save the history of each of its runs (a case that
    continued as new has several), refusing one that holds PII."""
    handle, expected = await PATHS[name](rec)
    result = await asyncio.wait_for(handle.result(), timeout=180)
    if result.outcome is not expected:
        raise RuntimeError(f"{name}: ended {result.outcome}, expected {expected}")
    runs, run_id = [], None
    while True:  # from the last run back to the first: each names the run it continued
        history = await rec.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.insert(0, history.to_json())
        started = history.events[0].workflow_execution_started_event_attributes
        if not (run_id := started.continued_execution_run_id):
            break
    files = [f"{name}-run{n}.json" for n in range(1, len(runs) + 1)]
    if len(runs) == 1:
        files = [f"{name}.json"]
    talk = rec.client.get_workflow_handle(f"customer-cus_rec_{name}")
    if await case_run_status(rec.client, talk.id) is not None:  # the customer's conversation
        await asyncio.wait_for(talk.result(), timeout=180)
        runs.append((await talk.fetch_history()).to_json())
        files.append(f"{name}-customer.json")
    for history, file in zip(runs, files, strict=True):
        if found := personal_data(history):
            raise RuntimeError(f"{name}: the history holds personal data: {sorted(set(found))}")
        (HISTORIES / file).write_text(history + "\n")
        print(f"{file}: {result.outcome}, {len(history) // 1024} KiB")


async def main(names: list[str]) -> None:
    """Start the dev server and a worker, and record the named paths (all when none)."""
    unknown = set(names) - set(PATHS)
    if unknown:
        raise SystemExit(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    # operator_hold fails charges on purpose: no traceback for each.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="dunning-record-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/dunning.db",
            retry_models_dir=Path(tmp),  # no trained model: the plan follows the policy
            _env_file=None,
        )
        activities = DunningActivities.from_settings(settings)
        # No shipped policy charges a late fee: the demo's schedule with one, for `late_fee`.
        demo = next(p for p in activities.policies if p.name == "demo")
        fee = LateFee(after=timedelta(seconds=12), fixed=500)
        activities.policies.append(demo.model_copy(update={"name": "demo_fee", "late_fee": fee}))
        activities.policies.append(CALLING)
        processor = Processor(activities.store)
        activities.processor = processor
        env = await WorkflowEnvironment.start_local(
            data_converter=compact_data_converter,
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_existing_path=bundled_binary("temporal"),
            identity=IDENTITY,
        )
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with (
                env,
                Worker(
                    env.client,
                    task_queue=TASK_QUEUE,
                    workflows=[DunningWorkflow, CustomerWorkflow],
                    activities=activities.all(),
                    activity_executor=executor,
                    workflow_failure_exception_types=[Exception],
                    identity=IDENTITY,
                ),
            ):
                rec = Recording(client=env.client, store=activities.store, processor=processor)
                await asyncio.gather(*(record(rec, name) for name in names or PATHS))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
