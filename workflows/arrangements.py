"""What a customer can arrange on the recovery page, the pure arithmetic: the payment plans a
case can offer now and when each installment is charged. Pure: no I/O, no Temporal import.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from workflows.models import Installment, PlanQuote
from workflows.policy import PlanOffer

PROMISE_HOUR = time(10, 0)
"""A promise takes the payment that morning, in the customer's time zone (the recovery page's
promise and one an agent takes on a call alike)."""


def split_amount(amount: int, parts: int) -> list[int]:
    """`amount` in `parts` whole installments that add up to it; the first carries the
    remainder, so later installments are equal."""
    base, remainder = divmod(amount, parts)
    return [base + remainder] + [base] * (parts - 1)


def quote(offer: PlanOffer, amount_due: int, now: datetime) -> PlanQuote | None:
    """The installments `offer` would charge for `amount_due` from `now` (the first at once),
    or None when an installment would fall below the offer's minimum."""
    amounts = split_amount(amount_due, offer.installments)
    if min(amounts) < offer.min_installment:
        return None
    return PlanQuote(
        installments=[
            Installment(number=i + 1, amount=amount, due_at=now + i * offer.every)
            for i, amount in enumerate(amounts)
        ]
    )


def installment_charge_at(
    installment: Installment, declines: int, retries: list[timedelta]
) -> datetime | None:
    """When an installment is charged after `declines` declines: on its due date, then at
    each of the plan's retries; None once they are spent (the plan has failed)."""
    if declines == 0:
        return installment.due_at
    if declines > len(retries):
        return None
    return installment.due_at + retries[declines - 1]
