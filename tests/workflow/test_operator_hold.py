"""A gateway configuration error holds the case for an operator; it never reaches collections.

A wrong API key, an invoice the gateway does not know or a wrong API base cannot be fixed by
retrying, and the customer is not to blame: the case shows the error as `blocked` within a
minute, stops its clock (no charges, no reminders, no collections) and waits until an
operator fixes the configuration and runs `dunning retry`, which charges the same attempt
(same idempotency key) again.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.payments import GatewayConfigError
from activities.payments.simulated import SimulatedProcessor
from activities.payments.stripe import StripeBiller, StripeProcessor
from config.policies import find_policy
from tests.support.fake_stripe import FakeStripe
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus, ChargeRequest, ChargeResult, RetryRequest
from workflows.policy import Outcome


class MisconfiguredProcessor(SimulatedProcessor):
    """Refuses every charge as a wrong API base would, until `fixed`."""

    fixed = False

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if not self.fixed:
            raise GatewayConfigError("Stripe rejected the request (resource_missing): no invoice")
        return super().charge(request)


async def test_a_configuration_error_blocks_the_case_until_an_operator_retries(
    dunning: Dunning,
) -> None:
    processor = MisconfiguredProcessor(dunning.activities.store)
    dunning.activities.processor = processor
    case = await dunning.open_case("pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        # The first retry is a day in; the error shows as soon as it is met.
        await dunning.env.sleep(timedelta(days=1, hours=1))
        view = await status_when(
            handle, lambda v: v.status is CaseStatus.BLOCKED, "the case to be blocked"
        )
        assert "resource_missing" in view.blocked_reason
        assert view.details.startswith("waiting for an operator to fix: charge attempt 1")
        attributes = await dunning.search_attributes(handle)
        assert attributes["DunningStatus"] == "blocked"

        # Far past the schedule's end: still blocked, no collections, no more messages.
        sent = len(view.messages)
        await dunning.env.sleep(timedelta(days=60))
        view = await handle.query(DunningWorkflow.status)
        assert view.status is CaseStatus.BLOCKED
        assert len(view.messages) == sent
        assert dunning.activities.store.attempts(case.case_id) == []

        processor.fixed = True
        answer = await handle.execute_update(
            DunningWorkflow.retry_case, RetryRequest(actor="ops:lee")
        )
        assert answer.status is not CaseStatus.BLOCKED
        result = await handle.result()

    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 1
    attempts = dunning.activities.store.attempts(case.case_id)
    assert [a.idempotency_key for a in attempts] == [f"dunning:{case.case_id}:attempt:1"]


@pytest.mark.parametrize("mistake", ["unknown invoice", "wrong API base"])
async def test_a_404_from_stripe_blocks_the_case_within_a_minute_not_hours(
    dunning: Dunning, mistake: str
) -> None:
    """Stripe's JSON 404 (`resource_missing`) and a non-Stripe 404 (a wrong STRIPE_API_BASE)
    are configuration errors: the real gateway against the fake raises them at once, and the
    case is blocked with the reason instead of stalling in activity retries for hours or
    retrying on its schedule into collections."""
    with FakeStripe("sk_test_hold") as stripe_api:
        stripe_api.wrong_base = mistake == "wrong API base"
        dunning.activities.processor = StripeProcessor("sk_test_hold", stripe_api.url)
        dunning.activities.biller = StripeBiller("sk_test_hold", stripe_api.url)
        case = await dunning.open_case("pm_card_visa")  # an invoice Stripe does not have
        async with dunning.worker():
            handle = await dunning.start(case)
            await dunning.env.sleep(timedelta(days=1, minutes=1))  # the first retry is due
            view = await status_when(
                handle, lambda v: v.status is CaseStatus.BLOCKED, "the case to be blocked"
            )
            blocked_at = next(e.at for e in view.timeline if e.kind == "blocked")
            history = await handle.fetch_history()
    # The charge activity ran once: a configuration error is not retried.
    charge_runs = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and history.events[
            e.activity_task_started_event_attributes.scheduled_event_id - 1
        ].activity_task_scheduled_event_attributes.activity_type.name
        == "charge"
    ]

    standard = find_policy(dunning.activities.policies, case.policy_name, case.policy_version)
    charge_due = case.failure.failed_at + standard.retries[0]
    # Activity retries of a transient error would have taken hours (5 s up to 30 min, 20x).
    assert charge_due <= blocked_at < charge_due + timedelta(minutes=1)
    expected = "check STRIPE_API_BASE" if stripe_api.wrong_base else "resource_missing"
    assert expected in view.blocked_reason
    assert charge_runs == [1]  # not retried: one attempt, then the operator
