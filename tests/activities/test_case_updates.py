"""A step after a case's opening writes a `CaseUpdate`: the row's standing and its new audit
lines, on the row the opening wrote whole (`CaseRecord`), whose ids and dates it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.store import CaseStore
from workflows.models import CaseRecord, CaseStatus, CaseUpdate, TimelineEntry

OPENED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def line(seq: int, kind: str) -> TimelineEntry:
    return TimelineEntry(seq=seq, at=OPENED + timedelta(hours=seq), kind=kind)


def test_an_update_changes_the_opened_row_and_adds_its_lines_once(store: CaseStore) -> None:
    store.record_case(
        CaseRecord(
            case_id="case-1",
            invoice_id="in_1",
            customer_id="cus_1",
            amount_due=4900,
            amount_recovered=0,
            currency="USD",
            status=CaseStatus.ACTIVE,
            policy="standard",
            policy_version=1,
            opened_at=OPENED,
            failed_at=OPENED,
            entries=[line(1, "opened")],
        )
    )
    closed = OPENED + timedelta(days=3)
    update = CaseUpdate(
        case_id="case-1",
        currency="USD",
        status=CaseStatus.RECOVERED,
        amount_due=0,
        amount_recovered=4900,
        closed_at=closed,
        entries=[line(2, "charge_approved"), line(3, "recovered")],
    )

    store.record_case(update)
    store.record_case(update)  # a retried activity

    row = store.get_case("case-1")
    assert (row.status, row.amount_due, row.amount_recovered) == ("recovered", 0, 4900)
    assert row.closed_at == closed
    assert (row.invoice_id, row.policy, row.opened_at, row.failed_at) == (
        "in_1",
        "standard",
        OPENED,
        OPENED,
    )
    assert [e.kind for e in store.case_events("case-1")] == [
        "opened",
        "charge_approved",
        "recovered",
    ]


def test_an_update_of_a_case_never_opened_is_refused(store: CaseStore) -> None:
    update = CaseUpdate(
        case_id="case-404", currency="USD", status="active", amount_due=1, amount_recovered=0
    )

    with pytest.raises(LookupError, match="case-404"):
        store.record_case(update)
    assert store.get_case("case-404") is None
