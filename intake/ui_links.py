"""Saved views of the Temporal UI for operators: each a workflow-list link whose visibility
query picks cases by the search attributes of workflows/search.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from workflows.models import CaseStatus
from workflows.search import CUSTOMER_ID, DUNNING_STATUS

CASES = 'WorkflowType = "DunningWorkflow"'


def ui_views(now: datetime, customer_id: str | None = None) -> list[tuple[str, str]]:
    """(title, visibility query) of each saved view, with "today" and "this week" (from
    Monday) in UTC as of `now`."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())

    def status(value: CaseStatus) -> str:
        return f'{CASES} AND {DUNNING_STATUS.name} = "{value.value}"'

    def since(moment: datetime) -> str:
        return f'CloseTime >= "{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}"'

    views = [
        ("open cases", f'{CASES} AND ExecutionStatus = "Running"'),
        (
            f"handed to collections this week (since {monday:%a %Y-%m-%d})",
            f"{status(CaseStatus.COLLECTIONS)} AND {since(monday)}",
        ),
        (
            f"recovered today ({today:%Y-%m-%d} UTC)",
            f"{status(CaseStatus.RECOVERED)} AND {since(today)}",
        ),
        ("paused by support", status(CaseStatus.PAUSED)),
        ("blocked: waiting for an operator", status(CaseStatus.BLOCKED)),
        ("waiting for a new card", status(CaseStatus.AWAITING_PAYMENT_METHOD)),
        ("disputed", status(CaseStatus.DISPUTED)),
    ]
    if customer_id is not None:
        views.append((f"customer {customer_id}", f'{CUSTOMER_ID.name} = "{customer_id}"'))
    return views


def ui_link(ui_url: str, namespace: str, query: str) -> str:
    """The UI's workflow list for `namespace`, filtered by `query`."""
    return (
        f"{ui_url}/namespaces/{quote(namespace, safe='')}/workflows?query={quote(query, safe='')}"
    )
