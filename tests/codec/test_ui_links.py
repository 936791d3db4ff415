"""`dunning ui-links`: saved views of the Temporal UI built from the configured UI address,
namespace and the case search attributes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from intake.ui_links import ui_link, ui_views
from tests.support.cli import cli_env
from tests.support.cli import dunning as run_dunning
from tests.support.harness import Dunning, status_when
from workflows.models import CaseStatus
from workflows.search import SEARCH_ATTRIBUTES

THURSDAY = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)


def test_views_pick_cases_by_status_and_close_time_in_utc() -> None:
    views = dict(ui_views(THURSDAY, customer_id="cus_ann"))
    collections = views["handed to collections this week (since Mon 2026-11-30)"]
    assert collections == (
        'WorkflowType = "DunningWorkflow" AND DunningStatus = "collections" '
        'AND CloseTime >= "2026-11-30T00:00:00Z"'
    )
    assert views["recovered today (2026-12-03 UTC)"].endswith(
        'DunningStatus = "recovered" AND CloseTime >= "2026-12-03T00:00:00Z"'
    )
    assert views["paused by support"].endswith('DunningStatus = "paused"')
    assert views["blocked: waiting for an operator"].endswith('DunningStatus = "blocked"')
    assert views["customer cus_ann"] == 'CustomerId = "cus_ann"'
    registered = {key.name for key in SEARCH_ATTRIBUTES}
    assert {"DunningStatus", "CustomerId"} <= registered


def test_a_link_opens_the_namespace_workflow_list_with_the_query_encoded() -> None:
    query = 'DunningStatus = "paused" AND CloseTime >= "2026-12-03T00:00:00Z"'
    link = ui_link("https://ui.example:8233", "billing/prod", query)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("https", "ui.example:8233")
    assert parts.path == "/namespaces/billing%2Fprod/workflows"
    assert " " not in link and '"' not in link
    assert parse_qs(parts.query) == {"query": [query]}


@pytest.mark.parametrize(("currency", "major"), [("USD", 49.8), ("JPY", 4980.0), ("KWD", 4.98)])
async def test_cases_show_the_amount_due_in_major_units_beside_minor_units(
    dunning: Dunning, currency: str, major: float
) -> None:
    case = await dunning.open_case("pm_sim_recovers_on_attempt_2", currency=currency)
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda v: v.status is CaseStatus.ACTIVE, "the start")
        attributes = await dunning.search_attributes(handle)
    assert (attributes["AmountDue"], attributes["AmountDueMajor"]) == (4980, major)


def test_the_command_prints_links_for_the_configured_ui_and_namespace(tmp_path: Path) -> None:
    env = cli_env(tmp_path, TEMPORAL_UI_URL="https://cloud.example/", TEMPORAL_NAMESPACE="ops")
    done = run_dunning(env, "ui-links", "--customer", "cus_ann", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    links = [line.strip() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(links) == 8
    assert all(
        link.startswith("https://cloud.example/namespaces/ops/workflows?query=") for link in links
    )
    assert "customer cus_ann:" in done.stdout
    assert links[-1].endswith("CustomerId%20%3D%20%22cus_ann%22")
