"""LOG_FORMAT=json: one JSON object per line, with the case id, and no contact or token."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from activities.logs import JsonLines
from activities.store import CustomerProfile, Message
from tests.support.harness import Dunning
from workflows.policy import Outcome

RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"
NAME, EMAIL, PHONE = "Zelda Quux", "zelda.quux@example.com", "+15555550199"
TOKEN = re.compile(r"token=([^&\s\"'<>]+)")


async def test_json_logs_of_a_real_case_carry_its_id_and_no_contact_or_token(
    dunning: Dunning,
) -> None:
    case = await dunning.open_case(RECOVERS_ON_2)
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id=case.customer_id,
            name=NAME,
            email=EMAIL,
            phone=PHONE,
            payment_method=RECOVERS_ON_2,
        )
    )
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with dunning.worker():
            handle = await dunning.start(case)
            result = await handle.result()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    assert result.outcome is Outcome.RECOVERED
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("+00:00")
    outbox = [line for line in lines if line["logger"] == "dunning.outbox"]
    assert len(outbox) == result.messages_sent
    assert {line["case_id"] for line in outbox} == {case.case_id}
    assert {line["workflow_id"] for line in outbox} == {handle.id}

    output = written.getvalue()
    with dunning.activities.store.session() as session:
        bodies = list(session.exec(select(Message.body)).all())
    tokens = {token for body in bodies for token in TOKEN.findall(body)}
    assert tokens  # the messages did carry signed links
    secret = dunning.activities.self_service.secret
    for private in [NAME, EMAIL, PHONE, PHONE.removeprefix("+"), secret, *tokens]:
        assert private not in output


def test_the_json_formatter_scrubs_what_a_caller_forgot(tmp_path: Path) -> None:
    script = (
        "import logging\n"
        "from activities.logs import configure_logging\n"
        "configure_logging('json')\n"
        "logging.getLogger('dunning.example').warning(\n"
        "    'sent to %s at %s on 2026-01-05 09:00 via 127.0.0.1: '\n"
        "    'https://pay.example.com/recover?token=abc.def', 'a@b.example', '+81 90 1234 5678')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )

    [line] = [json.loads(text) for text in ran.stderr.splitlines()]
    assert line["level"] == "WARNING"
    assert line["logger"] == "dunning.example"
    assert "case_id" not in line  # outside any workflow or activity
    assert line["message"] == (
        "sent to <email> at <phone> on 2026-01-05 09:00 via 127.0.0.1: "
        "https://pay.example.com/recover?token=<redacted>"
    )
