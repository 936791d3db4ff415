"""A tools app for ride-hailing drivers and couriers in Latin America, billed in USD
(cross-border: priced in dollars, paid with local cards), whose customers earn irregularly.

The model (figures below; the shared mechanics are in `simulation.worlds.common`):

- Paydays: platform payouts at random gaps, each customer their own: 2-6 days apart for
  60%, 4-12 days for the rest; a payout's money goes fast (x2.8 on the day, x1.2 by day 3,
  x0.6 after). Before any payout since the failure: x0.45.
- Failures: cross-border cards decline often and hard: 24% hard declines (stolen, lost,
  expired, restricted) and a card updater that rarely helps (10%); of soft declines,
  generic declines and do-not-honor come back less often than elsewhere.
- Recency: strong: a retry the day after the failure is best (x1.6), fading to x0.35 after
  two weeks, as the next expense takes the money. Each earlier decline takes 15% off.
- Hours: mornings are best (06-10 local x1.5), before the day's fuel and food; nights x0.6.
- Customers: impatient and irritable: a tolerance of 1.5-3.5 messages a week, texts count
  1.5 and texts outside 08-20 local count 4; past it they stop the channel or cancel. SMS
  is preferred by 65%; messages in the morning work best. BR (75%) and MX (25%), cards
  visa, mastercard, elo (BR only), amex; the zone is often unknown (30%).
"""

from __future__ import annotations

import random
from datetime import timedelta

from simulation.worlds.common import CommonWorld, Irregular, Profile, weighted
from workflows.policy import Channel

# Country → (share, zones with their shares, card brands with their shares).
COUNTRIES = {
    "BR": (
        0.75,
        {
            "America/Sao_Paulo": 0.75,
            "America/Bahia": 0.10,
            "America/Manaus": 0.08,
            "America/Recife": 0.07,
        },
        {"mastercard": 0.40, "visa": 0.35, "elo": 0.22, "amex": 0.03},
    ),
    "MX": (
        0.25,
        {"America/Mexico_City": 0.75, "America/Monterrey": 0.15, "America/Tijuana": 0.10},
        {"visa": 0.55, "mastercard": 0.42, "amex": 0.03},
    ),
}


class GigLatam(CommonWorld):
    """Latin American gig workers (see the module's model)."""

    name = "gig_latam"
    currency = "USD"
    FAILURE_MIX = {
        "insufficient_funds": 0.40,
        "do_not_honor": 0.14,
        "generic_decline": 0.14,
        "card_declined": 0.08,
        "stolen_card": 0.06,
        "lost_card": 0.05,
        "expired_card": 0.08,
        "restricted_card": 0.05,
    }
    PLANS = {"basic": (499, 0.60), "plus": (999, 0.30), "fleet": (2999, 0.10)}
    BASE_SUCCESS = {
        "insufficient_funds": 0.18,
        "do_not_honor": 0.18,
        "generic_decline": 0.2,
        "card_declined": 0.18,
    }
    CAN_RECOVER = {
        "insufficient_funds": 0.85,
        "do_not_honor": 0.45,
        "generic_decline": 0.5,
        "card_declined": 0.45,
    }
    NEW_CARD_SUCCESS = 0.8
    ATTEMPT_DECAY = 0.85
    WEEKEND = 1.05  # weekend shifts earn the most
    AFTER_PAYDAY = (2.8, 2.0, 1.5, 1.2, 0.9, 0.6)
    NO_NEW_MONEY = 0.45
    PAYDAY_OTHER = 1.2
    PAYER_HOURS = {h: 3.0 if 6 <= h < 11 else 1.0 for h in range(5, 24)}
    NEVER_RESPONDS = 0.4
    BASE_RESPONSE = 0.09
    PREFERRED_PULL = 1.5
    OTHER_PULL = 0.75
    MEAN_RESPONSE_DELAY = timedelta(hours=8)
    MEAN_ANNOYED_DELAY = timedelta(hours=1)
    CANCEL_BASE = 0.01
    CANCEL_PER_EXCESS = 0.07
    DISPUTE_BASE = 0.004
    DISPUTE_PER_EXCESS = 0.02
    OPT_OUT_BASE = 0.01
    OPT_OUT_PER_EXCESS = 0.12
    CONTACT_HOURS = (8, 20)

    def draw_profile(self, rng: random.Random, key: str) -> Profile:
        code = weighted(rng, self.FAILURE_MIX)
        country = weighted(rng, {c: share for c, (share, _, _) in COUNTRIES.items()})
        _, zones, brands = COUNTRIES[country]
        steady = rng.random() < 0.6
        schedule = Irregular(key, 2, 6) if steady else Irregular(key, 4, 12)
        struggles = rng.uniform(0.4, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.2)
        tenure = int(rng.expovariate(1 / 150))
        responds = rng.random() >= self.NEVER_RESPONDS
        return Profile(
            zone=weighted(rng, zones),
            zone_known=rng.random() < 0.7,
            country=country,
            card_brand=weighted(rng, brands),
            card_country=country if rng.random() < 0.92 else "US",
            schedule=schedule,
            code=code,
            plan=weighted(rng, {name: share for name, (_, share) in self.PLANS.items()}),
            tenure_days=tenure,
            struggles=struggles if code == "insufficient_funds" else struggles / 2,
            recover=rng.random(),
            responsiveness=rng.uniform(0.5, 1.5) if responds else 0.0,
            tolerance=rng.uniform(1.5, 3.5),
            prefers=Channel.SMS if rng.random() < 0.65 else Channel.EMAIL,
            prefers_card_update=rng.uniform(0.4, 0.8),
            updater_after=timedelta(days=rng.uniform(5, 15)) if rng.random() < 0.1 else None,
        )

    def hour_factor(self, hour: int) -> float:
        if 6 <= hour < 10:
            return 1.5
        if 10 <= hour < 14:
            return 1.1
        return 0.85 if 14 <= hour < 23 else 0.6

    def recency_factor(self, days: float) -> float:
        if days < 0.5:
            return 0.6
        for within, factor in ((1.5, 1.6), (2.5, 1.4), (3.5, 1.15), (5.5, 0.9), (8.5, 0.65)):
            if days < within:
                return factor
        return 0.5 if days < 14 else 0.35

    def arrival_factor(self, hour: int) -> float:
        return 1.35 if 6 <= hour < 11 else 0.85

    def irritation(self, channel: Channel, hour: int) -> float:
        start, end = self.CONTACT_HOURS
        if channel is Channel.SMS:
            return 1.5 if start <= hour < end else 4.0
        if channel is Channel.EMAIL:
            return 1.0 if start <= hour < end else 1.5
        return 0.3


def factory(seed: int) -> GigLatam:
    """The gig-worker world for `seed` (``simulation.worlds.gig_latam:factory``)."""
    return GigLatam(seed)
