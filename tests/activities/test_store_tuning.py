"""How the store and the worker are tuned for throughput: SQLite in WAL mode, the weekly cap's
statement built once, and the worker's slots, threads, cache and sandbox from the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.dunning import DunningActivities
from activities.pre_dunning import PreDunningActivities
from activities.store import CaseStore, Message
from config.settings import Settings
from worker import build_worker


def test_a_sqlite_store_writes_ahead_and_waits_for_a_busy_writer(tmp_path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as connection:
        pragma = {
            name: connection.execute(text(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    store.engine.dispose()
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 15_000}


def test_the_weekly_cap_counts_one_instant_however_its_zone_is_written(tmp_path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'cap.db'}")
    store.create_schema()
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    for step, days_ago in [("r1", 1), ("r2", 6), ("r3", 8)]:
        row = store.claim_message(
            Message(
                case_id="in_1",
                customer_id="cus_1",
                step=step,
                channel="email",
                template="reminder_gentle",
                recipient="a@example.com",
                body="...",
                step_at=at - timedelta(days=days_ago),
            )
        )
        store.mark_message(row.id, "sent")
    week_ago = at - timedelta(days=7)
    in_tokyo = week_ago.astimezone(timezone(timedelta(hours=9)))
    assert store.messages_to_customer_since("cus_1", week_ago, ["email"]) == 2
    assert store.messages_to_customer_since("cus_1", in_tokyo, ["email"]) == 2
    assert store.messages_to_customer_since("cus_1", in_tokyo, ["sms"]) == 0
    assert store.messages_to_customer_since("cus_2", week_ago, ["email"]) == 0
    assert store.message_times_since("cus_1", in_tokyo) == [
        at - timedelta(days=6),
        at - timedelta(days=1),
    ]
    store.engine.dispose()


@pytest.mark.parametrize("sandboxed", [False, True])
async def test_the_worker_has_a_thread_per_activity_slot_and_the_cache_it_is_given(
    dev_server: WorkflowEnvironment, tmp_path, task_queue: str, sandboxed: bool
) -> None:
    settings = Settings(
        _env_file=None,
        task_queue=f"{task_queue}-{sandboxed}",
        database_url=f"sqlite:///{tmp_path / 'worker.db'}",
        worker_activity_slots=7,
        worker_cache_size=33,
        worker_sandbox=sandboxed,
    )
    activities = DunningActivities.from_settings(settings)
    pre_dunning = PreDunningActivities.from_settings(settings, activities)
    config = build_worker(dev_server.client, settings, activities, pre_dunning).config()
    assert config["max_concurrent_activities"] == 7
    assert config["activity_executor"]._max_workers == 7
    assert config["max_cached_workflows"] == 33
    runner = SandboxedWorkflowRunner if sandboxed else UnsandboxedWorkflowRunner
    assert type(config["workflow_runner"]) is runner
    activities.store.engine.dispose()
