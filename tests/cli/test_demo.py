"""`dunning demo` (and `dunning worker --demo`) prints a recovery-page link per demo case, signed
as the worker signs the links in that case's messages, so the customer's side can be tried."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from temporalio.testing import WorkflowEnvironment

from activities.notify.links import verify_token
from intake.client import case_run_status
from intake.demo import DEMO_CUSTOMERS

DUNNING = str(Path(sys.executable).parent / "dunning")
SECRET = "demo-test-self-service-secret-5e0a"
PAGE = re.compile(r"^  (?P<name>.+)'s recovery page: (?P<url>\S+)$", re.M)


async def test_the_demo_prints_each_cases_recovery_page(env: WorkflowEnvironment, tmp_path: Path):
    shell = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "SELF_SERVICE_SECRET": SECRET,
        "PUBLIC_BASE_URL": "http://demo.example:8123",
    }

    done = await asyncio.to_thread(
        subprocess.run,
        [DUNNING, "demo"],
        env=shell,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    pages = {m["name"]: m["url"] for m in PAGE.finditer(done.stdout)}
    assert sorted(pages) == sorted(name for _, name, *_ in DEMO_CUSTOMERS), done.stdout
    for key, name, *_ in DEMO_CUSTOMERS:
        url = urlsplit(pages[name])
        assert f"{url.scheme}://{url.netloc}{url.path}" == "http://demo.example:8123/recover"
        token = parse_qs(url.query)["token"][0]
        case_id = verify_token(token, SECRET, datetime.now(UTC))
        assert re.fullmatch(rf"in_demo_{key}_\d{{6}}", case_id)
        assert await case_run_status(env.client, f"dunning-{case_id}") is not None
    # Eve's two invoices: one conversation, one account page for both.
    account = re.search(r"^  her account page: (\S+)$", done.stdout, re.M)
    assert account, done.stdout
    url = urlsplit(account.group(1))
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://demo.example:8123/account"
    customer_id = verify_token(
        parse_qs(url.query)["token"][0], SECRET, datetime.now(UTC), use="account"
    )
    assert re.fullmatch(r"cus_demo_eve_\d{6}", customer_id)
    suffix = customer_id.rpartition("_")[2]
    for n in (1, 2):
        case = f"dunning-in_demo_eve_{n}_{suffix}"
        assert await case_run_status(env.client, case) is not None
