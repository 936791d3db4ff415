"""The SendGrid and Twilio notifiers driven through the real SDKs against local fake APIs.

Nothing is mocked: `SendGridNotifier` builds a real `SendGridAPIClient` pointed at
`tests/support/fake_sendgrid.py`, `TwilioNotifier` a real `twilio.rest.Client` whose HTTP client is
rebased onto `tests/support/fake_twilio.py`. The tests read what went over the wire, and check that
no error we raise names the recipient, since it can end up in workflow history.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.dunning import DunningActivities
from activities.notify import (
    NotifierConfigError,
    NotifierUnavailable,
    OutboundMessage,
    UndeliverableError,
    UndeliverableReason,
)
from activities.notify.outbox import OutboxNotifier
from activities.notify.sendgrid import SendGridNotifier
from activities.notify.twilio import TwilioNotifier
from activities.store import CustomerProfile
from config.settings import Settings
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.fake_twilio import FakeTwilio
from workflows.models import DeliveryStatus, NotifyRequest
from workflows.policy import Channel

SENDGRID_KEY = "SG.test-key"
UNSUBSCRIBE_GROUP = 4242
FROM_NUMBER = "+15005550006"
SERVICE_SID = "MG" + "9" * 32
PUBLIC_URL = "https://dunning.example.com"
EMAIL = "jenny.rosen@example.com"
PHONE = "+14155550123"
NAME = "Jenny Rosen"


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    """A fake SendGrid of the test's own, accepting `SENDGRID_KEY`."""
    with FakeSendGrid(SENDGRID_KEY) as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio of the test's own, with its own account SID and auth token."""
    with FakeTwilio() as server:
        yield server


def email_notifier(sendgrid: FakeSendGrid, **changes) -> SendGridNotifier:
    """The real notifier, SDK and all, pointed at the fake."""
    fields = {
        "sender": "billing@example.com",
        "sender_name": "Billing",
        "host": sendgrid.url,
        "unsubscribe_group_id": UNSUBSCRIBE_GROUP,
    }
    return SendGridNotifier(SENDGRID_KEY, **(fields | changes))


def sms_notifier(twilio: FakeTwilio, **changes) -> TwilioNotifier:
    """The real notifier, SDK and all, pointed at the fake."""
    fields = {
        "public_base_url": PUBLIC_URL,
        "from_number": FROM_NUMBER,
        "base_url": twilio.url,
    }
    return TwilioNotifier(twilio.account_sid, twilio.auth_token, **(fields | changes))


def email(**changes) -> OutboundMessage:
    fields = {
        "key": "case-1:reminder-1:email",
        "channel": Channel.EMAIL,
        "recipient": EMAIL,
        "subject": "Your payment did not go through",
        "body": "Hi Jenny, please update your card.",
        "html": "<p>Hi Jenny, please update your card.</p>",
        "case_id": "case-1",
        "step": "reminder-1",
        "template": "reminder_gentle",
        "variables": {"name": NAME, "amount": "$49.00", "link": "https://pay.example.com/t"},
    }
    return OutboundMessage(**(fields | changes))


def sms(**changes) -> OutboundMessage:
    fields = {
        "key": "case-1:reminder-1:sms",
        "channel": Channel.SMS,
        "recipient": PHONE,
        "body": "Your payment of $49.00 failed. Update: https://pay.example.com/t Reply STOP",
        "case_id": "case-1",
        "step": "reminder-1",
        "template": "reminder_gentle",
    }
    return OutboundMessage(**(fields | changes))


def names_the_number(text: str, number: str) -> bool:
    """True when `text` holds the number in E.164 or any run of 7 of its digits."""
    digits = number.removeprefix("+")
    runs = {digits[i : i + 7] for i in range(len(digits) - 6)}
    return number in text or any(run in re.sub(r"\D", "", text) for run in runs)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: every read times out."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        yield server.getsockname()[1]


# SendGrid ---------------------------------------------------------------------------------


def test_email_goes_out_with_our_rendering_and_only_opaque_ids(sendgrid: FakeSendGrid) -> None:
    provider_id = email_notifier(sendgrid).send(email())

    [sent] = sendgrid.requests
    [mail] = sendgrid.sent
    assert provider_id == mail.message_id
    assert (sent.method, sent.path) == ("POST", "/v3/mail/send")
    assert sent.headers["authorization"] == f"Bearer {SENDGRID_KEY}"
    assert sent.headers["content-type"] == "application/json"
    body = dict(sent.body)
    # The SDK's Category helper prepends: the order on the wire is the reverse of ours.
    assert sorted(body.pop("categories")) == ["dunning", "reminder_gentle"]
    assert body == {
        "from": {"email": "billing@example.com", "name": "Billing"},
        "subject": "Your payment did not go through",
        "personalizations": [{"to": [{"email": EMAIL}]}],
        "content": [
            {"type": "text/plain", "value": "Hi Jenny, please update your card."},
            {"type": "text/html", "value": "<p>Hi Jenny, please update your card.</p>"},
        ],
        "custom_args": {
            "case_id": "case-1",
            "step": "reminder-1",
            "message_key": "case-1:reminder-1:email",
        },
        "asm": {"group_id": UNSUBSCRIBE_GROUP},
    }
    metadata = json.dumps([sent.body["categories"], sent.body["custom_args"]]).lower()
    assert not [detail for detail in ("@", "jenny", "rosen") if detail in metadata]


def test_a_sendgrid_dynamic_template_gets_the_messages_variables(
    sendgrid: FakeSendGrid,
) -> None:
    notifier = email_notifier(sendgrid, template_ids={"reminder_gentle": "d-0123456789abcdef"})

    notifier.send(email())

    [sent] = sendgrid.requests
    assert sent.body["template_id"] == "d-0123456789abcdef"
    assert sent.body["personalizations"] == [
        {
            "to": [{"email": EMAIL}],
            "dynamic_template_data": {
                "name": NAME,
                "amount": "$49.00",
                "link": "https://pay.example.com/t",
            },
        }
    ]
    # SendGrid's template owns subject and content; ours would only be ignored.
    assert "content" not in sent.body and "subject" not in sent.body
    assert sent.body["asm"] == {"group_id": UNSUBSCRIBE_GROUP}
    assert sent.body["custom_args"]["message_key"] == "case-1:reminder-1:email"
    assert len(sendgrid.sent) == 1


def test_a_template_without_a_sendgrid_id_is_rendered_by_us(sendgrid: FakeSendGrid) -> None:
    notifier = email_notifier(sendgrid, template_ids={"final_notice": "d-final"})

    notifier.send(email(template="reminder_gentle"))

    [sent] = sendgrid.requests
    assert "template_id" not in sent.body
    assert sent.body["subject"] == "Your payment did not go through"


def test_without_an_unsubscribe_group_no_asm_is_sent(sendgrid: FakeSendGrid) -> None:
    email_notifier(sendgrid, unsubscribe_group_id=None).send(email(html=""))

    [sent] = sendgrid.requests
    assert "asm" not in sent.body
    assert [part["type"] for part in sent.body["content"]] == ["text/plain"]


def test_sandbox_mode_is_validated_not_queued_and_the_key_stands_in(
    sendgrid: FakeSendGrid,
) -> None:
    provider_id = email_notifier(sendgrid, sandbox=True).send(email())

    assert provider_id == "case-1:reminder-1:email"  # a 200 carries no X-Message-Id
    [sent] = sendgrid.requests
    assert sent.body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert [mail.sandbox for mail in sendgrid.mails] == [True]
    assert sendgrid.sent == []


def test_an_invalid_address_is_undeliverable_and_not_named(sendgrid: FakeSendGrid) -> None:
    address = "jenny.rosen at example.com"

    with pytest.raises(UndeliverableError) as raised:
        email_notifier(sendgrid).send(email(recipient=address))

    assert raised.value.reason is UndeliverableReason.INVALID
    assert "personalizations.0.to.0.email" in str(raised.value)
    assert "jenny" not in str(raised.value).lower()
    assert sendgrid.requests[0].body["personalizations"] == [{"to": [{"email": address}]}]
    assert sendgrid.sent == []


def test_another_bad_request_is_a_config_error_not_the_recipients_fault(
    sendgrid: FakeSendGrid,
) -> None:
    with pytest.raises(NotifierConfigError, match=r"HTTP 400.*content\.0\.value"):
        email_notifier(sendgrid).send(email(body="", html=""))

    assert sendgrid.sent == []


def test_a_wrong_api_key_is_a_config_error(sendgrid: FakeSendGrid) -> None:
    notifier = SendGridNotifier("SG.wrong", sender="billing@example.com", host=sendgrid.url)

    with pytest.raises(NotifierConfigError, match="SENDGRID_API_KEY"):
        notifier.send(email())

    assert sendgrid.requests[0].headers["authorization"] == "Bearer SG.wrong"
    assert sendgrid.sent == []


def test_a_key_without_mail_send_access_is_a_config_error(sendgrid: FakeSendGrid) -> None:
    sendgrid.outages.append(403)

    with pytest.raises(NotifierConfigError, match="HTTP 403"):
        email_notifier(sendgrid).send(email())


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_outages_are_transient_and_a_retry_sends_once(
    sendgrid: FakeSendGrid, status: int
) -> None:
    sendgrid.outages.append(status)
    notifier = email_notifier(sendgrid)

    with pytest.raises(NotifierUnavailable, match=f"HTTP {status}"):
        notifier.send(email())
    provider_id = notifier.send(email())

    assert len(sendgrid.requests) == 2
    assert [mail.message_id for mail in sendgrid.sent] == [provider_id]


def test_a_sendgrid_timeout_is_transient(silent_port: int) -> None:
    notifier = SendGridNotifier(
        SENDGRID_KEY,
        sender="billing@example.com",
        host=f"http://127.0.0.1:{silent_port}",
        timeout=0.2,
    )

    with pytest.raises(NotifierUnavailable, match="TimeoutError"):
        notifier.send(email())


# Twilio -----------------------------------------------------------------------------------


def test_sms_goes_from_our_number_with_a_keyed_status_callback(twilio: FakeTwilio) -> None:
    sid = sms_notifier(twilio).send(sms())

    [sent] = twilio.requests
    [message] = twilio.messages
    assert sid == message["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert (sent.method, sent.path) == ("POST", twilio.messages_path)
    assert sent.basic_auth == (twilio.account_sid, twilio.auth_token)
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.form == {
        "To": PHONE,
        "From": FROM_NUMBER,
        "Body": sms().body,
        "StatusCallback": f"{PUBLIC_URL}/webhooks/twilio/status?key=case-1:reminder-1:sms",
    }


def test_sms_through_a_messaging_service_leaves_the_sender_to_it(twilio: FakeTwilio) -> None:
    sid = sms_notifier(twilio, from_number=None, messaging_service_sid=SERVICE_SID).send(sms())

    [sent] = twilio.requests
    assert "From" not in sent.form
    assert sent.form["MessagingServiceSid"] == SERVICE_SID
    assert sent.form["To"] == PHONE
    assert twilio.messages[0]["status"] == "accepted"
    assert sid == twilio.messages[0]["sid"]


@pytest.mark.parametrize(
    ("number", "code", "reason"),
    [
        ("+15005550001", 21211, UndeliverableReason.INVALID),
        ("+15005550009", 21614, UndeliverableReason.NOT_SMS_CAPABLE),
        ("+15005550004", 21610, UndeliverableReason.OPTED_OUT),
    ],
)
def test_a_refused_number_is_undeliverable_for_its_reason_and_scrubbed(
    twilio: FakeTwilio, number: str, code: int, reason: UndeliverableReason
) -> None:
    with pytest.raises(UndeliverableError) as raised:
        sms_notifier(twilio).send(sms(recipient=number))

    assert raised.value.reason is reason
    assert str(raised.value).startswith(f"Twilio {code}: ")
    assert not names_the_number(str(raised.value), number)
    assert twilio.requests[0].form["To"] == number
    assert twilio.messages == []


def test_a_number_written_another_way_is_scrubbed_too(twilio: FakeTwilio) -> None:
    twilio.refusals["+14155550199"] = 21408  # region not enabled: ours to fix, not theirs

    with pytest.raises(NotifierConfigError, match="code 21408") as raised:
        sms_notifier(twilio).send(sms(recipient="+14155550199"))

    assert not names_the_number(str(raised.value), "+14155550199")


def test_wrong_twilio_credentials_are_a_config_error(twilio: FakeTwilio) -> None:
    notifier = TwilioNotifier(
        twilio.account_sid,
        "not-the-token",
        public_base_url=PUBLIC_URL,
        from_number=FROM_NUMBER,
        base_url=twilio.url,
    )

    with pytest.raises(NotifierConfigError, match="20003"):
        notifier.send(sms())

    assert twilio.requests[0].basic_auth == (twilio.account_sid, "not-the-token")
    assert twilio.messages == []


@pytest.mark.parametrize("status", [429, 500])
def test_twilio_rate_limits_and_outages_are_transient_and_a_retry_sends_once(
    twilio: FakeTwilio, status: int
) -> None:
    twilio.outages.append(status)
    notifier = sms_notifier(twilio)

    with pytest.raises(NotifierUnavailable, match=f"HTTP {status}"):
        notifier.send(sms())
    sid = notifier.send(sms())

    assert len(twilio.requests) == 2
    assert [message["sid"] for message in twilio.messages] == [sid]


def test_a_twilio_timeout_is_transient(twilio: FakeTwilio, silent_port: int) -> None:
    notifier = sms_notifier(twilio, base_url=f"http://127.0.0.1:{silent_port}", timeout=0.2)

    with pytest.raises(NotifierUnavailable, match="Timeout"):
        notifier.send(sms())


def test_twilio_needs_a_sender(twilio: FakeTwilio) -> None:
    with pytest.raises(NotifierConfigError, match="From number or a Messaging Service"):
        sms_notifier(twilio, from_number=None)


# Wiring -----------------------------------------------------------------------------------


@pytest.fixture
def activities(
    sendgrid: FakeSendGrid, twilio: FakeTwilio, tmp_path: Path
) -> Iterator[DunningActivities]:
    """The activities configured for SendGrid and Twilio, both pointed at the fakes."""
    settings = Settings(
        email_provider="sendgrid",
        sendgrid_api_key=SENDGRID_KEY,
        sendgrid_host=sendgrid.url,
        sendgrid_unsubscribe_group_id=UNSUBSCRIBE_GROUP,
        sms_provider="twilio",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_base_url=twilio.url,
        twilio_from_number=FROM_NUMBER,
        public_base_url=PUBLIC_URL,
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        _env_file=None,
    )
    acts = DunningActivities.from_settings(settings)
    yield acts
    acts.store.engine.dispose()


def notify_request(case_id: str, customer_id: str) -> NotifyRequest:
    return NotifyRequest(
        case_id=case_id,
        invoice_id=f"in_{case_id}",
        customer_id=customer_id,
        step="reminder-1",
        template="reminder_gentle",
        channels=[Channel.EMAIL, Channel.SMS],
        amount_due=4900,
        currency="USD",
        deadline=datetime(2026, 3, 23, 9, 0, tzinfo=UTC),
    )


def customer(customer_id: str, phone: str) -> CustomerProfile:
    return CustomerProfile(
        customer_id=customer_id, name=NAME, email=EMAIL, phone=phone, time_zone="UTC"
    )


def test_settings_send_email_through_sendgrid_and_sms_through_twilio_once(
    activities: DunningActivities, sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> None:
    activities.store.upsert_customer(customer("cus_1", PHONE))
    request = notify_request("case-1", "cus_1")

    first = activities.notify(request)
    again = activities.notify(request)

    assert isinstance(activities.notifiers[Channel.EMAIL], SendGridNotifier)
    assert isinstance(activities.notifiers[Channel.SMS], TwilioNotifier)
    assert isinstance(activities.notifiers[Channel.IN_APP], OutboxNotifier)
    [mail] = sendgrid.sent
    [message] = twilio.messages
    assert [(d.channel, d.status, d.detail) for d in first.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SENT, mail.message_id),
        (Channel.SMS, DeliveryStatus.SENT, message["sid"]),
    ]
    assert [(d.status, d.detail) for d in again.deliveries] == [
        (DeliveryStatus.SENT, "recorded"),
        (DeliveryStatus.SENT, "recorded"),
    ]
    assert (len(sendgrid.requests), len(twilio.requests)) == (1, 1)
    assert mail.body["personalizations"][0]["to"] == [{"email": EMAIL}]
    assert mail.body["custom_args"] == {
        "case_id": "case-1",
        "step": "reminder-1",
        "message_key": "case-1:reminder-1:email",
    }
    assert "Jenny" in mail.body["content"][0]["value"]  # rendered from the real templates
    assert twilio.requests[0].form["To"] == PHONE
    assert twilio.requests[0].form["StatusCallback"] == (
        f"{PUBLIC_URL}/webhooks/twilio/status?key=case-1:reminder-1:sms"
    )
    rows = {row.channel: row for row in activities.store.messages("case-1")}
    assert (rows["email"].status, rows["email"].provider_id) == ("sent", mail.message_id)
    assert (rows["sms"].status, rows["sms"].provider_id) == ("sent", message["sid"])


def test_an_invalid_number_fails_sms_and_email_still_goes(
    activities: DunningActivities, sendgrid: FakeSendGrid, twilio: FakeTwilio
) -> None:
    activities.store.upsert_customer(customer("cus_2", "+15005550001"))  # Twilio: 21211

    result = activities.notify(notify_request("case-2", "cus_2"))

    email_delivery, sms_delivery = result.deliveries
    assert (email_delivery.status, email_delivery.detail) == (
        DeliveryStatus.SENT,
        sendgrid.sent[0].message_id,
    )
    assert sms_delivery.status is DeliveryStatus.FAILED
    assert sms_delivery.detail.startswith("Twilio 21211: ")
    assert not names_the_number(sms_delivery.detail, "+15005550001")
    assert twilio.messages == []
    rows = {row.channel: row.status for row in activities.store.messages("case-2")}
    assert rows == {"email": "sent", "sms": "failed"}


def test_settings_keep_the_outbox_by_default(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)

    notifiers = DunningActivities.from_settings(settings).notifiers

    assert all(isinstance(notifiers[channel], OutboxNotifier) for channel in Channel)


def test_without_a_group_our_one_click_unsubscribe_goes_in_the_headers(
    sendgrid: FakeSendGrid,
) -> None:
    link = "https://dunning.example.com/unsubscribe?token=u.v"
    message = email(variables={"unsubscribe": link, "link": "https://pay.example.com/t"})

    email_notifier(sendgrid, unsubscribe_group_id=None).send(message)
    email_notifier(sendgrid).send(message.model_copy(update={"key": "case-1:reminder-2:email"}))

    without_group, with_group = sendgrid.requests
    assert without_group.body["headers"] == {
        "List-Unsubscribe": f"<{link}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "headers" not in with_group.body  # SendGrid's group adds its own
