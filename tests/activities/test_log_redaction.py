"""No token in any log line: the outbox's message lines and the receiver's access log both
show where a link went, never the token that makes it work."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activities.dunning import DunningActivities
from activities.notify import OutboundMessage
from activities.notify.links import SelfService, make_token, redact_tokens
from activities.notify.outbox import OutboxNotifier
from activities.store import CaseStore, CustomerProfile
from config.settings import Settings
from webhooks.app import serve
from workflows.models import NotifyRequest
from workflows.policy import Channel

SECRET = "log-redaction-test-secret-0d9"
NOW = datetime.now(UTC)
TOKEN_SHAPE = r"[A-Za-z0-9_.:-]+~[0-9a-z]+~[a-z]~[A-Za-z0-9_-]{22}"


def test_tokens_are_redacted_wherever_they_stand():
    token = make_token("in_1", SECRET, NOW, timedelta(days=30))
    text = (
        f"pay at https://pay.example.com/?token={token}&lang=ja, "
        f"or https://pay.example.com/fix/{token} (GET /unsubscribe?token=not-even-valid)"
    )

    redacted = redact_tokens(text)

    assert token not in redacted and "not-even-valid" not in redacted
    assert redacted == (
        "pay at https://pay.example.com/?token=<redacted>&lang=ja, "
        "or https://pay.example.com/fix/<redacted> (GET /unsubscribe?token=<redacted>)"
    )


def test_the_outbox_logs_a_message_without_its_links_tokens(caplog: pytest.LogCaptureFixture):
    service = SelfService(
        url="https://pay.example.com/update?token={token}",
        secret=SECRET,
        valid_for=timedelta(days=30),
        unsubscribe_url="https://dunning.example.com/unsubscribe?token={token}",
    )
    link = service.link_for("in_1", NOW)
    token = link.partition("token=")[2]
    message = OutboundMessage(
        key="in_1:reminder-1:sms",
        channel=Channel.SMS,
        recipient="+14155550123",
        body=f"Your payment didn't go through. Fix it: {link}",
    )

    with caplog.at_level(logging.INFO, logger="dunning.outbox"):
        OutboxNotifier().send(message)

    assert "outbox sms in_1:reminder-1:sms: Your payment didn't go through." in caplog.text
    assert "token=<redacted>" in caplog.text
    assert token not in caplog.text


def test_a_rendered_reminder_leaves_no_token_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        self_service_secret=SECRET,
        _env_file=None,
    )
    activities = DunningActivities.from_settings(settings)
    activities.store.upsert_customer(
        CustomerProfile(
            customer_id="cus_1", email="aiko@example.com", phone="+14155550123", locale="en"
        )
    )
    request = NotifyRequest(
        case_id="in_1",
        invoice_id="in_1",
        customer_id="cus_1",
        step="reminder-1",
        template="reminder_gentle",
        channels=[Channel.EMAIL, Channel.SMS],
        amount_due=4900,
        currency="USD",
        deadline=NOW + timedelta(days=14),
    )

    with caplog.at_level(logging.DEBUG):
        activities.notify(request)

    bodies = " ".join(m.body for m in activities.store.messages("in_1"))
    tokens = re.findall(TOKEN_SHAPE, bodies)
    assert tokens  # the messages do carry working links
    assert "outbox email in_1:reminder-1:email" in caplog.text
    assert not any(token in caplog.text for token in tokens)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
    raise AssertionError(f"nothing listens on {port}")


async def test_the_access_log_shows_unsubscribe_requests_without_their_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        self_service_secret=SECRET,
        receiver_port=port,
        _env_file=None,
    )
    store = CaseStore(settings.database_url)
    store.create_schema()
    token = make_token("in_1", SECRET, NOW, timedelta(days=365), use="unsubscribe")

    async def no_temporal():
        raise RuntimeError("unsubscribing never needs Temporal")

    serving = asyncio.create_task(serve(settings, no_temporal, store))
    access = logging.getLogger("uvicorn.access")
    try:
        await listening(port)
        access.addHandler(caplog.handler)  # after uvicorn configured it; it does not propagate
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.get(f"/unsubscribe?token={token}")
        # The preferences page, or its friendly refusal: this store holds no case `in_1`.
        assert answer.status_code in (200, 404) and "<html" in answer.text
    finally:
        access.removeHandler(caplog.handler)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        store.engine.dispose()

    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("GET /unsubscribe?token=<redacted> HTTP/1.1" in line for line in lines), lines
    assert token not in caplog.text
