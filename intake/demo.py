"""The demo: three cases on the demo policy that finish within about a minute, a customer
with two failed invoices and one conversation, and a customer whose card expires this month,
for the pre-dunning schedule's notice."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import Client

from activities.notify.links import SelfService
from activities.store import CaseStore, CustomerProfile, SimulatedCard
from config.settings import Settings
from intake.cases import CaseOpener, StartResult
from intake.events import BillingEvent
from intake.pre_dunning import run_pre_dunning_now

# key, name, card, amount, currency, decline, locale, time zone: Chie reads Japanese.
DEMO_CUSTOMERS = [
    (
        "ana",
        "Ana Souza",
        "pm_sim_recovers_on_attempt_2",
        4900,
        "USD",
        "insufficient_funds",
        "en-US",
        "America/New_York",
    ),
    (
        "ben",
        "Ben Carter",
        "pm_card_chargeDeclinedStolenCard",
        1999,
        "EUR",
        "stolen_card",
        "en-GB",
        "Europe/London",
    ),
    (
        "chie",
        "Chie Sato",
        "pm_card_chargeDeclinedInsufficientFunds",
        4980,
        "JPY",
        "do_not_honor",
        "ja-JP",
        "Asia/Tokyo",
    ),
]


def demo_events(now: datetime) -> list[BillingEvent]:
    """Three cases on the demo policy: one recovers on retry 2, one waits for a new card
    after a hard decline, one goes to collections."""
    suffix = f"{now:%H%M%S}"
    return [
        BillingEvent(
            invoice_id=f"in_demo_{key}_{suffix}",
            customer=CustomerProfile(
                # New customers each run: last run's messages must not count towards this
                # run's weekly cap, or a second `make run` would send Ben and Chie nothing.
                customer_id=f"cus_demo_{key}_{suffix}",
                name=name,
                email=f"{key}@example.com",
                payment_method=payment_method,
                locale=locale,
                time_zone=time_zone,
            ),
            amount_due=amount,
            currency=currency,
            decline_code=decline_code,
            failed_at=now,
            policy="demo",
        )
        for key, name, payment_method, amount, currency, decline_code, locale, time_zone in (
            DEMO_CUSTOMERS
        )
    ]


# Eve has two invoices that failed a moment apart: one conversation tells her of both.
TOGETHER = ("eve", "Eve Martin", "pm_card_chargeDeclinedInsufficientFunds", "GBP", "en-GB")
TOGETHER_AMOUNTS = (2500, 1200)


def together_events(now: datetime) -> list[BillingEvent]:
    """Eve's two failed invoices, on the demo policy with the customer's conversation."""
    key, name, payment_method, currency, locale = TOGETHER
    suffix = f"{now:%H%M%S}"
    customer = CustomerProfile(
        customer_id=f"cus_demo_{key}_{suffix}",
        name=name,
        email=f"{key}@example.com",
        payment_method=payment_method,
        locale=locale,
        time_zone="Europe/London",
    )
    return [
        BillingEvent(
            invoice_id=f"in_demo_{key}_{n}_{suffix}",
            customer=customer,
            amount_due=amount,
            currency=currency,
            decline_code="insufficient_funds",
            failed_at=now,
            policy="demo_together",
        )
        for n, amount in enumerate(TOGETHER_AMOUNTS, start=1)
    ]


async def run_demo(client: Client, settings: Settings, store: CaseStore) -> list[StartResult]:
    """Start the demo cases and say where to watch them, with each case's recovery page: the
    link its messages carry, so the customer's side can be tried in a browser."""
    opener = CaseOpener.from_settings(settings)
    now = datetime.now(UTC)
    events = demo_events(now)
    results = [await opener.start(client, store, event) for event in events]
    pages = SelfService.from_settings(settings)
    for event, result in zip(events, results, strict=True):
        print(result.message, flush=True)
        name = event.customer.name or event.customer.customer_id
        print(f"  {name}'s recovery page: {pages.link_for(result.case_id, now)}", flush=True)
    together = together_events(now)
    results += [await opener.start(client, store, event) for event in together]
    customer_id = together[0].customer.customer_id
    print(
        f"{together[0].customer.name} owes two invoices and hears of both in one conversation: "
        f"`dunning customer show {customer_id}` (workflow customer-{customer_id})",
        flush=True,
    )
    print(f"  her account page: {pages.account_link_for(customer_id, now)}", flush=True)
    print("Watch them in the Temporal UI; they finish within about a minute.", flush=True)
    return results


def demo_expiring_card(now: datetime) -> SimulatedCard:
    """Dee's card, which expires at the end of this month: inside the 31-day (or, late in
    the month, the 7-day) window. Dee has no case, no time zone and no phone: contact hours
    cannot apply, so the notice goes out as soon as the run finds it."""
    suffix = f"{now:%H%M%S}"
    return SimulatedCard(
        # New each run, as the other demo customers are: a card gets one notice per window.
        payment_method=f"pm_demo_dee_{suffix}",
        customer_id=f"cus_demo_dee_{suffix}",
        brand="visa",
        last4="4242",
        exp_month=now.month,
        exp_year=now.year,
    )


async def run_pre_dunning_demo(client: Client, store: CaseStore) -> SimulatedCard:
    """Store Dee and her expiring card, then run the pre-dunning schedule once now (its
    daily time may be hours away): her notice lands in the outbox."""
    card = demo_expiring_card(datetime.now(UTC))
    store.upsert_customer(
        CustomerProfile(
            customer_id=card.customer_id,
            name="Dee Walker",
            email="dee@example.com",
            payment_method=card.payment_method,
        )
    )
    store.save_simulated_card(card)
    await run_pre_dunning_now(client)
    print(
        f"Pre-dunning: Dee's card expires at the end of {card.exp_month:02d}/{card.exp_year}; "
        "the schedule dunning-pre-dunning (Temporal UI, Schedules) runs now and emails her.",
        flush=True,
    )
    return card
