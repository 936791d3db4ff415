"""Properties of the receiver under any input (Hypothesis).

1. No request, however malformed (paths, methods, headers, query strings, bodies, nesting,
   sizes, numbers out of range, text in odd encodings), signed or not, is answered with a 500:
   the sender gets a 4xx with a one-line reason (503 only while Temporal is down).
2. A billing event the receiver accepts with a 2xx opens a case that takes its first step:
   nothing that passes the door can fail the workflow later.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType

from activities.store import CaseStore
from config.settings import Settings
from tests.support.harness import Dunning
from tests.support.provider_events import (
    PUBLIC_URL,
    SENDGRID_KEY,
    TWILIO_TOKEN,
    public_key_of,
    sendgrid_signature,
    twilio_signature,
)
from tests.support.receiver import (
    EVENTS_SECRET,
    STRIPE_SECRET,
    case_handle,
    client_of,
    receiver_settings,
    signed,
    temporal_is_down,
)
from webhooks.app import create_app
from workflows.dunning import DunningWorkflow

with __import__("warnings").catch_warnings():
    __import__("warnings").filterwarnings("ignore", message="Using `httpx`")
    from starlette.testclient import TestClient

PATHS = [
    "/webhooks/stripe",
    "/events",
    "/webhooks/twilio",
    "/webhooks/twilio/status",
    "/webhooks/sendgrid",
    "/unsubscribe",
    "/healthz",
]

# JSON of any shape, with the numbers and strings that broke readers before.
ODD_NUMBERS = st.sampled_from(
    [0, -1, 2**31, 2**63 - 1, 2**63, 10**17, 10**30, 10**400, 1e308, -1e308, 0.5]
)
ODD_TEXT = st.sampled_from(
    ["", " ", "٣", "²", "１２３", "\u0000", "é", "日本語", "Mars/Olympus", "9999-12-31T00:00:00Z"]
    + ["XYZ", "YEN", "true", "null", "-" * 300, "dunning-in_1", "+1555", "a" * 5000]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    ODD_NUMBERS,
    st.floats(allow_nan=False),
    st.text(),
    ODD_TEXT,
)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda d: nested(d).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"t=\xd9\xa3,v1=ab", b"t=" + b"9" * 5000 + b",v1=ab", b"t=1e400", b""]),
)


def settings_for(tmp_path: Path, task_queue: str = "dunning") -> Settings:
    """The receiver's test settings, with every provider's secret, so each route is live."""
    return receiver_settings(
        tmp_path,
        task_queue,
        twilio_auth_token=TWILIO_TOKEN,
        sendgrid_webhook_public_key=public_key_of(SENDGRID_KEY),
        public_base_url=PUBLIC_URL,
        self_service_secret="property-test-secret-0123456789",
    )


def signed_headers(path: str, body: bytes, query: str) -> dict[str, str]:
    """The signature each provider would send for `body`, so parsing is reached."""
    now = int(time.time())
    if path == "/webhooks/stripe":
        return {"Stripe-Signature": signed(body.decode("latin-1"), STRIPE_SECRET, now)}
    if path == "/events":
        text = body.decode("latin-1")
        return {"Dunning-Signature": signed(text, EVENTS_SECRET, now)}
    if path == "/webhooks/sendgrid":
        text = body.decode("utf-8", errors="replace")
        return {
            "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(text, str(now)),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
        }
    return {}


@pytest.fixture(scope="module")
def offline_app(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp_path = tmp_path_factory.mktemp("props")
    store = CaseStore(f"sqlite:///{tmp_path / 'props.db'}")
    store.create_schema()
    return TestClient(create_app(settings_for(tmp_path), temporal_is_down, store))


def assert_answered(response) -> None:
    assert response.status_code != 500, response.text
    assert response.status_code < 500 or response.status_code == 503, response.text
    assert "Traceback" not in response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        reason = response.json().get("error", "") if isinstance(response.json(), dict) else ""
        assert "\n" not in reason


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(PATHS) | st.text(max_size=20).map(lambda t: "/" + quote(t)),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    query=st.dictionaries(
        st.sampled_from(["token", "x", "ErrorCode"]), st.text(max_size=60), max_size=2
    ),
    body=BODIES,
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Stripe-Signature",
                "Dunning-Signature",
                "X-Twilio-Signature",
                "X-Twilio-Email-Event-Webhook-Signature",
                "X-Twilio-Email-Event-Webhook-Timestamp",
                "Content-Type",
            ]
        ),
        HEADER_VALUES,
        max_size=3,
    ),
    sign=st.booleans(),
)
def test_no_request_is_answered_with_a_500(
    offline_app: TestClient, path, method, query, body, headers, sign
) -> None:
    query_string = urlencode(query)
    if sign:
        headers = {**headers, **signed_headers(path, body, query_string)}
    target = f"{path}?{query_string}" if query_string else path
    response = offline_app.request(method, target, content=body, headers=headers)
    assert_answered(response)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    form=st.dictionaries(
        st.sampled_from(
            ["MessageSid", "From", "To", "Body", "MessageStatus", "ErrorCode", "AccountSid"]
        ),
        st.text(max_size=40) | ODD_TEXT,
        max_size=7,
    )
)
def test_no_signed_twilio_form_is_answered_with_a_500(offline_app: TestClient, form) -> None:
    for path in ("/webhooks/twilio", "/webhooks/twilio/status"):
        signature = twilio_signature(PUBLIC_URL + path, form, TWILIO_TOKEN)
        response = offline_app.post(
            path,
            content=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        assert_answered(response)


# Accepted events open cases that run ---------------------------------------------------------


def maybe(good: object, bad: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the good value, sometimes anything at all."""
    return st.one_of(st.just(good), st.just(good), bad)


def failure_events() -> st.SearchStrategy[dict]:
    now = datetime.now(UTC)
    instants = st.sampled_from(
        [
            now.isoformat(),
            (now - timedelta(days=3)).isoformat(),
            (now - timedelta(days=44)).isoformat(),
            (now + timedelta(minutes=4)).isoformat(),
            (now + timedelta(hours=1)).isoformat(),
            "9999-12-31T00:00:00Z",
            "2000-01-01T00:00:00Z",
            int(now.timestamp()),
        ]
    )
    customer = st.fixed_dictionaries(
        {"customer_id": maybe("cus_prop", JSON)},
        optional={
            "email": maybe("prop@example.com", JSON),
            "phone": maybe("+14155550123", JSON),
            "time_zone": maybe(
                "Asia/Tokyo", st.sampled_from(["Mars/Olympus", "UTC", "Etc/GMT+14", ""])
            ),
            "locale": maybe("ja", st.sampled_from(["zh-Hans", "xx", "en_US", "", "日本"])),
            "payment_method": maybe("pm_card_visa", JSON),
        },
    )
    data = st.fixed_dictionaries(
        {
            "invoice_id": st.just(None),  # filled in per example
            "customer": customer,
            "amount_due": maybe(4980, st.one_of(ODD_NUMBERS, JSON)),
            "currency": maybe("jpy", st.sampled_from(["XYZ", "YEN", "usd", "EUR", "xts", "XAF"])),
        },
        optional={
            "decline_code": maybe("insufficient_funds", JSON),
            "failed_at": maybe(now.isoformat(), instants),
            "policy": maybe("standard", st.sampled_from(["demo", "smart", "nope", ""])),
            "policy_version": maybe(1, st.one_of(ODD_NUMBERS, JSON)),
            "region": maybe("JP", st.sampled_from(["XX", "jp", "J"])),
        },
    )
    return data


async def test_an_accepted_failure_always_opens_a_case_that_takes_its_first_step(
    dunning: Dunning, tmp_path: Path
) -> None:
    store = dunning.activities.store
    app = TestClient(
        create_app(settings_for(tmp_path, dunning.task_queue), client_of(dunning), store)
    )
    loop = asyncio.get_running_loop()
    accepted: list[str] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=failure_events())
    def deliver(data: dict) -> None:
        invoice_id = f"in_prop_{uuid.uuid4().hex[:10]}"
        data = {**data, "invoice_id": invoice_id}
        event = {
            "id": f"evt_{uuid.uuid4().hex[:12]}",
            "type": "payment_failed",
            "created": int(time.time()),
            "data": data,
        }
        body = json.dumps(event)
        response = app.post(
            "/events", content=body, headers={"Dunning-Signature": signed(body, EVENTS_SECRET)}
        )
        assert_answered(response)
        if response.status_code == 200:
            assert response.json()["status"] == "processed", response.text
            asyncio.run_coroutine_threadsafe(first_step(dunning, invoice_id), loop).result(30)
            accepted.append(invoice_id)

    async with dunning.worker():
        await asyncio.to_thread(deliver)
    assert accepted, "no generated event was accepted: the strategy is too wild to prove anything"


async def first_step(dunning: Dunning, invoice_id: str) -> None:
    """The case answers its status query with a decided next step, and its workflow task
    never failed."""
    handle = case_handle(dunning, invoice_id)
    for _ in range(200):
        try:
            view = await handle.query(DunningWorkflow.status)
            break
        except Exception:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"case {invoice_id} never answered its status query")
    assert view.details
    history = await handle.fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert not failed, failed[0].workflow_task_failed_event_attributes.failure.message
