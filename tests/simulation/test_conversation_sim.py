"""The simulator runs a customer's cases and their conversation as production does: one
conversation for three invoices that failed within a day, within the weekly budget, and a
payment through the one link recovers all three."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulation.simulator import MESSAGES_PER_WEEK, simulate
from simulation.world import ActionKind, ChargeAnswer, CustomerAction, SentMessage, SimCase
from tests.support.core import standard_policy
from workflows.messaging import CAP_WINDOW
from workflows.policy import DeclineCodes, Policy

FIRST_FAILURE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Listener:
    """Declines every charge and hears every message; pays `pays_after` messages in."""

    def __init__(self, pays_after: int | None = None) -> None:
        self.pays_after = pays_after
        self.heard: list[tuple[datetime, str, SentMessage]] = []

    def charge(self, case: SimCase, attempt: int, at: datetime) -> ChargeAnswer:
        return ChargeAnswer(approved=False, decline=DeclineCodes(decline_code="insufficient_funds"))

    def respond(self, case: SimCase, message: SentMessage, at: datetime) -> CustomerAction | None:
        self.heard.append((at, case.id, message))
        if self.pays_after is not None and len(self.heard) == self.pays_after:
            return CustomerAction(kind=ActionKind.PAY, at=at + timedelta(hours=2))
        return None


def three_invoices() -> list[SimCase]:
    return [
        SimCase(
            id=f"in_{n}",
            customer_id="cus_three",
            amount=1000 * n,
            failure=DeclineCodes(decline_code="insufficient_funds"),
            failed_at=FIRST_FAILURE + timedelta(hours=hours),
            time_zone="UTC",
        )
        for n, hours in ((1, 0), (2, 5), (3, 11))
    ]


@pytest.fixture
def conversation() -> Policy:
    return standard_policy().model_copy(update={"version": 90, "conversation": True})


def test_three_failed_invoices_make_one_conversation_within_the_budget(conversation: Policy):
    world = Listener()
    result = simulate(three_invoices(), conversation, world)

    assert [run.outcome for run in result.runs] == ["collections"] * 3
    reminders = [(at, m) for at, _, m in world.heard if m.tone is not None]
    # One ladder for the customer (day 0 and the invoices that failed after it, day 4, 8, 14),
    # where three cases on their own would send twelve reminders.
    assert 4 <= len(reminders) <= 6
    times = [at for at, _ in reminders]
    for start in times:
        assert sum(start <= at < start + CAP_WINDOW for at in times) <= MESSAGES_PER_WEEK
    assert [m.template for _, m in reminders].count("final_notice") == 1

    alone = simulate(three_invoices(), standard_policy(), Listener())
    assert sum(run.messages_sent for run in result.runs) < sum(
        run.messages_sent for run in alone.runs
    )


def test_paying_through_the_one_link_recovers_every_open_invoice(conversation: Policy):
    world = Listener(pays_after=2)
    result = simulate(three_invoices(), conversation, world)

    assert [run.outcome for run in result.runs] == ["recovered"] * 3
    paid_at = {run.closed_at for run in result.runs}
    assert len(paid_at) == 1  # one payment, every case at once
