"""A gateway configuration error holds the case for an operator; it never reaches collections.

A wrong API key, an invoice the gateway does not know or a wrong API base cannot be fixed by
retrying, and the customer is not to blame: the case shows the error as `blocked` within a
minute, stops its clock (no charges, no reminders, no collections) and waits until an
operator fixes the configuration and runs `dunning retry`, which charges the same attempt
(same idempotency key) again.
"""

from __future__ import annotations

from datetime import timedelta

from conftest import Dunning, status_when

from activities.payments import GatewayConfigError
from activities.payments.simulated import SimulatedGateway
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus, ChargeRequest, ChargeResult, RetryRequest
from workflows.policy import Outcome


class MisconfiguredGateway(SimulatedGateway):
    """Refuses every charge as a wrong API base would, until `fixed`."""

    fixed = False

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if not self.fixed:
            raise GatewayConfigError("Stripe rejected the request (resource_missing): no invoice")
        return super().charge(request)


async def test_a_configuration_error_blocks_the_case_until_an_operator_retries(
    dunning: Dunning,
) -> None:
    gateway = MisconfiguredGateway(dunning.activities.store)
    dunning.activities.gateway = gateway
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

        gateway.fixed = True
        answer = await handle.execute_update(
            DunningWorkflow.retry_case, RetryRequest(actor="ops:lee")
        )
        assert answer.status is not CaseStatus.BLOCKED
        result = await handle.result()

    assert result.outcome is Outcome.RECOVERED
    assert result.charge_attempts == 1
    attempts = dunning.activities.store.attempts(case.case_id)
    assert [a.idempotency_key for a in attempts] == [f"dunning:{case.case_id}:attempt:1"]
