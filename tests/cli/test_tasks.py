"""`dunning tasks list` and `dunning tasks complete`'s refusals, run as a user runs them over
a seeded SQLite store, with no Temporal in reach: every refusal comes before the case is
asked, writes nothing and is one line (exit 1; bad arguments exit 2). Completing a task
through a running case is tests/workflow/test_call_tasks.py's."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from activities.store import CallTaskStatus, CaseStore, CustomerProfile
from cli import CALL_OUTCOMES
from tests.support.cli import cli_env, dunning, one_line, zone_at_local_hour
from workflows.models import CallOutcome, CaseRecord, CaseStatus

NOW = datetime.now(UTC)


def seeded(tmp_path: Path, zone: str, calls: int = 0) -> tuple[dict, CaseStore, int]:
    """A store with one customer in `zone`, their case and an open task on it, and `calls`
    calls to them in the last days; the CLI's environment over it."""
    env = cli_env(tmp_path)
    store = CaseStore(env["DATABASE_URL"])
    store.upgrade()
    store.upsert_customer(
        CustomerProfile(customer_id="cus_ann", name="Ann Lee", phone="+12125550123", time_zone=zone)
    )
    store.record_case(
        CaseRecord(
            case_id="in_1",
            invoice_id="in_1",
            customer_id="cus_ann",
            status=CaseStatus.ACTIVE,
            amount_due=4900,
            amount_recovered=0,
            currency="USD",
            policy="standard",
            policy_version=1,
            opened_at=NOW - timedelta(days=3),
        )
    )
    earlier = store.create_call_task("in_0", "cus_ann", "call-1", 7, NOW)
    for i in range(calls):
        at = NOW - timedelta(days=6, hours=20) + timedelta(hours=i)
        store.record_call(earlier.id, at, "no_answer", "kim", "", True, NOW)
    store.cancel_call_tasks("in_0")
    task = store.create_call_task("in_1", "cus_ann", "call-1", 3, NOW + timedelta(hours=2))
    return env, store, task.id


def test_list_shows_whom_to_call_when_and_their_calls_this_week(tmp_path: Path) -> None:
    zone = "America/New_York"
    env, _, task = seeded(tmp_path, zone, calls=2)
    done = dunning(env, "tasks", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    columns = ["TASK", "CASE", "CUSTOMER", "NAME", "PHONE", "DUE", "CALL", "FROM", "CALLS/7D"]
    assert header.split() == columns
    local = (NOW + timedelta(hours=2)).astimezone(ZoneInfo(zone))
    assert row.split() == [
        str(task), "in_1", "cus_ann", "Ann", "Lee", "+12125550123", "$49.00",
        f"{local:%Y-%m-%d}", f"{local:%H:%M}", zone, "2/7",
    ]  # fmt: skip

    listed = json.loads(dunning(env, "tasks", "list", "--json", cwd=tmp_path).stdout)
    assert [(t["task"], t["status"], t["calls_this_week"]) for t in listed] == [(task, "open", 2)]
    every = dunning(env, "tasks", "list", "--all", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[-1] for line in every] == ["STATUS", "cancelled", "open"]
    none = dunning(env, "tasks", "list", "--customer", "cus_bob", cwd=tmp_path)
    assert none.stdout == "no call tasks match\n"


def test_an_eighth_call_in_seven_days_is_refused_and_not_stored(tmp_path: Path) -> None:
    env, store, task = seeded(tmp_path, zone_at_local_hour(13), calls=7)
    done = dunning(env, "tasks", "complete", str(task), "--outcome", "no_answer", cwd=tmp_path)
    line = one_line(done, 1, "not logged: the customer had 7 calls in the last 7 days")
    assert "the next is allowed from" in line
    assert store.call_task(task).attempts == 0
    assert len(store.calls_to_customer_since("cus_ann", NOW - timedelta(days=8))) == 7


def test_a_call_in_the_customers_quiet_hours_is_refused(tmp_path: Path) -> None:
    zone = zone_at_local_hour(3)
    env, store, task = seeded(tmp_path, zone)
    done = dunning(env, "tasks", "complete", str(task), "--outcome", "voicemail", cwd=tmp_path)
    one_line(done, 1, f"in {zone}, outside the calling hours 08:00-21:00")
    assert store.call_task(task).attempts == 0


def test_unknown_and_closed_tasks_are_refused(tmp_path: Path) -> None:
    env, store, _ = seeded(tmp_path, zone_at_local_hour(13))
    done = dunning(env, "tasks", "complete", "999", "--outcome", "refused", cwd=tmp_path)
    assert one_line(done, 1, "") == "dunning: no call task 999"
    [cancelled] = [t for t in store.call_tasks(include_closed=True) if t.case_id == "in_0"]
    done = dunning(env, "tasks", "complete", str(cancelled.id), "--outcome", "paid", cwd=tmp_path)
    one_line(done, 1, f"call task {cancelled.id} is already cancelled (its case has finished)")
    assert store.call_task(cancelled.id).status == CallTaskStatus.CANCELLED


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--outcome", "hung_up"], "invalid value for '--outcome'"),
        ([], "missing option '--outcome'"),
        (["--outcome", "promise"], "--pay-on goes with --outcome promise, and only with it"),
        (["--outcome", "no_answer", "--pay-on", "2026-12-24"], "--pay-on goes with"),
        (["--outcome", "promise", "--pay-on", "24/12/2026"], "give a day as YYYY-MM-DD"),
        (["--outcome", "plan"], "--plan goes with --outcome plan"),
        (["--outcome", "plan", "--plan", "1"], "invalid value for '--plan'"),
        (["--outcome", "refused", "--amount", "100"], "--amount goes with --outcome paid"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_2(tmp_path: Path, args, words) -> None:
    done = dunning(cli_env(tmp_path), "tasks", "complete", "1", *args, cwd=tmp_path)
    one_line(done, 2, words)
    assert "dunning tasks complete --help" in done.stderr


def test_outcome_choices_are_the_values_of_their_enum() -> None:
    assert list(typing.get_args(CALL_OUTCOMES)) == [o.value for o in CallOutcome]
