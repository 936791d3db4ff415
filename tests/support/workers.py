"""Worker processes as an operator runs them (`python worker.py`), a policy fast enough that a
whole case takes seconds of real time on the dev server, and what several workers share: a
PostgreSQL database of their own and the outbox's log of what was sent.

Used by tests/cluster and tests/workflow/test_end_to_end.py, and by bench/load.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from activities.store import CaseStore
from config.settings import CONFIG_DIR
from intake.events import BillingEvent

ROOT = Path(__file__).resolve().parents[2]

FAST_POLICY = """
name = "fast"
version = 1
retries = ["PT3S", "PT6S", "PT9S"]
min_retry_gap = "PT1S"
retry_after_method_update = "PT1S"
max_charge_attempts = 5
collections_after = "PT14S"

[contact_hours]
enabled = false

[[reminders]]
after = "PT0S"
tone = "gentle"
channels = ["email", "in_app"]

[[reminders]]
after = "PT4S"
tone = "firm"
channels = ["email", "sms"]

[[reminders]]
after = "PT11S"
tone = "final"
channels = ["email", "sms", "in_app"]

[outcome_messages]
recovered = ["email"]
collections = ["email"]
"""


def fast_policy_files(directory: Path) -> dict[str, str]:
    """Write the fast policy (beside the standard one) and a segment that gives every case
    the fast one under `directory`; the settings that point a worker at them."""
    policies = directory / "policies"
    policies.mkdir()
    (policies / "fast-v1.toml").write_text(FAST_POLICY)
    (policies / "standard-v1.toml").write_text(
        (CONFIG_DIR / "policies/standard-v1.toml").read_text()
    )
    segments = directory / "segments.toml"
    segments.write_text('[[segments]]\nname = "all"\npolicy = "fast"\n')
    return {"POLICIES_DIR": str(policies), "SEGMENTS_FILE": str(segments)}


class WorkerProcess:
    """`python worker.py` in a subprocess, its output kept in a file for inspection."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                cwd=log.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_polling(self, within: float = 60) -> None:
        """Block until the worker says it polls its task queue; fail if it dies first."""
        deadline = time.monotonic() + within
        while "Worker polling" not in self.log.read_text():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"no worker polling after {within}s"
            time.sleep(0.2)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def own_database(server_url: str, prefix: str = "cluster") -> Iterator[str]:
    """A new database on the PostgreSQL of `server_url`, migrated once (as an operator runs
    `dunning db upgrade` before starting workers), dropped when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    store = CaseStore(url)
    try:
        store.upgrade()
        yield url
    finally:
        store.engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def billing_event(invoice: str, payment_method: str) -> BillingEvent:
    """A failed payment of $25 for a customer of its own, reachable by email, SMS and in-app."""
    return BillingEvent.model_validate_json(
        json.dumps(
            {
                "invoice_id": invoice,
                "customer": {
                    "customer_id": f"cus_{invoice}",
                    "name": "Dana Ito",
                    "email": f"{invoice}@example.com",
                    "phone": "+15555550123",
                    "payment_method": payment_method,
                },
                "amount_due": 2500,
                "currency": "usd",
                "decline_code": "insufficient_funds",
            }
        )
    )


def outbox_sends(*logs: Path) -> Counter[str]:
    """How often each message key (case:step:channel) reached the outbox, across worker logs."""
    sends: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            if " dunning.outbox outbox " in line:
                sends[line.split(" outbox ")[1].split()[1].rstrip(":")] += 1
    return sends
