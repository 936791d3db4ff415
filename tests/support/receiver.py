"""The billing-event receiver under test: events built and signed as Stripe and billing systems
send them, the app over a test's store and Temporal, and the service run as a process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from contextlib import suppress
from pathlib import Path

import httpx
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import Client, WorkflowHandle

from activities.store import CaseStore, WebhookEvent
from config.settings import Settings
from intake.client import case_run_status
from tests.support.harness import Dunning, status_when
from webhooks.app import create_app
from webhooks.cases import ClientProvider
from workflows.dunning import DunningWorkflow
from workflows.models import CaseResult, CaseView

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; the test extra pins httpx, which works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


STRIPE_SECRET = "whsec_test_5f2c81d0e94b"
EVENTS_SECRET = "events-secret-8d1a"
STRIPE_API_KEY = "sk_test_receiver"
SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
CUSTOMER = "cus_ann"


# Signing, as Stripe and billers do it --------------------------------------------------------


def signed(payload: str, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{payload}")>``: Stripe's scheme."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# Payloads ----------------------------------------------------------------------------------


def stripe_event(
    kind: str,
    obj: dict,
    created: int | None = None,
    previous: dict | None = None,
    event_id: str | None = None,
) -> dict:
    """A Stripe event as its webhook delivers it (a snapshot event, current API version)."""
    data: dict = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:14]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def invoice(
    invoice_id: str,
    customer: str | dict = CUSTOMER,
    subscription: str | None = "sub_1",
    amount: int = 4980,
    currency: str = "jpy",
    **extra: object,
) -> dict:
    """An open invoice whose payment failed, as a webhook endpoint on API version
    2025-03-31.basil or later sends it: no `payment_intent`, `charge` or `paid`, and nothing
    expanded, so no decline either (it is at `/v1/invoice_payments`)."""
    return {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": 0,
        "amount_remaining": amount,
        "attempt_count": 1,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "currency": currency,
        "customer": customer,
        "customer_email": "ann.lee@example.com",
        "customer_name": "Ann Lee",
        "customer_phone": "+1 (555) 555-0199",
        "default_payment_method": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_1/test_{invoice_id}",
        "last_finalization_error": None,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": subscription, "metadata": {}},
        },
        "status": "open",
        **extra,
    }


def legacy(basil: dict, payment_intent: str | None = "pi_1", charge: str | None = None) -> dict:
    """The same invoice as an endpoint on an API version before basil sends it: the
    subscription, payment intent and charge named on the invoice by id (never expanded)."""
    old = {key: value for key, value in basil.items() if key != "parent"}
    subscription = (basil.get("parent") or {}).get("subscription_details") or {}
    return {
        **old,
        "subscription": subscription.get("subscription"),
        "payment_intent": payment_intent,
        "charge": charge,
        "paid": basil["status"] == "paid",
    }


def paid(invoice_id: str, amount: int = 4980, **extra: object) -> dict:
    """The same invoice once paid."""
    return invoice(invoice_id, amount_paid=amount, amount_remaining=0, status="paid", **extra)


def new_invoice_id() -> str:
    return f"in_{uuid.uuid4().hex[:12]}"


def neutral_event(kind: str, data: dict, created: str | int | None = None, **extra) -> dict:
    """A provider-neutral event for POST /events."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "type": kind,
        "created": created if created is not None else int(time.time()),
        "source": "chargebee",
        "data": data,
        **extra,
    }


# The receiver under test -------------------------------------------------------------------


class Receiver:
    """The app over one test's store and Temporal, and signed delivery of events to it."""

    def __init__(self, settings: Settings, provider: ClientProvider, store: CaseStore) -> None:
        self.store = store
        self.http = TestClient(create_app(settings, provider, store))

    async def stripe(
        self,
        event: dict | None = None,
        *,
        body: str | None = None,
        signature: str | None = None,
        headers: dict | None = None,
    ) -> httpx.Response:
        """POST a Stripe event, signed with the endpoint's secret unless told otherwise."""
        body = json.dumps(event) if body is None else body
        sent = {"Stripe-Signature": signature or signed(body, STRIPE_SECRET)}
        return await self.post("/webhooks/stripe", body, sent if headers is None else headers)

    async def billing(
        self, event: dict | None = None, *, body: str | None = None, signature: str | None = None
    ) -> httpx.Response:
        """POST a provider-neutral event, signed with BILLING_EVENTS_SECRET by default."""
        body = json.dumps(event) if body is None else body
        sent = {"Dunning-Signature": signature or signed(body, EVENTS_SECRET)}
        return await self.post("/events", body, sent)

    async def post(self, path: str, body: str | bytes, headers: dict) -> httpx.Response:
        # In a thread, so the worker keeps running on this loop while the app answers.
        headers = {"Content-Type": "application/json", **headers}
        return await asyncio.to_thread(self.http.post, path, content=body, headers=headers)

    def stored(self, event: dict, provider: str = "stripe") -> WebhookEvent:
        row = self.store.webhook_event(provider, event["id"])
        assert row is not None, f"event {event['id']} was not stored"
        return row


def receiver_settings(tmp_path: Path, task_queue: str = "dunning", **extra: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        task_queue=task_queue,
        stripe_webhook_secret=STRIPE_SECRET,
        billing_events_secret=EVENTS_SECRET,
        _env_file=None,
        **extra,
    )


def page_settings(dunning: Dunning, tmp_path: Path, **extra: object) -> Settings:
    """Settings for the customer's pages: links signed with the worker's secret, as one
    deployment does, on a public host, with a support phone in the footer."""
    return receiver_settings(
        tmp_path,
        dunning.task_queue,
        self_service_secret=dunning.activities.self_service.secret,
        public_base_url="https://pay.example.com",
        support_phone="+1 555 0100",
        **extra,
    )


def client_of(dunning: Dunning) -> ClientProvider:
    async def provider() -> Client:
        return dunning.env.client

    return provider


async def temporal_is_down() -> Client:
    raise RuntimeError("Failed client connect: connection refused")


# Helpers -----------------------------------------------------------------------------------


def case_handle(dunning: Dunning, invoice_id: str) -> WorkflowHandle[DunningWorkflow, CaseResult]:
    return dunning.env.client.get_workflow_handle_for(DunningWorkflow.run, f"dunning-{invoice_id}")


async def history_text(handle: WorkflowHandle) -> str:
    """Everything the case's history holds, payloads decoded: what Temporal stores."""
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    texts.append(base64.b64decode(value).decode(errors="replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            texts.append(node)

    walk(json.loads((await handle.fetch_history()).to_json()))
    return "\n".join(texts)


async def finish(dunning: Dunning, handle: WorkflowHandle) -> CaseResult:
    """The case's result, with virtual time running meanwhile (as the SDK does for handles it
    started itself); a case that never ends fails the test instead of hanging it."""
    test_service = dunning.env.client.test_service
    await test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        return await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        await test_service.lock_time_skipping(LockTimeSkippingRequest())


def kinds(view: CaseView | CaseResult) -> list[str]:
    return [entry.kind for entry in view.timeline]


async def case_exists(dunning: Dunning, invoice_id: str) -> bool:
    return await case_run_status(dunning.env.client, f"dunning-{invoice_id}") is not None


def accepted(response: httpx.Response, status: str) -> dict:
    """The body of a 200 answer whose status is `status`."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == status, body
    return body


def refused(response: httpx.Response, code: int, words: str) -> str:
    """The one-line error of a refused request, checked to contain `words`."""
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert words in error, error
    assert "\n" not in error and "Traceback" not in error
    return error


async def open_case(receiver: Receiver, dunning: Dunning, invoice_id: str, **fields) -> dict:
    """Deliver an invoice.payment_failed and wait for the case to be running."""
    created = int((await dunning.now()).timestamp())
    event = stripe_event("invoice.payment_failed", invoice(invoice_id, **fields), created=created)
    accepted(await receiver.stripe(event), "processed")
    await status_when(case_handle(dunning, invoice_id), lambda v: True, "the case to start")
    return event


# Served for real ---------------------------------------------------------------------------

DUNNING = str(Path(sys.executable).parent / "dunning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [DUNNING, *command], cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def healthy(base: str, process: subprocess.Popen, log: Path) -> dict:
    """/healthz once the receiver answers; the process's log if it never does."""
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"exited {process.returncode}: {log.read_text()}")
            with suppress(httpx.TransportError):
                response = await http.get("/healthz")
                if response.status_code in (200, 503):  # 503: up, but Temporal is not
                    return response.json()
            await asyncio.sleep(0.1)
    raise AssertionError(f"the receiver never answered: {log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def service_env(tmp_path: Path, temporal_address: str, port: int) -> dict[str, str]:
    segments = tmp_path / "segments.toml"
    segments.write_text('[[segments]]\nname = "all"\npolicy = "demo"\n')
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_address,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "TASK_QUEUE": f"serve-{uuid.uuid4().hex[:8]}",
        "SEGMENTS_FILE": str(segments),
        "RECEIVER_PORT": str(port),
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "BILLING_EVENTS_SECRET": EVENTS_SECRET,
        "SELF_SERVICE_SECRET": "self-service-secret-for-tests-3b9e",
        "PYTHONUNBUFFERED": "1",
    }


def neutral_failure(invoice_id: str, created: int, **data) -> dict:
    return neutral_event(
        "payment_failed",
        {
            "invoice_id": invoice_id,
            "subscription_id": "sub_n",
            "customer": {"customer_id": "cus_n", "email": "neo@example.com", "locale": "ja"},
            "amount_due": 2500,
            "currency": "usd",
            "decline_code": "do_not_honor",
            **data,
        },
        created=created,
    )
