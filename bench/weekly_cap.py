"""How long the weekly message cap takes to count a customer's messages, before and after the
index of the second migration.

    .venv/bin/python bench/weekly_cap.py [--rows 1000000] [--lookups 100]

Fills a SQLite store at the first revision with `--rows` sent and failed messages of 20,000
customers over a year, then times the count for random customers three ways: loading the
matching rows into Python (what the store did before), counting in SQL without the index, and
counting in SQL once the store is upgraded to the newest revision. Prints medians and ratios.
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import select  # noqa: E402

from activities.store import FIRST_REVISION, CaseStore, Message  # noqa: E402

CUSTOMERS = 20_000
CHANNELS = ["email", "sms", "in_app"]
CAPPED = ["email", "sms"]
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def fill(path: Path, rows: int) -> None:
    """Messages written straight through sqlite3 (executemany), in the store's own format."""
    rng = random.Random(7)
    start = NOW - timedelta(days=365)
    # Formatting a time per row would take most of the run: draw from 100,000 of them.
    instants = [
        (start + timedelta(seconds=rng.randrange(365 * 86400))).strftime("%Y-%m-%d %H:%M:%S.%f")
        for _ in range(100_000)
    ]

    def message(n: int) -> tuple:
        at = rng.choice(instants)
        customer = f"cus_{rng.randrange(CUSTOMERS)}"
        status = "sent" if rng.random() < 0.9 else "failed"
        return (f"case-{n}", customer, "reminder-1", rng.choice(CHANNELS), "reminder_gentle",
                customer, "", "Hello", status, at, at)  # fmt: skip

    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO messages (case_id, customer_id, step, channel, template, recipient,"
            " subject, body, status, step_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (message(n) for n in range(rows)),
        )


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


def median_ms(count: Callable[[str, datetime], int], customers: list[str]) -> float:
    since = NOW - timedelta(days=7)
    times = []
    for customer in customers:
        began = time.perf_counter()
        count(customer, since)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(11)
    customers = [f"cus_{rng.randrange(CUSTOMERS)}" for _ in range(args.lookups)]

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dunning.db"
        store = CaseStore(f"sqlite:///{path}")
        store.upgrade(FIRST_REVISION)
        began = time.perf_counter()
        fill(path, args.rows)
        print(f"{args.rows:,} messages written in {time.perf_counter() - began:.1f} s")

        def in_sql(customer: str, since: datetime) -> int:
            return store.messages_to_customer_since(customer, since, CAPPED)

        python = median_ms(lambda c, s: loaded_in_python(store, c, s), customers)
        scan = median_ms(in_sql, customers)
        began = time.perf_counter()
        store.upgrade()
        print(f"upgraded to the newest revision in {time.perf_counter() - began:.1f} s")
        indexed = median_ms(in_sql, customers)
        store.engine.dispose()

    print(f"median of {args.lookups} weekly counts, one customer each:")
    print(f"  rows loaded into Python, no index  {python:8.3f} ms")
    print(f"  count in SQL, no index             {scan:8.3f} ms")
    print(f"  count in SQL, indexed              {indexed:8.3f} ms")
    print(f"  indexed vs rows loaded: {python / indexed:,.0f}x faster; vs SQL count without the"
          f" index: {scan / indexed:,.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
