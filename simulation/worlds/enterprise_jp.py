"""A B2B software vendor in Japan, billed in JPY (zero-decimal: amounts are whole yen),
whose customers are companies paying large invoices with corporate cards.

The model (figures below; the shared mechanics are in `simulation.worlds.common`):

- Paydays: the company's monthly payment run, on the 25th (60%, the Japanese payday) or the
  last working day (40%), moved to the working day before a weekend. The corporate card's
  limit frees up when its bill is settled in that run: insufficient funds clears after it
  (x2.5 on the day, x1.6 for the next week) and rarely before (x0.4), and do-not-honor,
  often a limit in disguise here, passes 1.5 times as often on the run's day and the next.
- Failures: do-not-honor dominates (50%): issuers stop large card payments they have not
  seen before. Hard declines 7%; the card updater replaces half the expired cards 3-10 days
  later.
- Hours and recency: weak: business hours x1.1, else x0.95; weekends x0.9; no fall-off with
  days since the failure beyond the first half day. Each earlier decline takes 5% off.
- Customers: patient: tolerance 6-10 messages a week, cancelling and opting out are rare.
  In-app (50%) or email (45%) preferred, SMS hardly ever. Most pay by bank transfer rather
  than change the card, one to five working days after the message, in office hours.
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from simulation.world import ActionKind
from simulation.worlds.common import CommonWorld, MonthDays, Profile, weighted
from workflows.policy import Channel

ZONE = "Asia/Tokyo"
BRANDS = {"visa": 0.40, "jcb": 0.35, "mastercard": 0.20, "amex": 0.05}


class EnterpriseJP(CommonWorld):
    """Japanese companies on monthly payment runs (see the module's model)."""

    name = "enterprise_jp"
    currency = "JPY"
    FAILURE_MIX = {
        "do_not_honor": 0.50,
        "insufficient_funds": 0.20,
        "generic_decline": 0.15,
        "card_declined": 0.08,
        "expired_card": 0.05,
        "lost_card": 0.01,
        "stolen_card": 0.01,
    }
    PLANS = {
        "standard": (30000, 0.45),
        "business": (120000, 0.35),
        "enterprise": (480000, 0.15),
        "enterprise_plus": (1500000, 0.05),
    }
    BASE_SUCCESS = {
        "do_not_honor": 0.17,
        "insufficient_funds": 0.16,
        "generic_decline": 0.2,
        "card_declined": 0.18,
    }
    CAN_RECOVER = {
        "do_not_honor": 0.55,
        "insufficient_funds": 0.85,
        "generic_decline": 0.6,
        "card_declined": 0.55,
    }
    ATTEMPT_DECAY = 0.95
    WEEKEND = 0.9
    AFTER_PAYDAY = (2.5, 2.2, 1.6)
    NO_NEW_MONEY = 0.4
    PAYDAY_OTHER = 1.5
    PAYER_HOURS = {h: 3.0 if 9 <= h < 12 else 1.0 for h in range(9, 18)}
    NEVER_RESPONDS = 0.15
    BASE_RESPONSE = 0.09
    PREFERRED_PULL = 1.4
    OTHER_PULL = 0.9
    CANCEL_BASE = 0.001
    CANCEL_PER_EXCESS = 0.01
    DISPUTE_BASE = 0.0005
    DISPUTE_PER_EXCESS = 0.003
    OPT_OUT_BASE = 0.001
    OPT_OUT_PER_EXCESS = 0.01

    def draw_profile(self, rng: random.Random, key: str) -> Profile:
        code = weighted(rng, self.FAILURE_MIX)
        struggles = rng.uniform(0.3, 0.9) if rng.random() < 0.5 else rng.uniform(0.0, 0.1)
        tenure = int(rng.expovariate(1 / 700))
        loyal = 1.0 + min(tenure, 1500) / 3000
        responds = rng.random() >= self.NEVER_RESPONDS
        tied_to_money = code in ("insufficient_funds", "do_not_honor")
        return Profile(
            zone=ZONE,
            zone_known=rng.random() < 0.95,
            country="JP",
            card_brand=weighted(rng, BRANDS),
            card_country="JP" if rng.random() < 0.98 else "US",
            schedule=MonthDays((25,)) if rng.random() < 0.6 else MonthDays((31,)),
            code=code,
            plan=weighted(rng, {name: share for name, (_, share) in self.PLANS.items()}),
            tenure_days=tenure,
            struggles=struggles if tied_to_money else struggles / 3,
            recover=rng.random(),
            responsiveness=rng.uniform(0.7, 1.5) * loyal if responds else 0.0,
            tolerance=rng.uniform(6.0, 10.0) * loyal,
            prefers=weighted(rng, {Channel.IN_APP: 0.5, Channel.EMAIL: 0.45, Channel.SMS: 0.05}),
            prefers_card_update=rng.uniform(0.1, 0.4),
            updater_after=timedelta(days=rng.uniform(3, 10)) if rng.random() < 0.5 else None,
        )

    def hour_factor(self, hour: int) -> float:
        return 1.1 if 9 <= hour < 18 else 0.95

    def recency_factor(self, days: float) -> float:
        return 0.6 if days < 0.5 else 1.0

    def arrival_factor(self, hour: int) -> float:
        return 1.2 if 9 <= hour < 18 else 0.9

    def reaction_at(
        self,
        profile: Profile,
        kind: ActionKind,
        at: datetime,
        mean: timedelta,
        rng: random.Random,
    ) -> datetime:
        """Companies act in office hours: one to five working days on (cancelling included,
        which goes through a purchasing decision)."""
        zone = ZoneInfo(profile.zone)
        day = at.astimezone(zone).date()
        for _ in range(weighted(rng, {1: 0.35, 2: 0.25, 3: 0.2, 4: 0.1, 5: 0.1})):
            day += timedelta(days=1)
            while day.weekday() >= 5:
                day += timedelta(days=1)
        clock = time(rng.randrange(9, 18), rng.randrange(60))
        return datetime.combine(day, clock, tzinfo=zone)


def factory(seed: int) -> EnterpriseJP:
    """The Japanese enterprise world for `seed` (``simulation.worlds.enterprise_jp:factory``)."""
    return EnterpriseJP(seed)
