"""Every signature check has a time window in both directions (Stripe's 300 s, the same for
SendGrid and our own Dunning-Signature), and no header a stranger can send gets a 500.

The receiver runs under Starlette's TestClient on a SQLite store; requests are signed as Stripe,
SendGrid and our billers sign them (HMAC-SHA256, a real P-256 key pair).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from activities import signing
from activities.store import CaseStore
from config.settings import Settings
from webhooks import sendgrid_events
from webhooks.app import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

STRIPE_SECRET = "whsec_signature_tests_1f8e2d"
EVENTS_SECRET = "events-signature-tests-77c3"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
BODY = b'{"id":"evt_1","type":"invoice_voided"}'
NOW = 1_790_000_000


def hmac_header(body: bytes, secret: str, timestamp: int | str) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: Stripe's scheme, and ours."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def sendgrid_signature(body: str, timestamp: str) -> str:
    """base64(DER ECDSA-SHA256 of timestamp + body), as SendGrid signs."""
    signature = SENDGRID_KEY.sign(f"{timestamp}{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def sendgrid_webhook():
    der = SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sendgrid_events.verifier(base64.b64encode(der).decode())


async def temporal_is_down():
    raise RuntimeError("no Temporal: a refused signature never needs it")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    webhook = sendgrid_webhook()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        stripe_webhook_secret=STRIPE_SECRET,
        billing_events_secret=EVENTS_SECRET,
        sendgrid_webhook_public_key=base64.b64encode(
            webhook.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode(),
        self_service_secret="signature-tests-self-service",
    )
    yield TestClient(create_app(settings, temporal_is_down, store))
    store.engine.dispose()


def refused(response: httpx.Response, code: int, words: str) -> None:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert words in error, error
    assert "\n" not in error


# Our Dunning-Signature ---------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_signature_within_the_window_is_accepted(offset: int):
    header = hmac_header(BODY, EVENTS_SECRET, NOW + offset)

    signing.verify(BODY, header, EVENTS_SECRET, tolerance=300, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -400, 400, -(10**9), 10**11])
def test_a_signature_outside_the_window_is_refused_either_way(offset: int):
    header = hmac_header(BODY, EVENTS_SECRET, NOW + offset)

    with pytest.raises(signing.SignatureError, match="is more than 300 s from now"):
        signing.verify(BODY, header, EVENTS_SECRET, tolerance=300, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "t=²,v1=00",  # str.isdigit() says yes; int() says no
        "t=١٧٩٠٠٠٠٠٠٠,v1=00",  # Arabic-Indic digits
        "t=" + "9" * 5000 + ",v1=00",  # int() refuses more than 4300 digits
        "t=9999999999999,v1=00",  # 13 digits
        "t=+1790000000,v1=00",
        "t=-1,v1=00",
        "t=1_790_000_000,v1=00",
        "t= ,v1=00",
        "t=1790000000,t=1790000000,v1=00",
        ",,,=,==,",
        "t",
        "v1=" + "0" * 64,
        "t=1790000000,v1=é",
        "t=1790000000," + "v1=00," * 2000,
        "\x00",
    ],
)
def test_odd_headers_are_refused_with_a_signature_error(header: str):
    with pytest.raises(signing.SignatureError):
        signing.verify(BODY, header, EVENTS_SECRET, tolerance=300, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        b"t=\xb2,v1=00",  # '²' as one Latin-1 byte: Starlette decodes headers as Latin-1
        "t=²,v1=00".encode(),
        b"t=\xd9\xa1,v1=00",
        ("t=" + "9" * 5000 + ",v1=00").encode(),
        b"t=1790000000,v1=\xff\xfe",
    ],
)
def test_odd_dunning_signatures_get_400_not_500(http: TestClient, header: bytes):
    response = http.post("/events", content=BODY, headers={"Dunning-Signature": header})

    assert response.status_code == 400, response.text
    assert "Dunning-Signature" in response.json()["error"]


def test_a_billing_event_signed_ahead_of_time_is_refused(http: TestClient):
    header = hmac_header(BODY, EVENTS_SECRET, int(time.time()) + 400)

    response = http.post("/events", content=BODY, headers={"Dunning-Signature": header})

    refused(response, 400, "Dunning-Signature timestamp is more than 300 s from now")


# Stripe ------------------------------------------------------------------------------------


def stripe_body() -> bytes:
    event = {
        "id": f"evt_{uuid.uuid4().hex[:14]}",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    return json.dumps(event).encode()


@pytest.mark.parametrize("offset", [301, 400, 86_400 * 365])
def test_a_stripe_event_signed_in_the_future_is_refused(http: TestClient, offset: int):
    body = stripe_body()
    header = hmac_header(body, STRIPE_SECRET, int(time.time()) + offset)

    response = http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})

    refused(response, 400, "Stripe-Signature timestamp is more than 300 s from now")


def test_a_stripe_event_signed_a_little_ahead_passes_the_signature_check(http: TestClient):
    body = stripe_body()
    header = hmac_header(body, STRIPE_SECRET, int(time.time()) + 200)  # clock skew

    response = http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})

    assert "Stripe-Signature" not in response.text
    assert response.status_code != 500, response.text


@pytest.mark.parametrize(
    "header",
    [b"t=\xb2,v1=00", ("t=" + "9" * 5000 + ",v1=00").encode(), b"t=1,v1=\xff", b"\x01"],
)
def test_odd_stripe_signatures_get_400_not_500(http: TestClient, header: bytes):
    response = http.post(
        "/webhooks/stripe", content=stripe_body(), headers={"Stripe-Signature": header}
    )

    assert response.status_code == 400, response.text
    assert "Stripe-Signature" in response.json()["error"]


# SendGrid ----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_sendgrid_signatures_within_the_window_are_accepted(offset: int):
    timestamp = str(NOW + offset)

    sendgrid_events.verify(
        sendgrid_webhook(), "[]", sendgrid_signature("[]", timestamp), timestamp, now=NOW
    )


@pytest.mark.parametrize(
    ("timestamp", "words"),
    [
        (str(NOW - 301), "is more than 300 s from now"),
        (str(NOW + 301), "is more than 300 s from now"),
        ("946684800", "is more than 300 s from now"),  # 2000-01-01
        ("0", "is more than 300 s from now"),
        ("2026-11-01T00:00:00Z", "is not unix seconds"),
        ("now", "is not unix seconds"),
        ("²", "is not unix seconds"),
        ("1790000000.0", "is not unix seconds"),
        (" 1790000000", "is not unix seconds"),
        ("9" * 13, "is not unix seconds"),
        ("9" * 5000, "is not unix seconds"),
    ],
)
def test_sendgrid_signatures_of_another_time_are_refused(timestamp: str, words: str):
    with pytest.raises(sendgrid_events.SignatureRejected, match=words):
        sendgrid_events.verify(
            sendgrid_webhook(), "[]", sendgrid_signature("[]", timestamp), timestamp, now=NOW
        )


@pytest.mark.parametrize("timestamp", ["946684800", "now", "ahead", "9" * 5000])
def test_sendgrid_events_signed_at_another_time_get_403(http: TestClient, timestamp: str):
    if timestamp == "ahead":
        timestamp = str(int(time.time()) + 400)  # read now: collection may be minutes earlier
    body = json.dumps([{"event": "bounce", "email": "a@example.com", "sg_event_id": "e1"}])
    headers = {
        sendgrid_events.SIGNATURE_HEADER: sendgrid_signature(body, timestamp),
        sendgrid_events.TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }

    response = http.post("/webhooks/sendgrid", content=body, headers=headers)

    refused(response, 403, sendgrid_events.TIMESTAMP_HEADER)
