"""A payment racing its failure: 200 pairs, random order, random gaps, two receivers.

`invoice.payment_failed` and `invoice.paid` for the same invoice reach two separate receiver
processes 0-500 ms apart, in either order, each stamped by the sender's clock when it was
sent (so a payment sent first is also stamped first). One worker runs the cases on the dev
server. No paid invoice may be charged, nor sent a reminder after the receiver acknowledged
its payment, and no case may be left running.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.store import CaseStore, ChargeAttempt, Message
from intake.cases import workflow_id_for
from intake.client import case_run_status
from tests.support.receiver import (
    STRIPE_SECRET,
    free_port,
    healthy,
    invoice,
    new_invoice_id,
    paid,
    served,
    service_env,
    signed,
    stop,
    stripe_event,
)

PAIRS = 200
MAX_GAP = 0.5  # seconds between the two events of a pair
AT_ONCE = 25  # pairs in flight together


async def deliver(http: httpx.AsyncClient, base: str, event: dict) -> datetime:
    """POST like Stripe: signed when sent, and redelivered while the answer is not 2xx;
    when the 2xx came (from then on the event is stored for sure)."""
    for _ in range(50):
        event = {**event}
        body = json.dumps(event)
        response = await http.post(
            f"{base}/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signed(body, STRIPE_SECRET)},
        )
        if response.status_code == 200:
            return datetime.now(UTC)
        assert response.status_code in (409, 503), response.text  # busy or store locked
        await asyncio.sleep(0.2)
    raise AssertionError(f"{event['id']} was never accepted: {response.text}")


async def race(
    http: httpx.AsyncClient, bases: list[str], invoice_id: str, rng: random.Random
) -> datetime:
    """One pair: failure and payment in random order, a random gap apart, to random
    receivers; each stamped with the sender's clock as it goes out. Returns when the
    payment was acknowledged."""
    kinds = ["invoice.payment_failed", "invoice.paid"]
    rng.shuffle(kinds)
    gap = rng.uniform(0, MAX_GAP)
    event_ids = {kind: f"evt_{invoice_id}_{kind.split('.')[1]}" for kind in kinds}

    async def send(kind: str, delay: float) -> datetime:
        await asyncio.sleep(delay)
        obj = invoice(invoice_id) if kind == "invoice.payment_failed" else paid(invoice_id)
        event = stripe_event(kind, obj, event_id=event_ids[kind])  # created: now
        return await deliver(http, rng.choice(bases), event)

    acks = await asyncio.gather(send(kinds[0], 0), send(kinds[1], gap))
    return acks[kinds.index("invoice.paid")]


async def test_no_paid_invoice_is_charged_or_messaged_whatever_the_order(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = dev_server.client.service_client.config.target_host
    ports = [free_port(), free_port()]
    env = service_env(tmp_path, target, ports[0])
    processes = [served(["worker"], env, tmp_path / "worker.log")]
    for port in ports:
        log = tmp_path / f"serve-{port}.log"
        processes.append(served(["serve"], {**env, "RECEIVER_PORT": str(port)}, log))
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    invoices = [new_invoice_id() for _ in range(PAIRS)]
    rng = random.Random(9)
    try:
        for base, process, port in zip(bases, processes[1:], ports, strict=True):
            await healthy(base, process, tmp_path / f"serve-{port}.log")
        slots = asyncio.Semaphore(AT_ONCE)

        async def one(invoice_id: str) -> datetime:
            async with slots:
                return await race(http, bases, invoice_id, rng)

        async with httpx.AsyncClient(timeout=30) as http:
            acks = await asyncio.gather(*(one(invoice_id) for invoice_id in invoices))
        paid_at = dict(zip(invoices, acks, strict=True))
        running = await cases_still_running(dev_server, invoices)
    finally:
        for process in processes:
            stop(process)

    assert running == [], f"{len(running)} paid invoices left in dunning: {running[:5]}"
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name
    store = CaseStore(env["DATABASE_URL"])
    with store.session() as session:
        charges = session.exec(select(ChargeAttempt)).all()
        messages = session.exec(select(Message)).all()
    assert [c.case_id for c in charges if c.case_id in invoices] == []
    late = [
        (m.case_id, m.step, m.channel)
        for m in messages
        # A receipt after the payment is the one message that should follow it.
        if m.status == "sent" and m.created_at >= paid_at[m.case_id] and m.template != "recovered"
    ]
    assert late == [], f"messaged after the payment was acknowledged: {late[:5]}"


async def cases_still_running(
    dev_server: WorkflowEnvironment, invoices: list[str], within: float = 60
) -> list[str]:
    """The invoices whose case still runs once every case had `within` seconds to end."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        running = [
            invoice_id
            for invoice_id in invoices
            if await case_run_status(dev_server.client, workflow_id_for(invoice_id))
            == WorkflowExecutionStatus.RUNNING
        ]
        if not running or asyncio.get_running_loop().time() > deadline:
            return running
        await asyncio.sleep(1)
