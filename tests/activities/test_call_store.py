"""Call tasks and call attempts in the store, on SQLite and on PostgreSQL; and the activities
that create a task with its best time and close a finished case's tasks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.dunning import DunningActivities
from activities.store import CallTaskStatus, CaseStore, CustomerProfile
from config.settings import Settings
from workflows.contact_hours import ContactHours
from workflows.models import CallTaskRequest, CaseRecord, CaseStatus

CREATED = datetime(2026, 11, 9, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York


def _task(store: CaseStore, case_id: str = "case-1", step: str = "call-1", **changes):
    fields = {
        "case_id": case_id,
        "customer_id": "cus_1",
        "step": step,
        "max_attempts": 3,
        "call_after": CREATED,
    }
    return store.create_call_task(**(fields | changes))


def test_a_task_is_created_once_per_case_and_step(store: CaseStore) -> None:
    first = _task(store)
    again = _task(store, call_after=CREATED + timedelta(days=1), max_attempts=5)
    assert again.id == first.id
    assert (again.call_after, again.max_attempts) == (CREATED, 3)  # the first try's, unchanged
    other = _task(store, step="call-2")
    assert other.id != first.id
    assert first.status == CallTaskStatus.OPEN and first.attempts == 0


def test_concurrent_creations_of_one_task_store_one_row(store: CaseStore) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = set(pool.map(lambda _: _task(store).id, range(8)))
    assert len(ids) == 1
    assert len(store.call_tasks(include_closed=True)) == 1


def test_open_tasks_are_listed_soonest_first_and_by_customer(store: CaseStore) -> None:
    late = _task(store, case_id="case-late", call_after=CREATED + timedelta(hours=5))
    soon = _task(store, case_id="case-soon")
    theirs = _task(store, case_id="case-other", customer_id="cus_2")
    store.cancel_call_tasks("case-late")
    assert [t.id for t in store.call_tasks()] == [soon.id, theirs.id]
    assert [t.id for t in store.call_tasks(include_closed=True)] == [soon.id, theirs.id, late.id]
    assert [t.id for t in store.call_tasks(customer_id="cus_2")] == [theirs.id]


def test_a_call_is_stored_with_what_became_of_its_task(store: CaseStore) -> None:
    task = _task(store)
    later = CREATED + timedelta(hours=7)
    kept = store.record_call(task.id, CREATED, "no_answer", "kim", "rang out", True, later)
    assert (kept.status, kept.attempts, kept.call_after) == (CallTaskStatus.OPEN, 1, later)
    assert (kept.last_outcome, kept.actor, kept.note) == ("no_answer", "kim", "rang out")
    done = store.record_call(task.id, later, "promise", "lee", "pays Friday", False, later)
    assert (done.status, done.attempts, done.actor) == (CallTaskStatus.DONE, 2, "lee")
    assert store.call_task(task.id).status == CallTaskStatus.DONE
    with pytest.raises(ValueError, match=f"call task {task.id} is already done"):
        store.record_call(task.id, later, "promise", "lee", "", False, later)
    with pytest.raises(ValueError, match="no call task 999"):
        store.record_call(999, later, "promise", "lee", "", False, later)


def test_a_task_cancelled_while_its_call_was_logged_still_takes_the_call(store) -> None:
    # The call's own payment finished the case, whose record cancelled the task first.
    paid, unanswered = _task(store), _task(store, step="call-2")
    store.cancel_call_tasks("case-1")
    done = store.record_call(paid.id, CREATED, "paid", "kim", "", False, CREATED)
    assert (done.status, done.attempts) == (CallTaskStatus.DONE, 1)
    kept = store.record_call(unanswered.id, CREATED, "no_answer", "kim", "", True, CREATED)
    assert (kept.status, kept.attempts) == (CallTaskStatus.CANCELLED, 1)
    assert len(store.calls_to_customer_since("cus_1", CREATED - timedelta(days=1))) == 2


def test_calls_are_counted_per_customer_across_their_cases(store: CaseStore) -> None:
    one, two = _task(store, case_id="case-1"), _task(store, case_id="case-2")
    theirs = _task(store, case_id="case-3", customer_id="cus_2")
    times = [CREATED + timedelta(days=d) for d in (0, 1, 2)]
    store.record_call(one.id, times[0], "no_answer", "kim", "", True, CREATED)
    store.record_call(two.id, times[1], "voicemail", "kim", "", True, CREATED)
    store.record_call(one.id, times[2], "no_answer", "kim", "", True, CREATED)
    store.record_call(theirs.id, times[2], "no_answer", "kim", "", True, CREATED)
    assert store.calls_to_customer_since("cus_1", CREATED - timedelta(days=7)) == times
    # The window is open at its start: a call exactly 7 days old no longer counts.
    assert store.calls_to_customer_since("cus_1", times[0]) == times[1:]


def test_cancelling_closes_only_the_cases_open_tasks(store: CaseStore) -> None:
    open_, done = _task(store), _task(store, step="call-2")
    store.record_call(done.id, CREATED, "refused", "kim", "", False, CREATED)
    other = _task(store, case_id="case-2")
    assert store.cancel_call_tasks("case-1") == 1
    assert store.call_task(open_.id).status == CallTaskStatus.CANCELLED
    assert store.call_task(done.id).status == CallTaskStatus.DONE
    assert store.call_task(other.id).status == CallTaskStatus.OPEN
    assert store.cancel_call_tasks("case-1") == 0


# The activities ------------------------------------------------------------------------------


@pytest.fixture
def activities(tmp_path: Path) -> DunningActivities:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)
    return DunningActivities.from_settings(settings)


def _request(**changes) -> CallTaskRequest:
    fields = {
        "case_id": "case-1",
        "invoice_id": "in_1",
        "customer_id": "cus_1",
        "step": "call-1",
        "max_attempts": 3,
        "contact_hours": ContactHours(),
        "at": datetime(2026, 11, 10, 6, 0, tzinfo=UTC),  # 01:00 in New York
    }
    return CallTaskRequest(**(fields | changes))


def test_the_activity_stores_the_task_at_the_customers_best_hour_once(activities) -> None:
    store = activities.store
    store.upsert_customer(
        CustomerProfile(customer_id="cus_1", phone="+12125550123", time_zone="America/New_York")
    )
    created = activities.create_call_task(_request())
    assert created.call_after == datetime(2026, 11, 10, 15, 0, tzinfo=UTC)  # 10:00 local
    assert activities.create_call_task(_request()) == created  # a retried activity
    assert len(store.call_tasks()) == 1


def test_the_activity_puts_the_task_after_the_customers_seventh_call(activities) -> None:
    store = activities.store
    store.upsert_customer(CustomerProfile(customer_id="cus_1", time_zone="America/New_York"))
    earlier = _task(store, case_id="case-0")
    first = datetime(2026, 11, 5, 15, 0, tzinfo=UTC)  # Thursday 10:00 in New York
    for i in range(7):
        store.record_call(earlier.id, first + timedelta(hours=i), "no_answer", "k", "", True, first)
    created = activities.create_call_task(_request())
    assert created.call_after == first + timedelta(days=7)


def test_recording_a_finished_case_cancels_its_open_tasks(activities) -> None:
    store = activities.store
    task = _task(store)
    record = CaseRecord(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        status=CaseStatus.ACTIVE,
        amount_due=4900,
        amount_recovered=0,
        currency="USD",
        policy="standard",
        policy_version=1,
        opened_at=CREATED,
    )
    activities.record(record)
    assert store.call_task(task.id).status == CallTaskStatus.OPEN
    recovered = record.model_copy(
        update={"status": CaseStatus.RECOVERED, "closed_at": CREATED, "amount_due": 0}
    )
    activities.record(recovered)
    assert store.call_task(task.id).status == CallTaskStatus.CANCELLED
