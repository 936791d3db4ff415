"""A late fee and the collections hand-off, through the workflow on the time-skipping server.

A case on a short policy with a late fee runs to collections with a real worker and the real
activities: the fee is added once through the biller (through the real Stripe SDK against the
fake Stripe API, whose first answer is lost so the activity retries), the messages after it
name it, the collections message names the agency, the date and whom to contact, and
`dunning collections export` (run as a user runs it) gives the agency the whole record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from activities.notify.templates import Brand, Templates
from activities.payments.stripe import StripeBiller
from config.settings import CONFIG_DIR
from tests.support.fake_stripe import FakeStripe
from tests.support.harness import Dunning
from workflows.models import CaseInput
from workflows.policy import Outcome, Policy

DECLINES = "pm_card_chargeDeclinedInsufficientFunds"
DUNNING = str(Path(sys.executable).parent / "dunning")
API_KEY = "sk_test_fee_flow"

FEE_POLICY = Policy.model_validate(
    {
        "name": "fees",
        "version": 1,
        "retries": ["P1D"],
        "min_retry_gap": "PT12H",
        "retry_after_method_update": "PT5M",
        "max_charge_attempts": 3,
        "reminders": [
            {"after": "PT0S", "tone": "gentle", "channels": ["email"]},
            {"after": "P3D", "tone": "firm", "channels": ["email"]},
            {"after": "P5D", "tone": "final", "channels": ["email"]},
        ],
        "late_fee": {"after": "P2D", "fixed": 500},
        "collections_after": "P7D",
        "outcome_messages": {"collections": ["email"]},
    }
)


async def run_to_collections(dunning: Dunning) -> CaseInput:
    """A case on the fee policy whose card always declines, run to its end."""
    dunning.activities.policies.append(FEE_POLICY)
    dunning.activities.templates = Templates(
        CONFIG_DIR / "templates",
        brand=Brand(collections_agency="Acme Recovery", collections_contact="+1 555 0100"),
    )
    case = (await dunning.open_case(DECLINES)).model_copy(update={"policy_name": "fees"})
    async with dunning.worker():
        handle = await dunning.start(case)
        result = await handle.result()
    assert result.outcome is Outcome.COLLECTIONS
    return case


async def test_late_fee_is_added_once_through_stripe_and_named_by_the_messages_after_it(
    dunning: Dunning,
) -> None:
    with FakeStripe(API_KEY) as fake:
        fake.lose_invoice_item_responses = 1  # the item is made, its answer lost: a retry
        dunning.activities.biller = StripeBiller(API_KEY, fake.url)
        case = (await dunning.open_case(DECLINES)).model_copy(update={"policy_name": "fees"})
        fake.add_invoice(case.invoice_id, customer=case.customer_id)
        dunning.activities.policies.append(FEE_POLICY)
        async with dunning.worker():
            handle = await dunning.start(case)
            result = await handle.result()

        [item] = fake.invoice_items.values()
        sent = fake.requests_to("/v1/invoiceitems")
    assert len(sent) == 2  # the lost answer, then its replay under the same key
    assert {r.headers["idempotency-key"] for r in sent} == {f"dunning:{case.case_id}:late-fee"}
    assert (item["customer"], item["amount"], item["currency"]) == (case.customer_id, 500, "jpy")
    assert result.outcome is Outcome.COLLECTIONS
    kinds = [entry.kind for entry in result.timeline]
    assert kinds.count("late_fee") == 1 and "late_fee_failed" not in kinds
    fee_line = next(e for e in result.timeline if e.kind == "late_fee")
    assert fee_line.detail == f"500 JPY: {item['id']}"

    bodies = {m.template: m.body for m in dunning.activities.store.messages(case.case_id)}
    assert "late fee" not in bodies["reminder_gentle"]  # sent before the fee
    for template in ("reminder_firm", "final_notice"):
        assert "A late fee of ¥500 has been added" in bodies[template], bodies[template]
        assert "next invoice" in bodies[template]
    assert dunning.activities.store.get_case(case.case_id).late_fee == 500


async def test_collections_export_gives_the_agency_the_whole_record(
    dunning: Dunning, tmp_path: Path
) -> None:
    case = await run_to_collections(dunning)
    store = dunning.activities.store
    row = store.get_case(case.case_id)
    messages = store.messages(case.case_id)

    # The collections message names the agency, the day the debt passed and whom to call.
    collections = next(m for m in messages if m.template == "collections")
    assert "Acme Recovery" in collections.body and "+1 555 0100" in collections.body
    assert f"{row.closed_at:%B} {row.closed_at.day}, {row.closed_at:%Y}" in collections.body
    final = next(m for m in messages if m.template == "final_notice")
    assert "Acme Recovery, our collections agency," in final.body
    assert "please contact +1 555 0100" in final.body

    done = export(tmp_path, "--format", "json")
    assert done.returncode == 0, done.stderr
    [record] = json.loads(done.stdout)
    assert record["case_id"] == record["invoice_id"] == case.invoice_id
    assert record["customer_id"] == case.customer_id
    assert (record["currency"], record["amount_original"], record["amount_paid"]) == (
        "JPY",
        4980,
        0,
    )
    assert (record["amount_due"], record["late_fee"]) == (4980, 500)
    assert record["failed_at"] == case.failure.failed_at.isoformat()
    assert record["opened_at"] == row.opened_at.isoformat()
    assert record["sent_to_collections_at"] == row.closed_at.isoformat()
    assert record["customer"] == {
        "name": "Ann",
        "email": f"{case.customer_id}@example.com",
        "phone": "+15555550123",
        "locale": "en",
        "country": None,
        "time_zone": None,
    }
    attempts = store.attempts(case.case_id)
    assert len(record["attempts"]) == len(attempts) >= 1
    assert {a["result"] for a in record["attempts"]} == {"declined"}
    assert {a["decline_code"] for a in record["attempts"]} == {"insufficient_funds"}
    templates = [m["template"] for m in record["messages"]]
    assert templates == [
        "reminder_gentle",
        "reminder_firm",
        "final_notice",
        "collections",
    ]
    assert {(m["channel"], m["status"]) for m in record["messages"]} == {("email", "sent")}

    done = export(tmp_path, "--format", "csv", "--output", str(tmp_path / "agency.csv"))
    assert (done.returncode, done.stdout) == (0, "")
    [line] = csv.DictReader(io.StringIO((tmp_path / "agency.csv").read_text()))
    assert (line["case_id"], line["amount_due"], line["late_fee"]) == (case.case_id, "4980", "500")
    assert (line["customer_email"], line["customer_phone"]) == (
        f"{case.customer_id}@example.com",
        "+15555550123",
    )
    assert (line["attempts"], line["last_attempt_result"]) == (str(len(attempts)), "declined")
    assert (line["messages"], line["messages_sent"]) == ("4", "4")
    assert (line["last_message_template"], line["last_message_channel"]) == (
        "collections",
        "email",
    )
    assert line["sent_to_collections_at"] == row.closed_at.isoformat()

    # --since: the day after the hand-off leaves nobody; the day of it keeps the case.
    after = (row.closed_at + timedelta(days=1)).date().isoformat()
    assert json.loads(export(tmp_path, "--format", "json", "--since", after).stdout) == []
    on = row.closed_at.date().isoformat()
    assert len(json.loads(export(tmp_path, "--format", "json", "--since", on).stdout)) == 1


def test_an_empty_export_is_a_header_or_an_empty_list(tmp_path: Path) -> None:
    done = export(tmp_path, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0]]
    assert done.stdout.startswith("case_id,invoice_id,customer_id,")
    assert json.loads(export(tmp_path, "--format", "json").stdout) == []


def test_bad_export_arguments_are_one_line_and_an_exit_code(tmp_path: Path) -> None:
    bad_format = export(tmp_path, "--format", "xml")
    assert bad_format.returncode == 2, bad_format.stderr
    assert bad_format.stderr.count("\n") == 1 and "--format" in bad_format.stderr
    no_format = export(tmp_path)
    assert no_format.returncode == 2 and "--format" in no_format.stderr
    for since in ("yesterday", "2026-13-01"):
        bad_since = export(tmp_path, "--format", "csv", "--since", since)
        assert bad_since.returncode == 1, bad_since.stderr
        assert bad_since.stderr == f"dunning: --since {since!r} is not a date: use YYYY-MM-DD\n"
    unwritable = export(tmp_path, "--format", "csv", "--output", str(tmp_path / "no" / "f.csv"))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr
    assert "Traceback" not in bad_format.stderr + bad_since.stderr + unwritable.stderr


def export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`dunning collections export ARGS` as a user runs it, on the test's store."""
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER")}
    env = {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "SELF_SERVICE_SECRET": "collections-test-self-service-secret-5b1d",
        "BILLING_EVENTS_SECRET": "collections-test-billing-events-secret-77aa",
    }
    return subprocess.run(
        [DUNNING, "collections", "export", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
