"""Late fees, the pure rules: how much a policy's fee comes to, and when a case adds it.

A case adds its fee once, while it is still dunning: not once it has ended, nor while it is
held (paused, disputed, blocked for an operator, on a payment plan or a promise to pay), since
holding stops the clock the fee runs on. No I/O and no Temporal import.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from workflows.case import CaseState
from workflows.policy import LateFee


def late_fee_amount(fee: LateFee, amount_due: int) -> int:
    """The fee in minor units for `amount_due` (minor units): the fixed amount, or the
    percentage rounded half up to the currency's minor unit; never above the cap."""
    if fee.fixed is not None:
        amount = fee.fixed
    else:
        exact = Decimal(amount_due) * (fee.percent or Decimal(0)) / 100
        amount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return amount if fee.cap is None else min(amount, fee.cap)


def late_fee_at(state: CaseState) -> datetime | None:
    """When the case's fee is due, or None when it adds none (the policy has no fee, or the
    case added or gave up on it already). Moved on, as reminders are, by time held."""
    fee = state.policy.late_fee
    if fee is None or state.late_fee_done:
        return None
    return state.schedule_origin + fee.after
