"""What one scrape of /metrics costs: the grouped count of open cases by status in the store,
and the whole exposition (counters, process, open cases) as Prometheus reads it.

    .venv/bin/python bench/metrics_scrape.py [--cases 100000] [--scrapes 50]

Fills a SQLite store with `--cases` cases (a fifth of them closed) in the store's own format,
then times `--scrapes` expositions. Prints the median and the p99 per scrape, and the median
per 1,000 cases. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import generate_latest  # noqa: E402

from activities import metrics  # noqa: E402
from activities.store import CaseStore  # noqa: E402

STATUSES = ["active", "active", "active", "paused", "awaiting_payment_method", "disputed"]


def fill(path: Path, cases: int) -> None:
    """Cases written straight through sqlite3 (executemany): open ones by status, and a fifth
    closed (recovered), which the count must skip."""
    rng = random.Random(7)
    rows = []
    for number in range(cases):
        closed = number % 5 == 0
        status = "recovered" if closed else rng.choice(STATUSES)
        at = "2026-01-05 09:00:00.000000"
        rows.append(
            (f"in_{number}", f"in_{number}", f"cus_{number % 20_000}", status, 4980, 0, "usd")
            + ("standard", 1, at, at if closed else None, at)
        )
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO cases (case_id, invoice_id, customer_id, status, amount_due, "
            "amount_recovered, currency, policy, policy_version, opened_at, closed_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dunning.db"
        store = CaseStore(f"sqlite:///{path}")
        store.upgrade()
        fill(path, args.cases)
        exposed = metrics.registry(store)
        generate_latest(exposed)  # warm: connections, statement cache
        took = []
        for _ in range(args.scrapes):
            started = time.perf_counter()
            generate_latest(exposed)
            took.append(time.perf_counter() - started)
    took.sort()
    median = statistics.median(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"{args.cases:,} cases ({args.cases * 4 // 5:,} open), {args.scrapes} scrapes (SQLite)")
    print(f"  scrape median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"  {median * 1000 / (args.cases / 1000):.3f} ms per 1,000 cases")


if __name__ == "__main__":
    main()
