"""A case tells the product what happens to it: signed events reach a real local receiver in
order, at the policy's grace and restriction times (moved on by a pause), and a receiver that
is down never holds the case up: a restarted worker's delivery loop delivers later, once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import jsonschema

from activities.outbound import EventPublisher, delivering
from activities.store import CaseStore, utcnow
from tests.support.core import CONFIG, standard_policy
from tests.support.fake_product import SECRET, FakeProduct
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CancelRequest, PauseRequest, PaymentReceived, ResumeRequest
from workflows.policy import Outcome, Policy

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
SLACK = timedelta(minutes=1)
SCHEMA = json.loads((CONFIG / "case-event.schema.json").read_text())


def with_access_hooks() -> Policy:
    """The standard policy with a 3-day grace period and access restricted on day 10."""
    data = standard_policy().model_dump() | {
        "grace_period": timedelta(days=3),
        "restrict_access_after": timedelta(days=10),
    }
    return Policy.model_validate(data)


async def received(product: FakeProduct, count: int) -> list[dict]:
    """The events the product accepted, once there are `count` of them."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(product.events) < count:
        await asyncio.sleep(0.05)
    assert len(product.events) >= count, [e["type"] for e in product.events]
    return product.events


async def test_the_product_hears_of_grace_pause_restriction_and_recovery_in_order(
    dunning: Dunning,
) -> None:
    dunning.activities.policies = [with_access_hooks()]
    store = dunning.activities.store
    with FakeProduct() as product:
        dunning.activities.publisher = EventPublisher(store, product.url, SECRET)
        case = await dunning.open_case(SOFT_DECLINE)
        failed_at = case.failure.failed_at
        async with dunning.worker():
            handle = await dunning.start(case)
            await received(product, 1)
            await dunning.env.sleep(timedelta(days=3, hours=1))
            await received(product, 2)
            await handle.signal(
                DunningWorkflow.pause, PauseRequest(actor="support:kim", reason="ticket 4")
            )
            await received(product, 3)
            await dunning.env.sleep(timedelta(days=2))
            await handle.signal(DunningWorkflow.resume, ResumeRequest(actor="support:kim"))
            await status_when(handle, lambda v: v.status == "active", "resumed")
            await dunning.env.sleep(timedelta(days=7))
            await received(product, 4)
            await handle.signal(
                DunningWorkflow.payment_received, PaymentReceived(amount=4980, reference="bank")
            )
            result = await asyncio.wait_for(handle.result(), timeout=60)
            events = await received(product, 5)

    assert result.outcome is Outcome.RECOVERED
    assert product.refused == []  # every delivery was signed with the secret
    assert [e["type"] for e in events] == [
        "case.opened",
        "case.grace_ending",
        "case.paused",
        "case.access_restricted",
        "case.recovered",
    ]
    by_type = {e["type"]: e for e in events}
    created = {t: e["created"] for t, e in by_type.items()}
    held = timedelta(days=2)

    def at(kind: str) -> datetime:
        return datetime.fromisoformat(created[kind])

    assert abs(at("case.grace_ending") - (failed_at + timedelta(days=3))) <= SLACK
    # Restriction is due ten days into the schedule, moved on by the two days it was paused.
    assert abs(at("case.access_restricted") - (failed_at + timedelta(days=10) + held)) <= SLACK
    assert by_type["case.access_restricted"]["data"]["access"] == "restrict"
    assert by_type["case.recovered"]["data"]["access"] == "restore"
    assert by_type["case.paused"]["data"]["reason"] == "ticket 4"
    for event in events:
        jsonschema.validate(event, SCHEMA)
        assert event["data"]["customer_id"] == case.customer_id
        assert "Ann" not in json.dumps(event) and "@" not in json.dumps(event)  # no contact data
    stored = store.find_outbound_events(case_id=case.case_id)
    assert {e.status for e in stored} == {"delivered"}


async def test_a_receiver_that_is_down_never_holds_the_case_and_a_restarted_loop_delivers_once(
    dunning: Dunning,
) -> None:
    store = dunning.activities.store
    with FakeProduct() as product:
        product.fail_next = 1000  # down for the whole case
        dunning.activities.publisher = EventPublisher(store, product.url, SECRET)
        case = await dunning.open_case(SOFT_DECLINE)
        async with dunning.worker():
            handle = await dunning.start(case)
            await status_when(handle, lambda v: len(v.messages) == 1, "the day-0 reminder")
            await handle.signal(
                DunningWorkflow.cancel, CancelRequest(reason="customer left", actor="billing")
            )
            result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.outcome is Outcome.CANCELLED
        pending = store.find_outbound_events(case_id=case.case_id)
        assert [(e.type, e.status, e.attempts) for e in reversed(pending)] == [
            ("case.opened", "pending", 1),
            ("case.cancelled", "pending", 1),
        ]

        # The product is back; a new worker (its own store) runs its delivery loop.
        product.fail_next = 0

        def later() -> datetime:  # past the first backoff
            return utcnow() + timedelta(minutes=2)

        database = store.engine.url.render_as_string(hide_password=False)
        restarted = EventPublisher(CaseStore(database), product.url, SECRET, clock=later)
        async with delivering(restarted, every=0.05):
            await received(product, 2)
            await asyncio.sleep(0.3)  # a few more rounds: nothing is sent twice
    assert product.ids == [f"{case.case_id}:case.opened:1", f"{case.case_id}:case.cancelled:1"]
    assert {e.status for e in store.find_outbound_events(case_id=case.case_id)} == {"delivered"}
    log = store.outbound_deliveries(f"{case.case_id}:case.cancelled:1")
    assert [a.status_code for a in log] == [503, 200]
