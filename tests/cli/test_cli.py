"""The `dunning` CLI answers truthfully: one line on stderr and a documented exit code for
every mistake and outage, and support actions that say "refused: ..." when the case refuses.

The CLI runs as a subprocess, as a user runs it; cases run on the real time-skipping server
(or the dev server, for `list`) with a real worker, and stores are SQLite files in `tmp_path`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.store import CaseStore
from tests.support.cli import DUNNING, cli_env, dunning, one_line
from tests.support.conversation import CUSTOMER, conversation_policy, open_cases
from tests.support.harness import Dunning, status_when

EVENT = (
    '{"invoice_id": "in_cli", "customer": {"customer_id": "cus_cli", "email": "a@example.com"},'
    ' "amount_due": 2500, "currency": "USD"}'
)


# The store and Temporal out of reach -----------------------------------------------------


def folder_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "afile").write_text("")
    return f"sqlite:///{tmp_path / 'afile' / 'dunning.db'}"


@pytest.mark.parametrize("command", [["start", "-"], ["worker"], ["serve"]])
@pytest.mark.parametrize(
    ("database_url", "words"),
    [
        (lambda _: "postgresql+psycopg://nobody@127.0.0.1:1/x", "Connection refused"),
        (lambda _: "notaurl", "DATABASE_URL is unusable (Could not parse"),
        (folder_is_a_file, "cannot use the store (File exists"),
    ],
    ids=["unreachable", "unparsable", "folder-is-a-file"],
)
def test_unusable_store_is_one_line_with_exit_4(tmp_path, command, database_url, words):
    env = cli_env(tmp_path, DATABASE_URL=database_url(tmp_path))
    done = subprocess.run(
        [DUNNING, *command], env=env, cwd=tmp_path, input=EVENT, capture_output=True, text=True
    )
    one_line(done, 4, words)


def test_locked_store_is_one_line_with_exit_4(tmp_path):
    env = cli_env(tmp_path)
    store = CaseStore(env["DATABASE_URL"])
    store.create_schema()
    store.engine.dispose()  # our own open connection would stop the exclusive lock below
    holder = sqlite3.connect(tmp_path / "dunning.db")
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # in WAL, only this keeps readers out
    holder.execute("BEGIN EXCLUSIVE")  # another process's open write transaction
    try:
        running = [
            subprocess.Popen(
                [DUNNING, *command],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command in (["start", "-"], ["worker"], ["serve"])
        ]
        for process in running:
            out, err = process.communicate(EVENT, timeout=60)
            done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
            one_line(done, 4, "cannot use the store (database is locked)")
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize("command", [["status", "in_1"], ["worker"], ["events", "retry", "--all"]])
def test_unreachable_temporal_is_one_line_with_exit_5(tmp_path, command):
    done = dunning(cli_env(tmp_path), *command, cwd=tmp_path)
    one_line(done, 5, "cannot reach Temporal at 127.0.0.1:1")


# Arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "missing command (see dunning --help)"),
        (["bogus"], "no such command 'bogus'"),
        (["pause"], "missing argument 'case' (see dunning pause --help)"),
        (["pause", "in_1"], "missing option '--reason' (see dunning pause --help)"),
        (["list", "--limit", "many"], "invalid value for '--limit'"),
        (["dispute-resolved", "in_1", "maybe"], "'maybe' is not one of 'won', 'lost' (see dunning"),
        (["events", "retry"], "one of the arguments EVENT_ID --all is required"),
        (["events", "retry", "evt_1", "--all"], "--all: not allowed with argument EVENT_ID"),
        (["start", "--invoice", "in 1"], "'in 1' is not a valid id (see dunning start --help)"),
        (["model"], "missing command (see dunning model --help)"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(tmp_path, args, words):
    done = dunning(cli_env(tmp_path), *args, cwd=tmp_path)
    one_line(done, 2, words)
    assert done.stdout == ""


def test_help_answers_without_loading_temporal_or_the_store(tmp_path):
    done = dunning(cli_env(tmp_path), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "141" in done.stdout  # the exit-code table
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli; print(sorted(sys.modules))"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heavy in ("temporalio", "sqlalchemy", "sqlmodel", "stripe", "sendgrid", "twilio"):
        assert f"'{heavy}'" not in loaded, heavy
    assert "'workflows.dunning'" not in loaded and "'activities.store'" not in loaded


def test_choices_are_the_values_of_their_enums():
    from typing import get_args

    import cli
    from activities.store import WebhookEventStatus
    from analytics.report import Dimension
    from workflows.models import CaseStatus

    assert list(get_args(cli.CASE_STATUSES)) == [s.value for s in CaseStatus]
    assert [s.value for s in cli.EventStatus] == [s.value for s in WebhookEventStatus]
    assert list(get_args(cli.REPORT_DIMENSIONS)) == [d.value for d in Dimension]


def test_simulate_takes_its_own_options(tmp_path):
    done = dunning(cli_env(tmp_path), "simulate", "--cases", "3", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"policies"' in done.stdout
    assert (
        "usage: dunning simulate"
        in dunning(cli_env(tmp_path), "simulate", "--help", cwd=tmp_path).stdout
    )


def test_closed_stdout_ends_quietly(dev_server: WorkflowEnvironment, tmp_path):
    env = cli_env(tmp_path, TEMPORAL_ADDRESS=dev_server.client.service_client.config.target_host)
    listing = subprocess.Popen(
        [DUNNING, "list"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    listing.stdout.close()  # `dunning list | head -1`: the reader has gone
    _, err = listing.communicate(timeout=60)
    assert err == b""
    assert listing.returncode == 141


# Support actions on a case -----------------------------------------------------------------


async def test_support_commands_answer_or_refuse(dunning: Dunning, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path,
        TEMPORAL_ADDRESS=dunning.env.client.service_client.config.target_host,
        DATABASE_URL=str(dunning.activities.store.engine.url),
    )

    async def cli(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(dunning_cli, env, args, tmp_path)

    case = await dunning.open_case("pm_card_chargeDeclinedInsufficientFunds")
    invoice = case.invoice_id
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: True, "the case to start")

        done = await cli("dispute-opened", invoice, "--reason", "chargeback", "--actor", "kim")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"opened a dispute on dunning-{invoice}: waiting")
        again = await cli("dispute-opened", invoice, "--reason", "twice")
        assert one_line(again, 1, "") == f"dunning: refused: case {invoice} is already disputed"
        assert (await cli("dispute-resolved", invoice, "won")).returncode == 0
        one_line(await cli("dispute-resolved", invoice, "lost"), 1, "refused: case " + invoice)
        done = await cli("method-updated", invoice, "--payment-method", "pm_card_visa")
        assert done.returncode == 0, done.stderr
        done = await cli("payment-received", invoice, "--amount", "500", "--reference", "phone")
        assert done.returncode == 0, done.stderr
        done = await cli("cancel", invoice, "--reason", "asked")
        assert done.stdout.startswith(f"cancelled dunning-{invoice}: cancelled: asked")
        result = await handle.result()

        one_line(await cli("cancel", invoice, "--reason", "again"), 1, "already finished")
        one_line(await cli("payment-received", invoice, "--amount", "1"), 1, "already finished")
        one_line(await cli("status", "in_nope"), 1, "no case for in_nope")
        # A case id is never taken for a workflow id: invoice `dunning-<invoice>` is another.
        one_line(await cli("status", f"dunning-{invoice}"), 1, f"no case for dunning-{invoice}")

    assert [e.kind for e in result.timeline if e.kind in ("ignored", "dispute_resolved")] == [
        "dispute_resolved"
    ]
    assert result.amount_recovered == 500


async def test_customer_show_prints_the_conversation(dunning: Dunning, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path,
        TEMPORAL_ADDRESS=dunning.env.client.service_client.config.target_host,
        DATABASE_URL=str(dunning.activities.store.engine.url),
    )

    async def cli(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(dunning_cli, env, args, tmp_path)

    conversation_policy(dunning)
    async with dunning.worker():
        handles = await open_cases(dunning, spacing=timedelta(minutes=30), count=2)
        await status_when(handles[0], lambda v: v.messages, "the conversation to write")
        shown = await cli("customer", "show", CUSTOMER)
        as_json = await cli("customer", "show", CUSTOMER, "--json")
        one_line(await cli("customer", "show", "cus_nobody"), 1, "no conversation with customer")
        one_line(await cli("customer", "show", "bad id!"), 1, "is not a customer id")

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"customer-{CUSTOMER}  2 open invoices, owed $30.00"
    assert lines[1] == "messages this week: 1 of 4"
    assert lines[2].startswith("next contact: ") and "in_three_2:reminder-1" in lines[2]
    assert [line.split()[:2] for line in lines[-2:]] == [
        ["in_three_1", "$10.00"],
        ["in_three_2", "$20.00"],
    ]
    assert json.loads(as_json.stdout)["owed"] == {"USD": 3000}


def dunning_cli(env: dict[str, str], args: tuple[str, ...], cwd: Path):
    return dunning(env, *args, cwd=cwd)
