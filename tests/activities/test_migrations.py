"""The store's migrations, on SQLite and on PostgreSQL: from empty, from the previous revision
and from a database `create_all` made before migrations existed, always ending at the models'
schema; and two processes upgrading one fresh database at once, which must both succeed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from activities.store import CaseStore, Message, WebhookEvent, migrations

SCRIPTS = ScriptDirectory.from_config(migrations())
HEAD = SCRIPTS.get_current_head()
PREVIOUS = SCRIPTS.get_revision(HEAD).down_revision
ROOT = Path(__file__).resolve().parents[2]
WEEK_AGO = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes URLs of new, empty databases: SQLite files, or PostgreSQL schemas (the tests
    share one PostgreSQL database, so each URL points its search path at a schema of its own)."""
    made: list[str] = []
    admin = (
        CaseStore(request.getfixturevalue("postgres_url")) if request.param != "sqlite" else None
    )

    def make() -> str:
        name = f"dunning_migrations_{len(made)}"
        made.append(name)
        if admin is None:
            return f"sqlite:///{tmp_path / name}.db"
        with admin.engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
            connection.execute(text(f"CREATE SCHEMA {name}"))
        url = admin.engine.url.update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.engine.begin() as connection:
            for name in made:
                connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.engine.dispose()


@pytest.fixture
def open_store(fresh_database) -> Iterator[Callable[[str | None], CaseStore]]:
    """Opens stores (on a new empty database unless given a URL), closed after the test."""
    stores: list[CaseStore] = []

    def open_(url: str | None = None) -> CaseStore:
        stores.append(CaseStore(url or fresh_database()))
        return stores[-1]

    yield open_
    for store in stores:
        store.engine.dispose()


def differences(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def reflected(engine: Engine) -> dict:
    """Tables, columns, keys, unique constraints and indexes, as the database reports them."""
    inspector = inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
        }
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


def sent_message(n: int, customer_id: str = "cus_1", **changes) -> dict:
    fields = {
        "case_id": f"case-{n}",
        "customer_id": customer_id,
        "step": "reminder-1",
        "channel": "email",
        "template": "reminder_gentle",
        "recipient": customer_id,
        "subject": "",
        "body": "Hello",
        "status": "sent",
        "step_at": WEEK_AGO + timedelta(days=n),
        "created_at": WEEK_AGO,
    }
    return fields | changes


def store_rows(store: CaseStore) -> None:
    """Rows of the kinds the later revisions index: messages and a billing event, written
    with only the columns they name (an older revision's table has fewer than the models)."""
    event = {
        "provider": "stripe",
        "event_id": "evt_1",
        "type": "invoice.paid",
        "status": "pending",
        "detail": "",
        "invoice_id": "in_1",
        "occurred_at": WEEK_AGO,
        "received_at": WEEK_AGO,
        "deliveries": 0,
        "payload": {},
    }
    messages = [
        sent_message(1),
        sent_message(2),
        sent_message(3, channel="in_app"),
        sent_message(4, status="failed"),
        sent_message(5, customer_id="cus_2"),
        sent_message(-3),  # before the week
    ]
    with store.engine.begin() as connection:
        connection.execute(Message.__table__.insert(), messages)
        connection.execute(WebhookEvent.__table__.insert(), [event])


def assert_rows_are_served(store: CaseStore) -> None:
    assert store.messages_to_customer_since("cus_1", WEEK_AGO, ["email", "sms"]) == 2
    assert store.messages_to_customer_since("cus_1", WEEK_AGO, ["email", "in_app"]) == 3
    assert [e.event_id for e in store.invoice_events_since("in_1", ["invoice.paid"], WEEK_AGO)] == [
        "evt_1"
    ]


# From empty, from the previous revision, from create_all ---------------------------------


def test_an_empty_database_upgrades_to_head_and_matches_the_models(open_store):
    store = open_store()

    assert store.upgrade() == HEAD

    assert revision(store.engine) == HEAD
    assert differences(store.engine) == []
    assert store.upgrade() == HEAD  # every start calls it: nothing left to do


def test_a_database_at_the_previous_revision_upgrades_to_head_keeping_its_rows(open_store):
    store = open_store()
    assert store.upgrade(PREVIOUS) == PREVIOUS
    assert differences(store.engine) != []  # the models are ahead of it
    store_rows(store)

    assert store.upgrade() == HEAD

    assert differences(store.engine) == []
    assert_rows_are_served(store)


def test_a_database_create_all_made_before_migrations_is_stamped_and_upgraded(open_store):
    """Such a database has the first revision's tables and no alembic_version table."""
    store = open_store()
    store.upgrade("0001")
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    store_rows(store)

    assert store.upgrade() == HEAD

    assert differences(store.engine) == []
    assert_rows_are_served(store)


def test_the_tests_create_schema_makes_the_migrated_schema_at_head(open_store):
    created, migrated = open_store(), open_store()

    created.create_schema()
    migrated.upgrade()

    assert reflected(created.engine) == reflected(migrated.engine)
    assert revision(created.engine) == HEAD
    assert created.upgrade() == HEAD  # a command opening a test's store finds nothing to do


def test_the_weekly_cap_count_uses_its_index_on_sqlite(tmp_path):
    store = CaseStore(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    statements = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, parameters, _context, _many: statements.append(
            (statement, parameters)
        ),
    )

    store.messages_to_customer_since("cus_1", WEEK_AGO, ["email", "sms"])

    statement, parameters = statements[-1]
    with store.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    assert "ix_messages_customer_id_channel_status_step_at" in str(plan)
    store.engine.dispose()


def test_sqlite_stores_write_ahead_and_wait_for_a_busy_writer(tmp_path):
    store = CaseStore(f"sqlite:///{tmp_path / 'store.db'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    store.engine.dispose()


# Processes starting together --------------------------------------------------------------

# Upgrades the database named by each line of stdin and prints the revision, or the error.
RACER = """
import sys
from activities.store import CaseStore
for url in sys.stdin:
    store = CaseStore(url.strip())
    try:
        print(store.upgrade(), flush=True)
    except Exception as err:
        print(f"{type(err).__name__}: {err}".replace("\\n", " "), flush=True)
    store.engine.dispose()
"""


def test_two_processes_upgrading_one_fresh_database_at_once_both_succeed(fresh_database):
    """What a worker and a receiver started together do, ten times over: before the lock, one
    of them failed with "table ... already exists" whenever they met."""
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    answers = []
    try:
        for _ in range(10):
            url = fresh_database()
            for racer in racers:  # both are started and waiting: hand them the database at once
                racer.stdin.write(url + "\n")
            for racer in racers:
                racer.stdin.flush()
            answers.append([racer.stdout.readline().strip() for racer in racers])
    finally:
        for racer in racers:
            racer.stdin.close()
            racer.wait(timeout=60)

    assert answers == [[HEAD, HEAD]] * 10
