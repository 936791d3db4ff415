"""Signed outbound webhooks: the outbox on SQLite and PostgreSQL, deliveries to a real local
receiver that checks signatures, backoff and the delivery log, and a restarted worker that
delivers what an earlier one could not, exactly once."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from activities import signing
from activities.outbound import (
    BACKOFF,
    MAX_ATTEMPTS,
    EventPublisher,
    SignatureError,
    after_attempt,
    verify_signature,
)
from activities.store import CaseStore, OutboundEvent, OutboundEventStatus
from config.settings import Settings
from tests.support.fake_product import SECRET, FakeProduct
from workflows.case_events import CaseEvent, CaseEventData, CaseEventType, event_id

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def an_event(case_id: str = "in_1", kind: CaseEventType = CaseEventType.OPENED) -> CaseEvent:
    data = CaseEventData(
        case_id=case_id,
        invoice_id=case_id,
        customer_id="cus_1",
        amount_due=4900,
        amount_paid=0,
        currency="USD",
        status="active",
        policy="standard v1",
    )
    return CaseEvent(id=event_id(case_id, kind, 1), type=kind, created=T0, data=data)


def a_row(event: CaseEvent, at: datetime = T0) -> OutboundEvent:
    return OutboundEvent(
        event_id=event.id,
        case_id=event.data.case_id,
        type=event.type.value,
        created_at=event.created,
        next_attempt_at=at,
        payload=event.model_dump(mode="json"),
    )


def closed_port() -> int:
    """A port nothing listens on (connections are refused) until a test serves on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sqlite_store(tmp_path) -> CaseStore:
    store = CaseStore(f"sqlite:///{tmp_path / 'outbound.db'}")
    store.create_schema()
    return store


# The outbox, on both databases -------------------------------------------------------------


def test_an_event_is_stored_once_per_id(store: CaseStore):
    first, stored = store.store_outbound_event(a_row(an_event()))
    again, stored_again = store.store_outbound_event(a_row(an_event()))
    assert (stored, stored_again) == (True, False)
    assert again.id == first.id
    assert [e.event_id for e in store.find_outbound_events()] == ["in_1:case.opened:1"]


def test_a_due_event_is_claimed_by_one_delivery_only(store: CaseStore):
    store.store_outbound_event(a_row(an_event()))
    [due] = store.outbound_events_due(T0)
    assert store.claim_outbound_event(due, T0 + timedelta(minutes=2))
    assert not store.claim_outbound_event(due, T0 + timedelta(minutes=2))  # another loop
    assert store.outbound_events_due(T0 + timedelta(minutes=1)) == []
    assert len(store.outbound_events_due(T0 + timedelta(minutes=2))) == 1  # the lease lapsed


def test_events_are_found_by_status_and_case_newest_first(store: CaseStore):
    for case_id in ("in_1", "in_2"):
        store.store_outbound_event(a_row(an_event(case_id)))
    store.store_outbound_event(a_row(an_event("in_1", CaseEventType.PAUSED)))
    assert [e.type for e in store.find_outbound_events(case_id="in_1")] == [
        "case.paused",
        "case.opened",
    ]
    assert store.find_outbound_events(statuses=["delivered"]) == []
    assert len(store.find_outbound_events(statuses=["pending"], limit=2)) == 2


# Deliveries ----------------------------------------------------------------------------------


def test_an_event_arrives_signed_and_its_attempt_is_logged(sqlite_store: CaseStore):
    with FakeProduct() as product:
        publisher = EventPublisher(sqlite_store, product.url, SECRET)
        assert publisher.publish(an_event()) is OutboundEventStatus.DELIVERED
    assert product.ids == ["in_1:case.opened:1"]
    assert product.events[0]["data"]["amount_due"] == 4900
    [attempt] = sqlite_store.outbound_deliveries("in_1:case.opened:1")
    assert (attempt.status_code, attempt.error) == (200, "")
    assert attempt.duration_ms >= 0


def test_a_retried_activity_never_delivers_twice(sqlite_store: CaseStore):
    with FakeProduct() as product:
        publisher = EventPublisher(sqlite_store, product.url, SECRET)
        publisher.publish(an_event())
        assert publisher.publish(an_event()) is OutboundEventStatus.DELIVERED
    assert product.requests == 1


def test_a_failing_receiver_is_retried_after_backoff_and_every_attempt_is_logged(
    sqlite_store: CaseStore,
):
    clock = Clock()
    with FakeProduct() as product:
        product.fail_next = 2
        publisher = EventPublisher(sqlite_store, product.url, SECRET, clock=clock)
        assert publisher.publish(an_event()) is OutboundEventStatus.PENDING
        row = sqlite_store.outbound_event("in_1:case.opened:1")
        assert row.next_attempt_at == T0 + BACKOFF[0]
        clock.now = T0 + timedelta(seconds=59)
        assert publisher.deliver_due() == []  # not yet
        clock.now = T0 + BACKOFF[0]
        [second] = publisher.deliver_due()
        assert (second.status, second.next_attempt_at) == ("pending", clock.now + BACKOFF[1])
        clock.now += BACKOFF[1]
        [third] = publisher.deliver_due()
    assert third.status == OutboundEventStatus.DELIVERED
    log = sqlite_store.outbound_deliveries("in_1:case.opened:1")
    assert [(a.status_code, a.error) for a in log] == [
        (503, "HTTP 503"),
        (503, "HTTP 503"),
        (200, ""),
    ]
    assert product.ids == ["in_1:case.opened:1"]


def test_backoff_grows_then_gives_up():
    waits = []
    for attempts in range(1, MAX_ATTEMPTS + 1):
        status, next_at = after_attempt(attempts, False, T0)
        waits.append(None if next_at is None else next_at - T0)
    assert waits == [*BACKOFF, None]
    assert after_attempt(MAX_ATTEMPTS, False, T0)[0] is OutboundEventStatus.FAILED
    assert after_attempt(3, True, T0) == (OutboundEventStatus.DELIVERED, None)


def test_an_event_stored_while_the_receiver_is_down_is_delivered_after_a_restart_once(
    tmp_path,
):
    database = f"sqlite:///{tmp_path / 'restart.db'}"
    first_store = CaseStore(database)
    first_store.create_schema()
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hooks"
    clock = Clock()
    before = EventPublisher(first_store, url, SECRET, timeout=1, clock=clock)
    assert before.publish(an_event()) is OutboundEventStatus.PENDING
    [refused] = first_store.outbound_deliveries("in_1:case.opened:1")
    assert refused.status_code is None and refused.error
    first_store.engine.dispose()  # the worker stops

    with FakeProduct(port=port) as product:
        clock.now = T0 + BACKOFF[0]
        # A new worker process: its own store and publisher over the same database.
        after = EventPublisher(CaseStore(database), url, SECRET, clock=clock)
        other = EventPublisher(CaseStore(database), url, SECRET, clock=clock)  # a second one
        delivered = after.deliver_due() + other.deliver_due()
        clock.now += timedelta(hours=13)
        delivered += after.deliver_due() + other.deliver_due()
    assert [row.status for row in delivered] == ["delivered"]
    assert product.ids == ["in_1:case.opened:1"]


def test_without_a_url_events_are_stored_not_sent(sqlite_store: CaseStore):
    publisher = EventPublisher(sqlite_store)
    assert publisher.publish(an_event()) is OutboundEventStatus.STORED
    assert publisher.deliver_due() == []
    assert sqlite_store.outbound_deliveries("in_1:case.opened:1") == []


def test_redeliver_sends_a_delivered_event_again_and_logs_it(sqlite_store: CaseStore):
    with FakeProduct() as product:
        publisher = EventPublisher(sqlite_store, product.url, SECRET)
        publisher.publish(an_event())
        again = publisher.redeliver("in_1:case.opened:1")
        assert publisher.redeliver("in_9:case.opened:1") is None
    assert (again.status, again.attempts) == ("delivered", 2)
    assert product.ids == ["in_1:case.opened:1", "in_1:case.opened:1"]


# Signatures and settings ---------------------------------------------------------------------


def test_receivers_accept_only_a_fresh_signature_of_the_exact_body():
    body = an_event().body()
    header = signing.sign(body, SECRET, 1_000_000)
    verify_signature(body, header, SECRET, now=1_000_100)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body + b" ", header, SECRET, now=1_000_100)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(body, header, "another-secret-0123456789", now=1_000_100)
    with pytest.raises(SignatureError, match="more than 300 s"):
        verify_signature(body, header, SECRET, now=1_000_400)
    with pytest.raises(SignatureError, match="no Dunning-Signature"):
        verify_signature(body, None, SECRET, now=1_000_000)


def test_a_url_without_a_secret_fails_at_start_in_one_line():
    with pytest.raises(ValidationError, match="OUTBOUND_WEBHOOK_URL needs OUTBOUND_WEBHOOK_SECRET"):
        Settings(outbound_webhook_url="https://product.example/hooks", _env_file=None)
    with pytest.raises(ValidationError, match="must start with http"):
        Settings(outbound_webhook_url="product.example", outbound_webhook_secret=SECRET)
    weak = Settings(
        outbound_webhook_url="https://product.example/hooks",
        outbound_webhook_secret="secret",
        self_service_secret="a-long-enough-self-service-secret",
        _env_file=None,
    )
    assert weak.secret_problems(serving=False) == ["OUTBOUND_WEBHOOK_SECRET is a known default"]
