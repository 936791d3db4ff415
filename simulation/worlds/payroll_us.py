"""A US SaaS for small teams, billed in USD, whose customers live on payroll.

The model (figures below; the shared mechanics are in `simulation.worlds.common`):

- Paydays: 40% weekly (Fridays), 35% biweekly (every other Friday, each customer on their
  own week), 25% semimonthly (the 1st and 15th, or the 15th and the last day), moved to the
  Friday before when they fall on a weekend.
- Failures: 50% insufficient funds, which clears on payday and the two days after (x3.0,
  x2.6, x1.9) and barely before one (x0.3); 13% hard declines; 30% of expired cards come back
  through the card updater 3-10 days later.
- Hours: retries pass best in business hours (09-17 local x1.35), worst at night (x0.5);
  weekends x0.85. Each earlier decline takes 10% off the next chance.
- Customers: email first (70% prefer it, the rest SMS); they act most on messages that
  arrive in business hours; moderate patience (3-6 messages a week before it shows).
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from simulation.worlds.common import (
    Biweekly,
    CommonWorld,
    MonthDays,
    Profile,
    Weekly,
    weighted,
)
from workflows.policy import Channel

ZONES = {
    "America/New_York": 0.38,
    "America/Chicago": 0.22,
    "America/Denver": 0.08,
    "America/Phoenix": 0.04,
    "America/Los_Angeles": 0.25,
    "Pacific/Honolulu": 0.01,
    "America/Anchorage": 0.02,
}
BRANDS = {"visa": 0.52, "mastercard": 0.30, "amex": 0.12, "discover": 0.06}
# A Friday that starts the "A" biweekly week; "B" customers are paid the week after.
BIWEEKLY_ANCHOR = date(2025, 1, 3)


class PayrollUS(CommonWorld):
    """US payroll customers (see the module's model)."""

    name = "payroll_us"
    currency = "USD"
    FAILURE_MIX = {
        "insufficient_funds": 0.50,
        "do_not_honor": 0.17,
        "generic_decline": 0.13,
        "card_declined": 0.07,
        "expired_card": 0.07,
        "stolen_card": 0.03,
        "lost_card": 0.03,
    }
    PLANS = {
        "starter": (1500, 0.45),
        "team": (4900, 0.35),
        "growth": (9900, 0.15),
        "business": (29900, 0.05),
    }
    BASE_SUCCESS = {
        "insufficient_funds": 0.17,
        "do_not_honor": 0.24,
        "generic_decline": 0.26,
        "card_declined": 0.22,
    }
    CAN_RECOVER = {
        "insufficient_funds": 0.85,
        "do_not_honor": 0.6,
        "generic_decline": 0.65,
        "card_declined": 0.6,
    }
    ATTEMPT_DECAY = 0.9
    WEEKEND = 0.85
    AFTER_PAYDAY = (3.0, 2.6, 1.9, 1.1, 0.9, 0.8, 0.7)
    NO_NEW_MONEY = 0.3
    PAYER_HOURS = {h: 3.0 if 6 <= h < 10 else 1.0 for h in range(5, 23)}
    NEVER_RESPONDS = 0.35
    BASE_RESPONSE = 0.08
    PREFERRED_PULL = 1.5
    OTHER_PULL = 0.85

    def draw_profile(self, rng: random.Random, key: str) -> Profile:
        code = weighted(rng, self.FAILURE_MIX)
        kind = weighted(rng, {"weekly": 0.40, "biweekly": 0.35, "semimonthly": 0.25})
        if kind == "weekly":
            schedule = Weekly(4)
        elif kind == "biweekly":
            schedule = Biweekly(BIWEEKLY_ANCHOR + timedelta(days=7 * rng.randrange(2)))
        else:
            schedule = MonthDays(rng.choice([(1, 15), (15, 31)]))
        struggles = rng.uniform(0.4, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.15)
        tenure = int(rng.expovariate(1 / 320))
        loyal = 1.0 + min(tenure, 1000) / 2000
        responds = rng.random() >= self.NEVER_RESPONDS
        return Profile(
            zone=weighted(rng, ZONES),
            zone_known=rng.random() < 0.85,
            country="US",
            card_brand=weighted(rng, BRANDS),
            card_country="US" if rng.random() < 0.97 else "CA",
            schedule=schedule,
            code=code,
            plan=weighted(rng, {name: share for name, (_, share) in self.PLANS.items()}),
            tenure_days=tenure,
            struggles=struggles if code == "insufficient_funds" else struggles / 3,
            recover=rng.random(),
            responsiveness=rng.uniform(0.6, 1.6) * loyal if responds else 0.0,
            tolerance=rng.uniform(3.0, 6.0) * loyal,
            prefers=Channel.EMAIL if rng.random() < 0.7 else Channel.SMS,
            prefers_card_update=rng.uniform(0.4, 0.8),
            updater_after=timedelta(days=rng.uniform(3, 10)) if rng.random() < 0.3 else None,
        )

    def hour_factor(self, hour: int) -> float:
        if 9 <= hour < 17:
            return 1.35
        if 17 <= hour < 21 or 7 <= hour < 9:
            return 0.95
        return 0.5

    def arrival_factor(self, hour: int) -> float:
        return 1.3 if 9 <= hour < 17 else 0.85


def factory(seed: int) -> PayrollUS:
    """The payroll world for `seed` (``simulation.worlds.payroll_us:factory``)."""
    return PayrollUS(seed)
