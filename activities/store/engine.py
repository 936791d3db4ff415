"""The store's database: the engine (SQLite by default, any SQLAlchemy URL, PostgreSQL in
production, through `DATABASE_URL`), its sessions, and the schema's migrations."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine, select

log = logging.getLogger("dunning.store")
# Alembic's INFO lines (plugins, dialect) come on every start; `upgrade` logs what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).parent.parent / "migrations"
# The revision a database made by `create_all`, before migrations existed, is at.
FIRST_REVISION = "0001"
# Any fixed number, the same in every process that migrates a PostgreSQL database.
MIGRATION_LOCK_KEY = 7_464_100_001
# How long a SQLite writer waits for another process's write to finish before "locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
POSTGRES_CONNECT_TIMEOUT_S = 10


def migrations(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (no alembic.ini to ship or find), migrating
    `connection`, or the store `DATABASE_URL` names when none is given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


class Database:
    """The engine every part of the store shares; safe to share between activity threads."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options: dict = {}
        if database_url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False}
        elif database_url.startswith("postgresql"):
            # A dropped connection is replaced, not handed to an activity; an unreachable
            # server fails the start in seconds instead of hanging.
            options["pool_pre_ping"] = True
            options["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        # hide_parameters: a database error must not carry an email or a phone into a log.
        self.engine: Engine = create_engine(database_url, hide_parameters=True, **options)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def create_schema(self) -> None:
        """Create the newest schema straight from the models and stamp it so: the tests'
        throwaway stores. Every real start uses `upgrade`; tests/activities/test_migrations.py
        proves both give the same schema."""
        with self.engine.begin() as connection:
            SQLModel.metadata.create_all(connection)
            command.stamp(migrations(connection), "head")

    def upgrade(self, revision: str = "head") -> str:
        """Migrate the schema to `revision` (the newest by default); the revision it is at.

        Every start calls it. Processes starting together take turns under a lock (a
        PostgreSQL advisory lock, a file lock beside a SQLite file), so a later one finds
        nothing left to do. A database made by `create_all` before migrations existed is
        recognised and stamped at the first revision, then upgraded."""
        with self._migration_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; migrations run inside it.
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            config = migrations(connection)
            version = MigrationContext.configure(connection)
            before = version.get_current_revision()
            if before is None and inspect(connection).has_table("cases"):
                command.stamp(config, FIRST_REVISION)  # made by create_all
                before = FIRST_REVISION
            command.upgrade(config, revision)
            after = version.get_current_revision()
            if after != before:
                log.info("store schema upgraded from %s to %s", before or "empty", after)
            return after

    def _migration_lock(self) -> AbstractContextManager[None]:
        """Across processes on SQLite (PostgreSQL's lock is taken in the transaction)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return nullcontext()
        return _file_lock(Path(f"{database}.lock"))

    def session(self) -> Session:
        """A new session; use it as a context manager."""
        return Session(self.engine, expire_on_commit=False)

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers go on while one process writes; the busy timeout makes a second
    writer wait its turn instead of failing with "database is locked". In WAL mode
    synchronous=NORMAL syncs at checkpoints instead of at every commit: the file cannot be
    corrupted, only the last commits can be lost to a power cut (not to a crash of the
    process), and a writer holds the lock a fraction as long, so a worker's activity threads
    stop queueing on it."""
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` held for the block, by this process alone."""
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
        yield
