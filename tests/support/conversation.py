"""A customer with several failed invoices under a policy with the conversation on."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import WorkflowHandle

from activities.store import CustomerProfile
from config.policies import find_policy
from tests.support.harness import Dunning
from workflows.models import CaseInput, Failure
from workflows.policy import Policy

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
CUSTOMER = "cus_three"


def conversation_policy(dunning: Dunning) -> Policy:
    """The standard ladder (day 0, 4, 8 gentle to firm, final on 14) with the conversation on."""
    standard = find_policy(dunning.activities.policies, "standard", 1)
    policy = standard.model_copy(update={"version": 90, "conversation": True})
    dunning.activities.policies.append(policy)
    return policy


async def open_cases(dunning: Dunning, spacing: timedelta, count: int = 3) -> list[WorkflowHandle]:
    """Seed the customer and start `count` cases of theirs, `spacing` apart (virtual time):
    invoice in_three_<n> owes n x $10. The first fails at 09:00 UTC, in contact hours."""
    now = await dunning.now()
    nine = now.replace(hour=9, minute=0, second=0, microsecond=0)
    await dunning.env.sleep((nine if nine > now else nine + timedelta(days=1)) - now)
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id=CUSTOMER,
            name="Kim",
            email="kim@example.com",
            phone="+15555550199",
            payment_method=SOFT_DECLINE,
            time_zone="UTC",
        )
    )
    handles = []
    for n in range(count):
        if n:
            await dunning.env.sleep(spacing)
        invoice = f"in_three_{n + 1}"
        case = CaseInput(
            case_id=invoice,
            invoice_id=invoice,
            customer_id=CUSTOMER,
            amount_due=1000 * (n + 1),
            currency="USD",
            failure=Failure(decline_code="insufficient_funds", failed_at=await dunning.now()),
            policy_version=90,
        )
        handles.append(await dunning.start(case))
    return handles
