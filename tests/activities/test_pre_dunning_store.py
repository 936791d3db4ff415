"""The simulated gateway's cards and subscriptions, and the customers a scan pages through, on
SQLite and PostgreSQL; and the simulated biller's answer to what is coming up."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.payments.simulated import SimulatedBiller
from activities.store import CaseStore, CustomerProfile, SimulatedCard, SimulatedSubscription
from workflows.notice_windows import CardOnFile, Renewal, Upcoming

RENEWS = datetime(2027, 1, 15, 9, tzinfo=UTC)


def card(**fields) -> SimulatedCard:
    values = {
        "payment_method": "pm_sim_1",
        "customer_id": "cus_1",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 3,
        "exp_year": 2027,
    }
    return SimulatedCard(**{**values, **fields})


def test_a_card_is_held_once_and_its_new_expiry_replaces_the_old(store: CaseStore):
    store.save_simulated_card(card())
    store.save_simulated_card(card(exp_year=2030))

    held = store.simulated_card("pm_sim_1")
    assert (held.exp_month, held.exp_year, held.last4) == (3, 2030, "4242")
    assert store.simulated_card("pm_other") is None


def test_a_customers_subscriptions_come_by_renewal_date(store: CaseStore):
    for subscription_id, month in (("sub_b", 6), ("sub_a", 2)):
        store.save_simulated_subscription(
            SimulatedSubscription(
                subscription_id=subscription_id,
                customer_id="cus_1",
                interval="year",
                renews_at=datetime(2027, month, 1, tzinfo=UTC),
            )
        )
    store.save_simulated_subscription(
        SimulatedSubscription(
            subscription_id="sub_other", customer_id="cus_2", interval="year", renews_at=RENEWS
        )
    )

    subscriptions = store.simulated_subscriptions("cus_1")

    assert [s.subscription_id for s in subscriptions] == ["sub_a", "sub_b"]
    assert subscriptions[0].renews_at == datetime(2027, 2, 1, tzinfo=UTC)


def test_a_scan_pages_through_every_customer_by_id(store: CaseStore):
    for customer_id in ("cus_c", "cus_a", "cus_b"):
        store.upsert_customer(CustomerProfile(customer_id=customer_id))

    first = store.customers(limit=2)
    rest = store.customers(after=first[-1].customer_id, limit=2)

    assert [c.customer_id for c in first] == ["cus_a", "cus_b"]
    assert [c.customer_id for c in rest] == ["cus_c"]


def test_the_simulated_biller_names_the_customers_card_and_yearly_renewals(store: CaseStore):
    store.upsert_customer(CustomerProfile(customer_id="cus_1", payment_method="pm_sim_1"))
    store.save_simulated_card(card())
    store.save_simulated_card(card(payment_method="pm_sim_old", exp_month=1))  # not the default
    for subscription_id, interval, status in (
        ("sub_year", "year", "active"),
        ("sub_month", "month", "active"),  # a monthly charge is no renewal to warn of
        ("sub_gone", "year", "canceled"),
    ):
        store.save_simulated_subscription(
            SimulatedSubscription(
                subscription_id=subscription_id,
                customer_id="cus_1",
                interval=interval,
                renews_at=RENEWS,
                status=status,
            )
        )

    upcoming = SimulatedBiller(store).upcoming("cus_1")

    assert upcoming == Upcoming(
        card=CardOnFile(
            payment_method="pm_sim_1", brand="visa", last4="4242", exp_month=3, exp_year=2027
        ),
        renewals=[Renewal(subscription_id="sub_year", renews_at=RENEWS)],
    )
    assert SimulatedBiller(store).upcoming("cus_unknown") == Upcoming()
