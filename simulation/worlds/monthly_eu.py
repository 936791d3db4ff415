"""A streaming and learning service in the eurozone, billed in EUR, whose customers are
salaried once a month.

The model (figures below; the shared mechanics are in `simulation.worlds.common`):

- Paydays: once a month on the customer's own day: the 25th (30%), the 28th (15%), the last
  working day (30%) or any day from the 1st to the 28th (25%), moved to the working day
  before when it falls on a weekend. Money lasts: insufficient funds clears on payday and
  stays likely for a week (x2.6 down to x1.2), but hardly before a payday (x0.25).
- Failures: 45% insufficient funds; hard declines only 6%, mostly expired cards, and the
  card updater replaces 75% of those 2-9 days after the failure.
- Hours: retries pass best in the evening (18-22 local x1.5), after work when balances are
  checked; mornings x0.8, nights x0.55. Each earlier decline takes 8% off the next chance.
- Customers: SMS preferred in ES, IT and PT (70%), email in DE, NL, AT and FR (80%); they act
  most on messages that arrive in the evening. Moderate patience, but quick to unsubscribe
  from a channel that nags (GDPR habits).
"""

from __future__ import annotations

import random
from datetime import timedelta

from simulation.worlds.common import CommonWorld, MonthDays, Profile, weighted
from workflows.policy import Channel

# Country → (share, zone, SMS-preferring share).
COUNTRIES = {
    "DE": (0.30, "Europe/Berlin", 0.2),
    "NL": (0.12, "Europe/Amsterdam", 0.2),
    "AT": (0.05, "Europe/Vienna", 0.2),
    "FR": (0.18, "Europe/Paris", 0.2),
    "ES": (0.17, "Europe/Madrid", 0.7),
    "IT": (0.14, "Europe/Rome", 0.7),
    "PT": (0.04, "Europe/Lisbon", 0.7),
}
BRANDS = {"visa": 0.55, "mastercard": 0.40, "amex": 0.05}


class MonthlyEU(CommonWorld):
    """Eurozone monthly earners (see the module's model)."""

    name = "monthly_eu"
    currency = "EUR"
    FAILURE_MIX = {
        "insufficient_funds": 0.45,
        "do_not_honor": 0.22,
        "generic_decline": 0.19,
        "card_declined": 0.08,
        "expired_card": 0.05,
        "lost_card": 0.01,
    }
    PLANS = {
        "monthly": (999, 0.55),
        "family": (1799, 0.30),
        "premium": (2999, 0.12),
        "annual": (11900, 0.03),
    }
    BASE_SUCCESS = {
        "insufficient_funds": 0.18,
        "do_not_honor": 0.22,
        "generic_decline": 0.25,
        "card_declined": 0.20,
    }
    CAN_RECOVER = {
        "insufficient_funds": 0.85,
        "do_not_honor": 0.55,
        "generic_decline": 0.6,
        "card_declined": 0.55,
    }
    ATTEMPT_DECAY = 0.92
    WEEKEND = 0.95
    AFTER_PAYDAY = (2.6, 2.4, 2.1, 1.8, 1.6, 1.4, 1.3, 1.2, 1.0)
    NO_NEW_MONEY = 0.25
    PAYDAY_OTHER = 1.1
    PAYER_HOURS = {h: 3.0 if 18 <= h < 23 else 1.0 for h in range(7, 24)}
    NEVER_RESPONDS = 0.3
    BASE_RESPONSE = 0.07
    PREFERRED_PULL = 1.7
    OTHER_PULL = 0.7
    OPT_OUT_BASE = 0.005
    OPT_OUT_PER_EXCESS = 0.09
    CANCEL_PER_EXCESS = 0.04

    def draw_profile(self, rng: random.Random, key: str) -> Profile:
        code = weighted(rng, self.FAILURE_MIX)
        country = weighted(rng, {c: share for c, (share, _, _) in COUNTRIES.items()})
        _, zone, sms_share = COUNTRIES[country]
        day = weighted(rng, {25: 0.30, 28: 0.15, 31: 0.30, 0: 0.25})  # 31: the last
        if day == 0:
            day = rng.randint(1, 28)
        struggles = rng.uniform(0.4, 1.0) if rng.random() < 0.5 else rng.uniform(0.0, 0.1)
        tenure = int(rng.expovariate(1 / 420))
        loyal = 1.0 + min(tenure, 1000) / 2000
        responds = rng.random() >= self.NEVER_RESPONDS
        return Profile(
            zone=zone,
            zone_known=rng.random() < 0.9,
            country=country,
            card_brand=weighted(rng, BRANDS),
            card_country=country if rng.random() < 0.95 else rng.choice(list(COUNTRIES)),
            schedule=MonthDays((day,)),
            code=code,
            plan=weighted(rng, {name: share for name, (_, share) in self.PLANS.items()}),
            tenure_days=tenure,
            struggles=struggles if code == "insufficient_funds" else struggles / 3,
            recover=rng.random(),
            responsiveness=rng.uniform(0.6, 1.5) * loyal if responds else 0.0,
            tolerance=rng.uniform(2.5, 5.0) * loyal,
            prefers=Channel.SMS if rng.random() < sms_share else Channel.EMAIL,
            prefers_card_update=rng.uniform(0.5, 0.9),
            updater_after=timedelta(days=rng.uniform(2, 9)) if rng.random() < 0.75 else None,
        )

    def hour_factor(self, hour: int) -> float:
        if 18 <= hour < 22:
            return 1.5
        if 12 <= hour < 18:
            return 1.0
        return 0.8 if 7 <= hour < 12 else 0.55

    def arrival_factor(self, hour: int) -> float:
        return 1.35 if 18 <= hour < 22 else 0.9


def factory(seed: int) -> MonthlyEU:
    """The monthly-salary world for `seed` (``simulation.worlds.monthly_eu:factory``)."""
    return MonthlyEU(seed)
