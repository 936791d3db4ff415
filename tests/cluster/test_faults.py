"""Injected faults (FAULT_RATE) and what the activities make of them: a send or a charge
whose answer was lost is never repeated, whatever came before it."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from activities.dunning import DunningActivities
from activities.faults import Fault, injected_fault
from activities.notify import NotifierUnavailable, OutboundMessage
from activities.payments.simulated import GatewayUnavailable, SimulatedProcessor
from activities.store import CustomerProfile, MessageStatus
from config.settings import Settings
from workflows.models import ChargeRequest, NotifyRequest
from workflows.policy import Channel


class FlakyNotifier:
    """Refuses the first send (a 503), loses the answer of the second (it went out), then
    delivers; counts what reached the recipient."""

    def __init__(self) -> None:
        self.calls = 0
        self.delivered: list[str] = []

    def send(self, message: OutboundMessage) -> str:
        self.calls += 1
        if self.calls == 1:
            raise NotifierUnavailable("503")
        self.delivered.append(message.key)
        if self.calls == 2:
            raise TimeoutError("no answer")
        return "ok"


@pytest.fixture
def activities(tmp_path) -> Iterator[DunningActivities]:
    acts = DunningActivities.from_settings(
        Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}", _env_file=None)
    )
    acts.store.upsert_customer(
        CustomerProfile(customer_id="cus_1", name="Aiko", email="aiko@example.com")
    )
    yield acts
    acts.store.engine.dispose()


def test_a_send_refused_then_lost_is_never_sent_again(activities: DunningActivities):
    notifier = FlakyNotifier()
    activities.notifiers = {channel: notifier for channel in Channel}
    request = NotifyRequest(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        step="reminder-1",
        template="reminder_gentle",
        channels=[Channel.EMAIL],
        amount_due=4900,
        currency="USD",
        deadline=datetime(2026, 3, 23, tzinfo=UTC),
    )
    with pytest.raises(NotifierUnavailable):
        activities.notify(request)
    with pytest.raises(TimeoutError):
        activities.notify(request)
    activities.notify(request)  # the activity's third attempt

    assert notifier.delivered == ["case-1:reminder-1:email"]
    [row] = activities.store.messages("case-1")
    assert row.status == MessageStatus.UNCONFIRMED


def test_a_charge_whose_answer_was_lost_is_replayed_not_charged_again(
    activities: DunningActivities,
):
    keys = (f"dunning:in_{n}:attempt:1" for n in itertools.count())
    key = next(k for k in keys if injected_fault(0.2, k) is Fault.TIMEOUT)
    request = ChargeRequest(
        case_id=key.split(":")[1],
        invoice_id=key.split(":")[1],
        customer_id="cus_1",
        attempt=1,
        amount=4900,
        currency="USD",
        payment_method="pm_card_visa",
    )
    assert request.idempotency_key == key
    with pytest.raises(GatewayUnavailable, match="timed out"):
        SimulatedProcessor(activities.store, fault_rate=0.2).charge(request)
    charged = activities.store.simulated_charge(key)
    assert charged is not None and charged.approved

    retried = SimulatedProcessor(activities.store).charge(request)  # the retry's draw passes
    assert retried.approved and retried.reference == charged.reference


def test_faults_strike_at_the_rate_half_before_and_half_after_acting():
    draws = Counter(injected_fault(0.2, f"key-{n}") for n in range(20_000))
    assert 0.18 < (draws[Fault.TIMEOUT] + draws[Fault.UNAVAILABLE]) / 20_000 < 0.22
    assert 0.8 < draws[Fault.TIMEOUT] / draws[Fault.UNAVAILABLE] < 1.25
    assert injected_fault(0.0, "key-1") is None
    assert {injected_fault(0.2, "key-1") for _ in range(3)} == {injected_fault(0.2, "key-1")}
