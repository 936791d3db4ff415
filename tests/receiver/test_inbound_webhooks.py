"""What providers and support tell us about messages: Twilio STOP/START and status callbacks,
SendGrid events, the support CLI's opt-out and opt-in, and the in-app webhook.

Nothing is mocked: the receiver runs under Starlette's TestClient on a SQLite store in the
test's `tmp_path`; Twilio requests are signed the way Twilio signs them (HMAC-SHA1 of the URL
and the sorted form) and SendGrid's with a real P-256 key pair, as SendGrid does; the CLI runs
as a subprocess; the in-app webhook posts to a small HTTP server of the test's own.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sqlmodel import select

import cli
from activities import signing
from activities.dunning import DunningActivities
from activities.notify import (
    NotifierConfigError,
    NotifierUnavailable,
    OutboundMessage,
)
from activities.notify.in_app import InAppNotifier
from activities.notify.twilio import TwilioNotifier
from activities.store import CaseStore, CustomerProfile, Message, Suppression
from config.settings import Settings
from webhooks.app import create_app
from workflows.models import (
    CaseStatus,
    CaseView,
    Delivery,
    DeliveryStatus,
    MessageView,
    NotifyRequest,
)
from workflows.policy import Channel

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient; the test extra pins httpx, which works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from tests.support.provider_events import (
    ACCOUNT_SID,
    CUSTOMER,
    DUNNING,
    EMAIL,
    IN_APP_SECRET,
    OTHER_KEY,
    OUR_NUMBER,
    PHONE,
    PUBLIC_URL,
    SENDGRID_KEY,
    TWILIO_TOKEN,
    public_key_of,
    sendgrid_signature,
    twilio_signature,
)

# The receiver ------------------------------------------------------------------------------


async def temporal_is_down():
    raise RuntimeError("no Temporal: these routes never need it")


def receiver_settings(tmp_path: Path, **changes) -> Settings:
    fields = {
        "database_url": f"sqlite:///{tmp_path / 'dunning.db'}",
        "public_base_url": PUBLIC_URL,
        "twilio_auth_token": TWILIO_TOKEN,
        "sendgrid_webhook_public_key": public_key_of(SENDGRID_KEY),
        "_env_file": None,
    }
    return Settings(**(fields | changes))


class Receiver:
    """The app over one test's store, and deliveries signed as the providers sign them."""

    def __init__(self, settings: Settings, store: CaseStore) -> None:
        self.store = store
        self.http = TestClient(create_app(settings, temporal_is_down, store))

    def twilio(
        self,
        path: str,
        form: dict[str, str],
        *,
        query: str = "",
        signature: str | None = None,
        signed_form: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a Twilio webhook, signed for the public URL unless told otherwise."""
        target = f"{path}?{query}" if query else path
        if signature is None:
            signature = twilio_signature(PUBLIC_URL + target, signed_form or form)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature:
            headers["X-Twilio-Signature"] = signature
        return self.http.post(target, content=urlencode(form), headers=headers)

    def sms(self, body: str, sender: str = PHONE, **extra: str) -> httpx.Response:
        """An inbound SMS from `sender` to our number."""
        return self.twilio("/webhooks/twilio", inbound_sms(body, sender, **extra))

    def sendgrid(
        self,
        events: list[dict] | None = None,
        *,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST SendGrid events, signed with SendGrid's key unless other headers are given."""
        body = json.dumps(events) if body is None else body
        if headers is None:
            timestamp = str(int(time.time()))
            headers = {
                "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(body, timestamp),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            }
        return self.http.post(
            "/webhooks/sendgrid",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    yield store
    store.engine.dispose()


@pytest.fixture
def receiver(tmp_path: Path, store: CaseStore) -> Receiver:
    return Receiver(receiver_settings(tmp_path), store)


# Payloads ----------------------------------------------------------------------------------


def inbound_sms(body: str, sender: str = PHONE, **extra: str) -> dict[str, str]:
    """The form of Twilio's incoming-message webhook."""
    return {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "SmsSid": "",
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCountry": "US",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def status_callback(sid: str, status: str, error_code: str = "", to: str = PHONE) -> dict:
    """The form of Twilio's message status callback."""
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": OUR_NUMBER,
        "To": to,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


def sendgrid_event(kind: str, email: str = EMAIL, **fields: object) -> dict:
    """One event of SendGrid's Event Webhook, with our custom args."""
    return {
        "email": email,
        "timestamp": int(time.time()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": kind,
        "category": ["dunning", "reminder_gentle"],
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "xMsgId123.filter0001.16648.5515E0B88.0",
        "case_id": "in_1",
        "step": "reminder-1",
        "message_key": "in_1:reminder-1:email",
        **fields,
    }


def sent_message(
    store: CaseStore, channel: str, provider_id: str, recipient: str, step: str = "reminder-1"
) -> Message:
    """A message row as the notify activity leaves it after the provider took it."""
    row = store.claim_message(
        Message(
            case_id="in_1",
            customer_id=CUSTOMER,
            step=step,
            channel=channel,
            template="reminder_gentle",
            recipient=recipient,
            body="Your payment didn't go through.",
        )
    )
    store.mark_message(row.id, "sent", provider_id)
    return store.message("in_1", step, channel)


def outbound(channel: Channel) -> OutboundMessage:
    """A message as the notify activity hands it to a notifier."""
    return OutboundMessage(
        key=f"in_1:reminder-1:{channel}",
        channel=channel,
        recipient=CUSTOMER if channel is Channel.IN_APP else PHONE,
        body="Your payment didn't go through.",
        case_id="in_1",
        step="reminder-1",
        template="reminder_gentle",
    )


def refused(response: httpx.Response, code: int, words: str) -> str:
    """The one-line error of a refused request, checked to contain `words`."""
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert words in error, error
    assert "\n" not in error and "Traceback" not in error
    return error


def suppression(store: CaseStore, channel: str, contact: str) -> tuple[str, str] | None:
    row = store.suppression(channel, contact)
    return None if row is None else (row.reason, row.source)


# Twilio: signatures ------------------------------------------------------------------------


def test_an_inbound_sms_signed_by_twilio_is_answered_with_empty_twiml(receiver: Receiver):
    form = inbound_sms("When is my next bill?")

    response = receiver.twilio("/webhooks/twilio", form)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    row = receiver.store.webhook_event("twilio", form["MessageSid"])
    assert (row.status, row.type) == ("ignored", "sms.inbound")
    assert "Body" not in row.payload and "next bill" not in json.dumps(row.payload)
    assert receiver.store.suppression("sms", PHONE) is None


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        ("body", "X-Twilio-Signature does not match"),
        ("sender", "X-Twilio-Signature does not match"),
        ("url", "X-Twilio-Signature does not match"),
        ("token", "X-Twilio-Signature does not match"),
        ("missing", "missing X-Twilio-Signature header"),
    ],
)
def test_an_sms_not_signed_by_twilio_is_refused(receiver: Receiver, tamper: str, words: str):
    form = inbound_sms("STOP")
    signature = {
        "url": twilio_signature("https://elsewhere.example.com/webhooks/twilio", form),
        "token": twilio_signature(f"{PUBLIC_URL}/webhooks/twilio", form, token="guessed"),
        "missing": "",
    }.get(tamper)
    sent = dict(form)
    if tamper == "body":
        sent["Body"] = "START"
    if tamper == "sender":
        sent["From"] = "+14155550999"

    response = receiver.twilio("/webhooks/twilio", sent, signature=signature, signed_form=form)

    refused(response, 403, words)
    assert receiver.store.suppression("sms", PHONE) is None
    assert receiver.store.webhook_event("twilio", form["MessageSid"]) is None


def test_twilio_routes_need_the_auth_token(tmp_path: Path, store: CaseStore):
    receiver = Receiver(receiver_settings(tmp_path, twilio_auth_token=None), store)

    for path in ("/webhooks/twilio", "/webhooks/twilio/status"):
        refused(receiver.twilio(path, inbound_sms("STOP")), 503, "TWILIO_AUTH_TOKEN is not set")


def test_an_authentic_request_without_a_sender_is_the_callers_mistake(receiver: Receiver):
    form = inbound_sms("STOP")
    del form["From"]

    refused(receiver.twilio("/webhooks/twilio", form), 400, "needs MessageSid and From")


# Twilio: STOP and START --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "extra"),
    [
        ("STOP", {}),
        ("  stop ", {}),
        ("Unsubscribe", {}),
        ("STOPALL", {}),
        ("quit.", {}),
        ("Arrêter", {"OptOutType": "STOP"}),  # Advanced Opt-Out, with a keyword of its own
    ],
)
def test_stop_suppresses_sms_to_the_sender_and_start_lifts_it(
    receiver: Receiver, body: str, extra: dict
):
    stop = inbound_sms(body, **extra)

    assert receiver.twilio("/webhooks/twilio", stop).status_code == 200
    assert suppression(receiver.store, "sms", PHONE) == ("opted_out", "twilio")
    row = receiver.store.webhook_event("twilio", stop["MessageSid"])
    assert (row.status, row.type, row.detail) == (
        "processed",
        "sms.stop",
        "opted out: SMS suppressed",
    )

    start = receiver.sms("start")

    assert start.status_code == 200 and "<Response/>" in start.text
    assert receiver.store.suppression("sms", PHONE) is None
    assert [e.type for e in receiver.store.webhook_events()] == ["sms.stop", "sms.start"]


def test_start_with_opt_out_type_lifts_a_support_opt_out(receiver: Receiver):
    receiver.store.suppress("sms", PHONE, "opted_out", "support:ann")

    receiver.sms("Oui", OptOutType="START")

    assert receiver.store.suppression("sms", PHONE) is None


@pytest.mark.parametrize("body", ["Stop texting me", "HELP", "yes please", ""])
def test_other_messages_change_nothing(receiver: Receiver, body: str):
    receiver.store.suppress("sms", PHONE, "opted_out", "twilio")

    response = receiver.sms(body)

    assert response.status_code == 200 and "<Response/>" in response.text
    assert suppression(receiver.store, "sms", PHONE) == ("opted_out", "twilio")


def test_a_redelivered_stop_is_stored_once(receiver: Receiver):
    stop = inbound_sms("STOP")

    first = receiver.twilio("/webhooks/twilio", stop)
    again = receiver.twilio("/webhooks/twilio", stop)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.text == first.text
    [row] = receiver.store.webhook_events()
    assert (row.event_id, row.status, row.deliveries) == (stop["MessageSid"], "processed", 1)


def test_no_log_line_and_no_answer_names_the_number(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.DEBUG):
        stopped = receiver.sms("STOP")
        started = receiver.sms("START")

    assert "dunning.webhooks" in {record.name for record in caplog.records}
    for text in (caplog.text, stopped.text, started.text):
        assert PHONE not in text and PHONE.removeprefix("+") not in text


def test_after_stop_a_reminder_skips_sms_and_still_sends_email(receiver: Receiver, tmp_path: Path):
    activities = DunningActivities.from_settings(receiver_settings(tmp_path))
    sent: list[OutboundMessage] = []

    class Recording:
        def send(self, message: OutboundMessage) -> str:
            sent.append(message)
            return f"rec-{len(sent)}"

    activities.notifiers = {channel: Recording() for channel in Channel}
    activities.store.upsert_customer(
        CustomerProfile(customer_id=CUSTOMER, email=EMAIL, phone=PHONE, time_zone="UTC")
    )
    receiver.sms("STOP")

    result = activities.notify(
        NotifyRequest(
            case_id="in_1",
            invoice_id="in_1",
            customer_id=CUSTOMER,
            step="reminder-1",
            template="reminder_gentle",
            channels=[Channel.EMAIL, Channel.SMS],
            amount_due=4900,
            currency="USD",
        )
    )

    assert [(d.channel, d.status, d.detail) for d in result.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SENT, "rec-1"),
        (Channel.SMS, DeliveryStatus.SKIPPED, "suppressed: opted_out (twilio)"),
    ]
    assert [(m.channel, m.recipient) for m in sent] == [(Channel.EMAIL, EMAIL)]
    activities.store.engine.dispose()


# Twilio: status callbacks ------------------------------------------------------------------


def callback_query(channel: str = "sms") -> tuple[str, str]:
    """The path and query of the status callback URL the Twilio notifier gives each SMS."""
    notifier = TwilioNotifier(
        ACCOUNT_SID, TWILIO_TOKEN, public_base_url=PUBLIC_URL, from_number=OUR_NUMBER
    )
    url = notifier.status_callback(outbound(Channel(channel)))
    path, _, query = url.removeprefix(PUBLIC_URL).partition("?")
    return path, query


def test_a_delivered_callback_is_noted_on_the_message_row(receiver: Receiver):
    sent_message(receiver.store, "sms", "SM1", PHONE)
    path, query = callback_query()

    response = receiver.twilio(path, status_callback("SM1", "delivered"), query=query)
    late = receiver.twilio(path, status_callback("SM1", "sent"), query=query)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "event": "SM1:delivered",
        "status": "processed",
        "detail": "message in_1/reminder-1/sms: delivered",
    }
    assert (
        late.json()["detail"] == "message in_1/reminder-1/sms: sent after delivered, kept delivered"
    )
    row = receiver.store.message("in_1", "reminder-1", "sms")
    assert row.delivery == "delivered"
    assert row.delivery_at is not None
    assert receiver.store.suppression("sms", PHONE) is None


def test_a_callback_that_overtakes_the_sid_finds_the_row_by_its_key(receiver: Receiver):
    sent_message(receiver.store, "sms", None, PHONE)  # the send has not written the sid yet
    path, query = callback_query()

    response = receiver.twilio(path, status_callback("SM2", "undelivered", "21610"), query=query)

    assert response.json()["status"] == "processed"
    assert suppression(receiver.store, "sms", PHONE) == ("opted_out", "twilio")


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        ("undelivered", "21610", "opted_out"),
        ("failed", "21610", "opted_out"),
        ("failed", "21211", "invalid"),
        ("undelivered", "21614", "not_sms_capable"),
    ],
)
def test_a_number_that_refused_for_good_is_suppressed(
    receiver: Receiver, status: str, code: str, reason: str
):
    sent_message(receiver.store, "sms", "SM3", PHONE)
    path, query = callback_query()

    response = receiver.twilio(
        path, status_callback("SM3", status, code, to="+10000000000"), query=query
    )

    assert response.status_code == 200, response.text
    assert f"error {code}: SMS suppressed ({reason})" in response.json()["detail"]
    assert suppression(receiver.store, "sms", PHONE) == (reason, "twilio")  # the row's number
    assert receiver.store.message("in_1", "reminder-1", "sms").delivery == status


def test_a_passing_failure_suppresses_nothing(receiver: Receiver):
    sent_message(receiver.store, "sms", "SM4", PHONE)
    path, query = callback_query()

    receiver.twilio(path, status_callback("SM4", "undelivered", "30003"), query=query)

    assert receiver.store.message("in_1", "reminder-1", "sms").delivery == "undelivered"
    assert receiver.store.suppression("sms", PHONE) is None


def test_the_callback_signature_covers_its_query(receiver: Receiver):
    sent_message(receiver.store, "sms", "SM5", PHONE)
    form = status_callback("SM5", "delivered")
    signature = twilio_signature(f"{PUBLIC_URL}/webhooks/twilio/status?key=in_1:other:sms", form)

    response = receiver.twilio(
        "/webhooks/twilio/status", form, query="key=in_1:reminder-1:sms", signature=signature
    )

    refused(response, 403, "X-Twilio-Signature does not match")
    assert receiver.store.message("in_1", "reminder-1", "sms").delivery is None


def test_a_callback_about_another_message_is_ignored(receiver: Receiver):
    response = receiver.twilio("/webhooks/twilio/status", status_callback("SMx", "delivered"))

    assert response.json()["status"] == "ignored"


# SendGrid: signatures ----------------------------------------------------------------------


def test_a_delivered_event_signed_by_sendgrid_is_noted_on_the_message_row(receiver: Receiver):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL)
    event = sendgrid_event("delivered", response="250 OK")

    response = receiver.sendgrid([event, sendgrid_event("open"), sendgrid_event("processed")])

    assert response.status_code == 200, response.text
    assert response.json() == {
        "events": 3,
        "processed": 1,
        "ignored": 2,
        "duplicate": 0,
        "busy": 0,
    }
    row = receiver.store.message("in_1", "reminder-1", "email")
    assert (row.delivery, row.status) == ("delivered", "sent")
    stored = receiver.store.webhook_event("sendgrid", event["sg_event_id"])
    assert (stored.type, stored.status) == ("delivered", "processed")
    assert receiver.store.suppression("email", EMAIL) is None


def test_an_event_is_matched_by_our_message_key_when_its_id_is_unknown(receiver: Receiver):
    sent_message(receiver.store, "email", "in_1:reminder-1:email", EMAIL)  # no X-Message-Id
    event = sendgrid_event("deferred", sg_message_id="unknown.filter0001")

    receiver.sendgrid([event])

    assert receiver.store.message("in_1", "reminder-1", "email").delivery == "deferred"


def _headers(body: str, case: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    good = sendgrid_signature(body, timestamp)
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": good,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    match case:
        case "tampered body":
            headers["X-Twilio-Email-Event-Webhook-Signature"] = sendgrid_signature(
                body.replace("bounce", "delivered"), timestamp
            )
        case "other timestamp":
            headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(timestamp) - 60)
        case "other key":
            headers["X-Twilio-Email-Event-Webhook-Signature"] = sendgrid_signature(
                body, timestamp, OTHER_KEY
            )
        case "missing signature":
            del headers["X-Twilio-Email-Event-Webhook-Signature"]
        case "missing timestamp":
            del headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        case "not base64":
            headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64 at all!"
        case "base64 but not a signature":
            headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(b"hi").decode()
    return headers


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("tampered body", "does not match the body and timestamp"),
        ("other timestamp", "does not match the body and timestamp"),
        ("other key", "does not match the body and timestamp"),
        ("missing signature", "missing X-Twilio-Email-Event-Webhook-Signature header"),
        ("missing timestamp", "missing X-Twilio-Email-Event-Webhook-Timestamp header"),
        ("not base64", "X-Twilio-Email-Event-Webhook-Signature is not base64"),
        ("base64 but not a signature", "does not match the body and timestamp"),
    ],
)
def test_events_not_signed_by_sendgrid_are_refused(receiver: Receiver, case: str, words: str):
    body = json.dumps([sendgrid_event("bounce")])

    response = receiver.sendgrid(body=body, headers=_headers(body, case))

    refused(response, 403, words)
    assert receiver.store.webhook_events() == []
    assert receiver.store.suppression("email", EMAIL) is None


@pytest.mark.parametrize(
    ("key", "words"),
    [
        (None, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set"),
        ("bm90IGEga2V5", "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key"),
    ],
)
def test_sendgrid_events_need_a_usable_public_key(
    tmp_path: Path, store: CaseStore, key: str | None, words: str
):
    receiver = Receiver(receiver_settings(tmp_path, sendgrid_webhook_public_key=key), store)

    refused(receiver.sendgrid([sendgrid_event("bounce")]), 503, words)


def test_the_key_may_be_given_as_pem(tmp_path: Path, store: CaseStore):
    pem = SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    receiver = Receiver(
        receiver_settings(tmp_path, sendgrid_webhook_public_key=pem.decode()), store
    )

    assert receiver.sendgrid([sendgrid_event("bounce")]).status_code == 200
    assert receiver.store.suppression("email", EMAIL) is not None


@pytest.mark.parametrize(
    ("body", "words"),
    [("{not json", "malformed JSON"), ('{"event": "bounce"}', "expected a JSON array")],
)
def test_a_signed_body_that_is_not_events_is_the_callers_mistake(
    receiver: Receiver, body: str, words: str
):
    refused(receiver.sendgrid(body=body), 400, words)


# SendGrid: suppressions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "reason", "delivery"),
    [
        ("bounce", {"type": "bounce", "reason": "550 5.1.1 no such user"}, "bounced", "bounced"),
        ("dropped", {"reason": "Bounced Address"}, "dropped", "dropped"),
        ("unsubscribe", {}, "unsubscribed", None),
        ("group_unsubscribe", {"asm_group_id": 4242}, "unsubscribed", None),
        ("spamreport", {}, "unsubscribed", None),
    ],
)
def test_bounces_drops_and_unsubscribes_suppress_the_address(
    receiver: Receiver, kind: str, fields: dict, reason: str, delivery: str | None
):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL)
    event = sendgrid_event(kind, email="Jenny.Rosen@Example.com", **fields)

    response = receiver.sendgrid([event])

    assert response.json()["processed"] == 1
    assert suppression(receiver.store, "email", EMAIL) == (reason, "sendgrid")
    assert receiver.store.message("in_1", "reminder-1", "email").delivery == delivery
    assert receiver.store.webhook_event("sendgrid", event["sg_event_id"]).status == "processed"


@pytest.mark.parametrize(
    ("kind", "fields", "delivery"),
    [
        ("bounce", {"type": "blocked", "reason": "421 try later"}, "blocked"),
        ("dropped", {"reason": "Spam Content (if spam checker app enabled)"}, "dropped"),
        ("dropped", {"reason": "Recipient List over Package Quota"}, "dropped"),
    ],
)
def test_refusals_of_our_mail_rather_than_the_address_suppress_nothing(
    receiver: Receiver, kind: str, fields: dict, delivery: str
):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL)

    receiver.sendgrid([sendgrid_event(kind, **fields)])

    assert receiver.store.suppression("email", EMAIL) is None
    assert receiver.store.message("in_1", "reminder-1", "email").delivery == delivery


def test_unsubscribing_from_another_group_keeps_dunning_email(tmp_path: Path, store: CaseStore):
    settings = receiver_settings(tmp_path, sendgrid_unsubscribe_group_id=4242)
    receiver = Receiver(settings, store)

    receiver.sendgrid([sendgrid_event("group_unsubscribe", asm_group_id=77)])  # the newsletter

    assert receiver.store.suppression("email", EMAIL) is None
    receiver.sendgrid([sendgrid_event("group_unsubscribe", asm_group_id=4242)])  # dunning's
    assert suppression(receiver.store, "email", EMAIL) == ("unsubscribed", "sendgrid")


def test_a_redelivered_batch_acts_once(receiver: Receiver):
    events = [sendgrid_event("bounce"), sendgrid_event("unsubscribe", email="ann@example.com")]

    first = receiver.sendgrid(events)
    again = receiver.sendgrid(events)

    assert first.json()["processed"] == 2
    assert again.json()["duplicate"] == 2
    rows = receiver.store.webhook_events()
    assert [(r.event_id, r.deliveries) for r in rows] == [(e["sg_event_id"], 1) for e in events]


def test_a_late_deferral_never_hides_a_delivery(receiver: Receiver):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL)

    receiver.sendgrid([sendgrid_event("delivered")])
    receiver.sendgrid([sendgrid_event("deferred")])

    assert receiver.store.message("in_1", "reminder-1", "email").delivery == "delivered"


# Support CLI -------------------------------------------------------------------------------


def dunning(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the `dunning` CLI as support would, on the test's store (no Temporal needed)."""
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "USER": "ann",
    }
    return subprocess.run(
        [DUNNING, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_support_opts_a_number_out_and_back_in(tmp_path: Path, store: CaseStore):
    out = dunning(tmp_path, "opt-out", "+1 (415) 555-0123", "--actor", "bob")

    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == f"opted out {PHONE}: no dunning SMS to it (support:bob)\n"
    assert suppression(store, "sms", PHONE) == ("opted_out", "support:bob")

    back = dunning(tmp_path, "opt-in", PHONE)

    assert back.returncode == 0, back.stderr
    assert back.stdout == (
        f"opted in {PHONE}: dunning SMS allowed again "
        "(lifted opted_out from support:bob, by support:ann)\n"
    )
    assert store.suppression("sms", PHONE) is None
    again = dunning(tmp_path, "opt-in", PHONE)
    assert again.stdout == f"{PHONE} was not opted out of SMS: nothing to lift\n"


def test_support_opts_an_email_address_out(tmp_path: Path, store: CaseStore):
    out = dunning(tmp_path, "opt-out", "Jenny.Rosen@example.com")

    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and "no dunning email to it (support:ann)" in out.stdout
    assert suppression(store, "email", EMAIL) == ("opted_out", "support:ann")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["opt-out", "4155550123"], "'4155550123' is not a phone number in E.164 form"),
        (["opt-out", "+1415555CALL"], "is not a phone number in E.164 form"),
        (["opt-in", "+0123456789"], "is not a phone number in E.164 form"),
        (["opt-out", "jenny@"], "'jenny@' is not an email address"),
        (["opt-out", EMAIL, "--channel", "sms"], "is not a phone number in E.164 form"),
        (["opt-out", PHONE, "--channel", "email"], "is not an email address"),
    ],
)
def test_a_malformed_address_or_number_is_one_clear_line(
    tmp_path: Path, store: CaseStore, args: list[str], words: str
):
    result = dunning(tmp_path, *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("dunning: ") and result.stderr.count("\n") == 1
    assert words in result.stderr
    with store.session() as session:
        assert session.exec(select(Suppression)).all() == []


def test_status_shows_what_providers_reported_next_to_each_message(
    receiver: Receiver, capsys: pytest.CaptureFixture
):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL)
    sent_message(receiver.store, "sms", "SM6", PHONE)
    receiver.sendgrid([sendgrid_event("bounce")])
    path, query = callback_query()
    receiver.twilio(path, status_callback("SM6", "delivered"), query=query)
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    view = CaseView(
        case_id="in_1",
        invoice_id="in_1",
        customer_id=CUSTOMER,
        status=CaseStatus.ACTIVE,
        policy="standard v1",
        amount_due=4900,
        amount_recovered=0,
        currency="USD",
        next_step="charge",
        details="waiting until 2026-03-05 09:00 UTC before retry 2 of 4",
        attempts=[],
        messages=[
            MessageView(
                step="reminder-1",
                at=at,
                template="reminder_gentle",
                deliveries=[
                    Delivery(channel=Channel.EMAIL, status=DeliveryStatus.SENT, detail="x"),
                    Delivery(channel=Channel.SMS, status=DeliveryStatus.SENT, detail="SM6"),
                    Delivery(channel=Channel.IN_APP, status=DeliveryStatus.SENT, detail="y"),
                ],
            )
        ],
        timeline=[],
    )

    cli._print_view("dunning-in_1", view, receiver.store.messages("in_1"))

    lines = capsys.readouterr().out.splitlines()
    assert (
        "  message reminder-1  2026-03-02 09:00 UTC  reminder_gentle: "
        "email sent (bounced), sms sent (delivered), in_app sent"
    ) in lines


def test_status_of_a_finished_case_lists_its_stored_messages(
    receiver: Receiver, capsys: pytest.CaptureFixture
):
    sent_message(receiver.store, "email", "xMsgId123", EMAIL, step="outcome")
    receiver.sendgrid([sendgrid_event("delivered")])

    cli._print_stored_messages(receiver.store.messages("in_1"))
    cli._print_stored_messages(None)

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("  message outcome  ")
    assert lines[0].endswith("  reminder_gentle: email sent (delivered)")
    assert lines[1] == "  (messages unknown: the store is unreachable)"


# In-app webhook ----------------------------------------------------------------------------


class ProductEndpoint:
    """The product's in-app webhook: records each POST and answers `status` after `delay`."""

    def __init__(self, status: int = 204, delay: float = 0.0, location: str = "") -> None:
        self.status, self.delay, self.location = status, delay, location
        self.requests: list[tuple[dict[str, str], bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(endpoint.delay)
                self.send_response(endpoint.status)
                if endpoint.location:
                    self.send_header("Location", endpoint.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dunning/notifications"

    def __enter__(self) -> ProductEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_in_app_messages_are_posted_signed_without_contact_details(tmp_path: Path):
    with ProductEndpoint() as product:
        settings = receiver_settings(
            tmp_path, in_app_webhook_url=product.url, in_app_webhook_secret=IN_APP_SECRET
        )
        activities = DunningActivities.from_settings(settings)
        activities.store.upsert_customer(
            CustomerProfile(
                customer_id=CUSTOMER, name="Jenny Rosen", email=EMAIL, phone=PHONE, locale="en"
            )
        )
        request = NotifyRequest(
            case_id="in_1",
            invoice_id="in_1",
            customer_id=CUSTOMER,
            step="reminder-1",
            template="reminder_gentle",
            channels=[Channel.IN_APP],
            amount_due=4900,
            currency="USD",
        )

        result = activities.notify(request)
        activities.store.engine.dispose()

    assert isinstance(activities.notifiers[Channel.IN_APP], InAppNotifier)
    [delivery] = result.deliveries
    assert (delivery.status, delivery.detail) == (
        DeliveryStatus.SENT,
        "in_app:in_1:reminder-1:in_app",
    )
    [(headers, body)] = product.requests
    assert headers["content-type"] == "application/json"
    signing.verify(body, headers["dunning-signature"], IN_APP_SECRET, tolerance=300)
    payload = json.loads(body)
    row = activities.store.message("in_1", "reminder-1", "in_app")
    assert payload == {
        "key": "in_1:reminder-1:in_app",
        "customer_id": CUSTOMER,
        "case_id": "in_1",
        "step": "reminder-1",
        "template": "reminder_gentle",
        "text": row.body,
    }
    assert "$49.00" in payload["text"]
    for contact in (EMAIL, PHONE, PHONE.removeprefix("+"), "555-0123", "@"):
        assert contact not in body.decode()


@pytest.mark.parametrize(
    ("status", "delay", "location", "words"),
    [
        (500, 0.0, "", "in-app webhook answered HTTP 500"),
        (404, 0.0, "", "in-app webhook answered HTTP 404"),
        (302, 0.0, "/elsewhere", "in-app webhook answered HTTP 302"),
        (204, 1.0, "", "in-app webhook unreachable (TimeoutError)"),
    ],
)
def test_an_in_app_webhook_that_does_not_take_it_is_retried(
    status: int, delay: float, location: str, words: str
):
    with ProductEndpoint(status, delay, location) as product:
        notifier = InAppNotifier(product.url, IN_APP_SECRET, timeout=0.3)

        with pytest.raises(NotifierUnavailable, match=re.escape(words)):
            notifier.send(outbound(Channel.IN_APP))

    assert len(product.requests) == 1  # the redirect was not followed


def test_an_unreachable_in_app_webhook_is_retried():
    with ProductEndpoint() as product:
        url = product.url  # the port is free again once the server is closed

    with pytest.raises(NotifierUnavailable, match="in-app webhook unreachable"):
        InAppNotifier(url, IN_APP_SECRET, timeout=1).send(outbound(Channel.IN_APP))


def test_an_in_app_webhook_without_a_secret_is_a_configuration_error(tmp_path: Path):
    settings = receiver_settings(tmp_path, in_app_webhook_url="https://product.example.com/hook")

    with pytest.raises(NotifierConfigError, match="IN_APP_WEBHOOK_SECRET"):
        DunningActivities.from_settings(settings)


def test_without_a_webhook_the_stored_row_is_the_notification():
    assert InAppNotifier().send(outbound(Channel.IN_APP)) == "in_app:in_1:reminder-1:in_app"


# Malformed but authentic requests: 4xx or a plain answer, never 500 -------------------------


@pytest.mark.parametrize("code", ["²", "٣٠٠٠٧", "9" * 5000, "-1", "1e3", "30007\x00", " "])
def test_an_odd_error_code_is_no_error_code(receiver: Receiver, code: str):
    sent_message(receiver.store, "sms", "SM6", PHONE)
    path, query = callback_query()

    response = receiver.twilio(path, status_callback("SM6", "undelivered", code), query=query)

    assert response.status_code == 200, response.text
    assert receiver.store.message("in_1", "reminder-1", "sms").delivery == "undelivered"
    assert receiver.store.suppression("sms", PHONE) is None


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("MessageSid", "SM" + "1" * 5000, "MessageSid"),
        ("MessageSid", "SM1\x00", "MessageSid"),
        ("MessageSid", "SM１２", "MessageSid"),
        ("MessageStatus", "delivered" * 1000, "MessageStatus"),
        ("MessageStatus", "délivré", "MessageStatus"),
    ],
)
def test_a_callback_with_odd_ids_is_the_callers_mistake(
    receiver: Receiver, field: str, value: str, words: str
):
    form = status_callback("SM7", "delivered") | {field: value, "SmsSid": "", "SmsStatus": ""}

    response = receiver.twilio("/webhooks/twilio/status", form)

    refused(response, 400, words)
    assert receiver.store.webhook_events() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("MessageSid", "SM" + "1" * 5000), ("MessageSid", "\x00"), ("From", "+1" * 5000)],
)
def test_an_inbound_sms_with_odd_ids_is_the_callers_mistake(
    receiver: Receiver, field: str, value: str
):
    response = receiver.twilio("/webhooks/twilio", inbound_sms("STOP") | {field: value})

    refused(response, 400, field)
    assert receiver.store.webhook_events() == []


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # json.loads raises RecursionError
        "[" + "{" * 50_000 + "}" * 50_000 + "]",
        '[{"event": "bounce", "n": ' + "9" * 5000 + "}]",  # int() refuses 4300+ digits
        "[NaN]",
    ],
)
def test_a_signed_body_too_deep_or_odd_is_refused_with_400(receiver: Receiver, body: str):
    refused(receiver.sendgrid(body=body), 400, "")
    assert receiver.store.webhook_events() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"sg_event_id": "e" * 5000},
        {"sg_event_id": {"nested": [1, 2]}},
        {"sg_event_id": None, "deep": json.loads("[" * 900 + "]" * 900)},
        {"email": "x" * 5000 + "@example.com"},
        {"email": ["jenny.rosen@example.com"]},
        {"timestamp": 1e308, "asm_group_id": 10**30},
        {"sg_message_id": "m" * 5000, "message_key": ":" * 5000},
        {"event": ["bounce"]},
    ],
)
def test_odd_fields_in_a_signed_event_never_crash_the_receiver(receiver: Receiver, fields: dict):
    response = receiver.sendgrid([sendgrid_event("bounce") | fields])

    assert response.status_code in (200, 400), response.text
    assert "\n" not in response.text
