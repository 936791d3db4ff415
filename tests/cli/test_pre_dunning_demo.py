"""`dunning worker --demo` (what `make run` runs) leaves the daily pre-dunning schedule in
place and runs it once: the demo customer whose card expires this month gets her notice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.store import CaseStore
from workflows.pre_dunning import SCHEDULE_ID

DUNNING = str(Path(sys.executable).parent / "dunning")


async def test_the_demo_worker_creates_the_schedule_and_its_run_sends_the_card_notice(
    dev_server: WorkflowEnvironment, tmp_path: Path
):
    client = dev_server.client
    database_url = f"sqlite:///{tmp_path / 'dunning.db'}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "TASK_QUEUE": "pre-dunning-demo",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [DUNNING, "worker", "--demo"], cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        store = CaseStore(database_url)
        deadline = time.monotonic() + 90
        notices = []
        while not notices:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
            if "Pre-dunning:" in log.read_text():
                notices = store.messages_with_customers(["card_expiring"])

        described = await client.get_schedule_handle(SCHEDULE_ID).describe()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        try:
            await client.get_schedule_handle(SCHEDULE_ID).delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    [(email, customer)] = [(m, c) for m, c in notices if m.channel == "email"]
    assert customer.name == "Dee Walker"
    assert email.case_id == f"card-{customer.payment_method}"
    assert "Visa ending in 4242" in email.subject
    assert described.schedule.action.task_queue == "pre-dunning-demo"
    assert "Pre-dunning: Dee's card expires at the end of" in log.read_text()
