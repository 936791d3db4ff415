"""The demo: three cases on the demo policy that finish within about a minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from activities.notify.links import SelfService
from activities.store import CaseStore, CustomerProfile
from config.settings import Settings
from intake.cases import CaseOpener, StartResult
from intake.events import BillingEvent

DEMO_CUSTOMERS = [
    ("ana", "Ana Souza", "pm_sim_recovers_on_attempt_2", 4900, "USD", "insufficient_funds"),
    ("ben", "Ben Carter", "pm_card_chargeDeclinedStolenCard", 1999, "EUR", "stolen_card"),
    ("chie", "Chie Sato", "pm_card_chargeDeclinedInsufficientFunds", 4980, "JPY", "do_not_honor"),
]


def demo_events(now: datetime) -> list[BillingEvent]:
    """Three cases on the demo policy: one recovers on retry 2, one waits for a new card
    after a hard decline, one goes to collections."""
    suffix = f"{now:%H%M%S}"
    return [
        BillingEvent(
            invoice_id=f"in_demo_{key}_{suffix}",
            customer=CustomerProfile(
                customer_id=f"cus_demo_{key}",
                name=name,
                email=f"{key}@example.com",
                payment_method=payment_method,
            ),
            amount_due=amount,
            currency=currency,
            decline_code=decline_code,
            failed_at=now,
            policy="demo",
        )
        for key, name, payment_method, amount, currency, decline_code in DEMO_CUSTOMERS
    ]


async def run_demo(client: Client, settings: Settings, store: CaseStore) -> list[StartResult]:
    """Start the demo cases and say where to watch them, with each case's recovery page: the
    link its messages carry, so the customer's side can be tried in a browser."""
    opener = CaseOpener.from_settings(settings)
    now = datetime.now(UTC)
    events = demo_events(now)
    results = [await opener.start(client, store, event) for event in events]
    pages = recovery_pages(settings)
    for event, result in zip(events, results, strict=True):
        print(result.message, flush=True)
        name = event.customer.name or event.customer.customer_id
        print(f"  {name}'s recovery page: {pages.link_for(result.case_id, now)}", flush=True)
    print("Watch them in the Temporal UI; they finish within about a minute.", flush=True)
    return results


def recovery_pages(settings: Settings) -> SelfService:
    """The recovery page's links, signed as the worker signs the ones in messages."""
    return SelfService(
        url=settings.self_service_url,
        secret=settings.self_service_secret.get_secret_value(),
        valid_for=timedelta(days=settings.self_service_valid_days),
    )
