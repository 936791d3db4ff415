"""A card network's reattempt cap counts the card's charges across all of the customer's
cases (time-skipping server, real activities, simulated gateway)."""

from __future__ import annotations

from datetime import timedelta

from config.policies import find_policy
from tests.support.harness import Dunning
from workflows.models import CaseInput, Failure
from workflows.policy import NetworkRules

CARD = "pm_card_chargeDeclinedInsufficientFunds"  # a Visa that declines for insufficient funds


async def test_two_cases_on_one_card_share_the_networks_cap(dunning: Dunning):
    standard = find_policy(dunning.activities.policies, "standard", 1)
    capped = standard.declines.model_copy(
        update={"networks": {"visa": NetworkRules(max_attempts=5, window=timedelta(days=30))}}
    )
    dunning.activities.policies.append(
        standard.model_copy(update={"version": 91, "declines": capped})
    )
    dunning.customer(CARD, customer_id="cus_card")
    cases = []
    for n in (1, 2):
        # An hour apart: two charges of one card at the very same moment could both pass
        # the count (the README says so); a customer's cases rarely fail to the second.
        await dunning.env.sleep(timedelta(hours=n - 1))
        cases.append(
            CaseInput(
                case_id=f"in_card_{n}",
                invoice_id=f"in_card_{n}",
                customer_id="cus_card",
                amount_due=1500,
                currency="USD",
                failure=Failure(
                    decline_code="insufficient_funds",
                    card_brand="visa",
                    failed_at=await dunning.now(),
                ),
                policy_version=91,
                payment_method=CARD,
            )
        )

    async with dunning.worker():
        handles = [await dunning.start(case) for case in cases]
        results = [await handle.result() for handle in handles]

    store = dunning.activities.store
    charged = [a for case in cases for a in store.attempts(case.case_id)]
    # Four scheduled retries each would be eight charges of the card within a week; the
    # network allows five in 30 days, whichever case makes them.
    assert len(charged) == 5
    holds = [e for result in results for e in result.timeline if e.kind == "network_hold"]
    assert holds, "the second case was never held back"
    assert "across cases" in holds[0].detail
    assert [r.outcome for r in results] == ["collections", "collections"]
