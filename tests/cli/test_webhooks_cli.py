"""`dunning webhooks list` and `dunning webhooks redeliver`, run as a user runs them, over a
SQLite store and a real local receiver that checks signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from activities.outbound import EventPublisher
from activities.store import CaseStore
from tests.support.cli import cli_env, one_line
from tests.support.cli import dunning as dunning_cli
from tests.support.fake_product import SECRET, FakeProduct
from workflows.case_events import CaseEvent, CaseEventData, CaseEventType, event_id

CREATED = datetime(2026, 12, 1, 9, tzinfo=UTC)


def stored_events(database_url: str, url: str | None) -> None:
    """Two cases' events as the activity stores them: one delivered, one whose receiver was
    down (pending), or two merely stored when `url` is None."""
    store = CaseStore(database_url)
    store.create_schema()
    for case_id in ("in_1", "in_2"):
        data = CaseEventData(
            case_id=case_id,
            invoice_id=case_id,
            customer_id="cus_1",
            amount_due=2500,
            amount_paid=0,
            currency="USD",
            status="active",
            policy="standard v1",
        )
        kind = CaseEventType.OPENED
        event = CaseEvent(id=event_id(case_id, kind, 1), type=kind, created=CREATED, data=data)
        target = url if case_id == "in_1" or url is None else "http://127.0.0.1:1/down"
        EventPublisher(store, target, SECRET if target else None, timeout=1).publish(event)
    store.engine.dispose()


def test_list_filters_by_status_and_case_and_speaks_json(tmp_path):
    with FakeProduct() as product:
        env = cli_env(tmp_path)
        stored_events(env["DATABASE_URL"], product.url)
    everything = dunning_cli(env, "webhooks", "list", cwd=tmp_path)
    assert everything.returncode == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert lines[0].split()[:4] == ["EVENT", "TYPE", "STATUS", "ATTEMPTS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["in_2:case.opened:1", "case.opened", "pending"],
        ["in_1:case.opened:1", "case.opened", "delivered"],
    ]
    assert lines[2].split()[-1] == "-"  # delivered: no error to show
    pending = dunning_cli(env, "webhooks", "list", "--status", "pending", "--json", cwd=tmp_path)
    [row] = json.loads(pending.stdout)
    assert (row["event_id"], row["attempts"]) == ("in_2:case.opened:1", 1)
    assert "Connection refused" in row["last_error"]
    one_case = dunning_cli(env, "webhooks", "list", "--case", "in_1", "--json", cwd=tmp_path)
    assert [r["status"] for r in json.loads(one_case.stdout)] == ["delivered"]
    none = dunning_cli(env, "webhooks", "list", "--status", "failed", cwd=tmp_path)
    assert none.stdout.strip() == "no outbound events match"
    bad = dunning_cli(env, "webhooks", "list", "--status", "lost", cwd=tmp_path)
    one_line(bad, 2, "--status")


def test_redeliver_sends_now_logs_the_attempt_and_prints_the_result(tmp_path):
    with FakeProduct() as product:
        env = cli_env(tmp_path, OUTBOUND_WEBHOOK_URL=product.url, OUTBOUND_WEBHOOK_SECRET=SECRET)
        stored_events(env["DATABASE_URL"], product.url)
        done = dunning_cli(env, "webhooks", "redeliver", "in_2:case.opened:1", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "in_2:case.opened:1 (case.opened): delivered after attempt 2"
        assert product.ids == ["in_1:case.opened:1", "in_2:case.opened:1"]
        product.fail_next = 1
        failed = dunning_cli(env, "webhooks", "redeliver", "in_1:case.opened:1", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stdout.strip().endswith("pending after attempt 2: HTTP 503")
    log = CaseStore(env["DATABASE_URL"]).outbound_deliveries("in_2:case.opened:1")
    assert [a.status_code for a in log] == [None, 200]


def test_redeliver_of_an_unknown_event_or_without_a_url_is_one_line_exit_1(tmp_path):
    down = "http://127.0.0.1:1/"
    env = cli_env(tmp_path, OUTBOUND_WEBHOOK_URL=down, OUTBOUND_WEBHOOK_SECRET=SECRET)
    stored_events(env["DATABASE_URL"], None)
    unknown = dunning_cli(env, "webhooks", "redeliver", "in_9:case.opened:1", cwd=tmp_path)
    one_line(unknown, 1, "in_9:case.opened:1: no outbound event has this id")
    unset = dunning_cli(
        cli_env(tmp_path), "webhooks", "redeliver", "in_1:case.opened:1", cwd=tmp_path
    )
    one_line(unset, 1, "OUTBOUND_WEBHOOK_URL is not set")
    no_secret = dunning_cli(
        cli_env(tmp_path, OUTBOUND_WEBHOOK_URL=down), "webhooks", "list", cwd=tmp_path
    )
    one_line(no_secret, 1, "OUTBOUND_WEBHOOK_URL needs OUTBOUND_WEBHOOK_SECRET")


def test_status_choices_are_the_stores():
    import cli
    from activities.store import OutboundEventStatus

    assert [s.value for s in cli.OutboundStatus] == [s.value for s in OutboundEventStatus]
