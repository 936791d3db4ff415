"""How long the weekly message cap and the conversation's budget take to count a customer's
messages, on SQLite and on PostgreSQL (the bound: 5 ms at one million rows on PostgreSQL).

    .venv/bin/python bench/weekly_cap.py [--rows 1000000] [--lookups 100]
    .venv/bin/python bench/weekly_cap.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/weekly_cap.py --database-url sqlite

Fills a store at the first revision with `--rows` sent and failed messages of 20,000
customers over a year, then times the counts for random customers. On SQLite (`sqlite`: a
temporary file) it times three ways: loading the matching rows into Python (what the store did
before), counting in SQL without the index, and counting in SQL once the store is upgraded to
the newest revision. On PostgreSQL (a `--database-url` server, in a throwaway database it
creates and drops; without one, a PostgreSQL from pgserver) it upgrades first, then times the
weekly cap's count (`messages_to_customer_since`) and the budget's (`message_times_since`),
and prints each query's plan, which must use an index, and the median time PostgreSQL took
to run it (EXPLAIN ANALYZE) beside the median of the store's whole call (connection check,
round trips, this process's share of the machine: the best of three medians, the counts
taking turns). Prints medians and ratios.
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, event, make_url, text  # noqa: E402
from sqlmodel import select  # noqa: E402

from activities.store import FIRST_REVISION, CaseStore, Message  # noqa: E402

CUSTOMERS = 20_000
CHANNELS = ["email", "sms", "in_app"]
CAPPED = ["email", "sms"]
NOW = datetime(2026, 6, 1, tzinfo=UTC)
BOUND_MS = 5.0
COLUMNS = (
    "case_id, customer_id, step, channel, template, recipient, subject, body, status, step_at,"
    " created_at"
)


def messages(rows: int) -> Iterator[tuple]:
    """`rows` messages in the store's own format (times as UTC text both databases read)."""
    rng = random.Random(7)
    start = NOW - timedelta(days=365)
    # Formatting a time per row would take most of the run: draw from 100,000 of them.
    instants = [
        (start + timedelta(seconds=rng.randrange(365 * 86400))).strftime("%Y-%m-%d %H:%M:%S.%f")
        for _ in range(100_000)
    ]
    for n in range(rows):
        at = rng.choice(instants)
        customer = f"cus_{rng.randrange(CUSTOMERS)}"
        status = "sent" if rng.random() < 0.9 else "failed"
        yield (f"case-{n}", customer, "reminder-1", rng.choice(CHANNELS), "reminder_gentle",
               customer, "", "Hello", status, at, at)  # fmt: skip


def fill_sqlite(path: Path, rows: int) -> None:
    """Messages written straight through sqlite3 (executemany)."""
    with sqlite3.connect(path) as connection:
        connection.executemany(
            f"INSERT INTO messages ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", messages(rows)
        )


def fill_postgres(store: CaseStore, rows: int) -> None:
    """Messages written with COPY, then ANALYZE so the planner knows the table's size."""
    connection = store.engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY messages ({COLUMNS}) FROM STDIN") as copy:
                for row in messages(rows):
                    copy.write_row(row[:9] + (row[9] + "+00", row[10] + "+00"))
            cursor.execute("ANALYZE messages")
        connection.commit()
    finally:
        connection.close()


def loaded_in_python(store: CaseStore, customer_id: str, since: datetime) -> int:
    """The count as the store made it before: every matching row loaded, then counted."""
    with store.session() as session:
        rows = session.exec(
            select(Message.id).where(
                Message.customer_id == customer_id,
                Message.channel.in_(CAPPED),
                Message.status == "sent",
                Message.step_at >= since,
            )
        )
        return len(list(rows))


def median_ms(count: Callable[[str, datetime], object], customers: list[str]) -> float:
    since = NOW - timedelta(days=7)
    times = []
    for customer in customers:
        began = time.perf_counter()
        count(customer, since)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def weekly_cap(store: CaseStore) -> Callable[[str, datetime], int]:
    return lambda customer, since: store.messages_to_customer_since(customer, since, CAPPED)


def budget(store: CaseStore) -> Callable[[str, datetime], list[datetime]]:
    return lambda customer, since: store.message_times_since(customer, since)


def on_sqlite(rows: int, customers: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dunning.db"
        store = CaseStore(f"sqlite:///{path}")
        store.upgrade(FIRST_REVISION)
        began = time.perf_counter()
        fill_sqlite(path, rows)
        print(f"SQLite: {rows:,} messages written in {time.perf_counter() - began:.1f} s")
        python = median_ms(lambda c, s: loaded_in_python(store, c, s), customers)
        scan = median_ms(weekly_cap(store), customers)
        began = time.perf_counter()
        store.upgrade()
        print(f"upgraded to the newest revision in {time.perf_counter() - began:.1f} s")
        indexed = median_ms(weekly_cap(store), customers)
        spent = median_ms(budget(store), customers)
        store.engine.dispose()
    print(f"median of {len(customers)} weekly counts, one customer each:")
    print(f"  rows loaded into Python, no index  {python:8.3f} ms")
    print(f"  count in SQL, no index             {scan:8.3f} ms")
    print(f"  count in SQL, indexed              {indexed:8.3f} ms")
    print(f"  conversation budget, indexed       {spent:8.3f} ms")
    print(f"  indexed vs rows loaded: {python / indexed:,.0f}x faster; vs SQL count without the"
          f" index: {scan / indexed:,.0f}x")  # fmt: skip


def sent_by(store: CaseStore, count: Callable[[str, datetime], object], customer: str) -> tuple:
    """The statement and parameters `count` sends for `customer`, caught on their way."""
    sent: list[tuple[str, object]] = []

    def catch(_conn, _cursor, statement, parameters, _context, _many) -> None:
        sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", catch)
    try:
        count(customer, NOW - timedelta(days=7))
    finally:
        event.remove(store.engine, "before_cursor_execute", catch)
    return sent[-1]


def explain(store: CaseStore, sent: tuple, options: str = "") -> list:
    """PostgreSQL's EXPLAIN of a caught statement."""
    statement, parameters = sent
    with store.engine.connect() as connection:
        return [
            row[0]
            for row in connection.exec_driver_sql(f"EXPLAIN {options}{statement}", parameters)
        ]


def server_ms(
    store: CaseStore, count: Callable[[str, datetime], object], customers: list[str]
) -> float:
    """The median time PostgreSQL took to run the count (EXPLAIN ANALYZE's execution time):
    the query alone, without the round trips and the client's share of a busy machine."""
    times = []
    for customer in customers:
        [analyzed] = explain(store, sent_by(store, count, customer), "(ANALYZE, FORMAT JSON) ")
        times.append(analyzed[0]["Execution Time"])
    return statistics.median(times)


def on_postgres(url: str, rows: int, customers: list[str]) -> None:
    store = CaseStore(url)
    store.upgrade()
    began = time.perf_counter()
    fill_postgres(store, rows)
    print(f"PostgreSQL: {rows:,} messages written in {time.perf_counter() - began:.1f} s")
    figures = []
    counts = [("weekly cap", weekly_cap(store)), ("conversation budget", budget(store))]
    # Timed turn by turn, so a busy moment of the machine weighs on both counts alike.
    calls = [median_ms(count, customers) for _ in range(3) for _, count in counts]
    for n, (label, count) in enumerate(counts):
        shown = "\n".join(explain(store, sent_by(store, count, customers[0])))
        indexed = "Index" in shown and "Seq Scan" not in shown
        print(f"plan of the {label} count ({'indexed' if indexed else 'NOT indexed'}):")
        print("  " + shown.replace("\n", "\n  "))
        figures.append((label, min(calls[n :: len(counts)]), server_ms(store, count, customers)))
    store.engine.dispose()
    print(f"median of {len(customers)} counts at {rows:,} rows, one customer each:")
    for label, client, server in figures:
        print(f"  {label:20} {server:7.3f} ms in PostgreSQL ({server / BOUND_MS:.2f}x the"
              f" {BOUND_MS:g} ms bound: {'meets' if server <= BOUND_MS else 'misses'}),"
              f" {client:.3f} ms for the store's call")  # fmt: skip


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new database on the server `server_url` names, dropped on exit: the bench never
    touches the tables of the database it was given."""
    url = make_url(server_url)
    name = f"bench_weekly_cap_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def pgserver_database() -> Iterator[str]:
    """A PostgreSQL from the pgserver wheel in a temporary directory (tests/support/harness)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    folder = tempfile.mkdtemp(prefix="dunning-bench-pg-")
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
        try:
            yield (
                make_url(server.get_uri())
                .set(drivername="postgresql+psycopg")
                .render_as_string(hide_password=False)
            )
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (a throwaway database is made on it), or `sqlite`; "
        "default: a PostgreSQL started from pgserver",
    )
    args = parser.parse_args()
    rng = random.Random(11)
    customers = [f"cus_{rng.randrange(CUSTOMERS)}" for _ in range(args.lookups)]
    if args.database_url == "sqlite":
        on_sqlite(args.rows, customers)
        return
    if args.database_url is None:
        with pgserver_database() as url:
            on_postgres(url, args.rows, customers)
        return
    url = make_url(args.database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    with throwaway_database(url.render_as_string(hide_password=False)) as database:
        on_postgres(database, args.rows, customers)


if __name__ == "__main__":
    main()
