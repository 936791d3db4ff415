"""What Stripe says is coming up for a customer (pre-dunning): the default payment method's
card and expiry, and the next renewal of each active yearly subscription, through the real
`stripe` SDK against the local fake Stripe API (auth, paths and error bodies as Stripe's)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import stripe

from activities.payments import GatewayConfigError
from activities.payments.stripe import StripeBiller
from tests.support.fake_stripe import LEGACY_API_VERSION, FakeStripe
from workflows.notice_windows import CardOnFile, Renewal, Upcoming

API_KEY = "sk_test_x"
RENEWS = int(datetime(2027, 1, 15, 9, tzinfo=UTC).timestamp())


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(API_KEY) as server:
        yield server


@pytest.fixture
def biller(fake: FakeStripe) -> StripeBiller:
    return StripeBiller(API_KEY, fake.url)


def test_the_default_payment_methods_card_and_the_yearly_renewal_come_from_stripe(
    fake: FakeStripe, biller: StripeBiller
):
    fake.customers["cus_1"] = {"default_payment_method": "pm_1"}
    fake.cards["pm_1"] = ("mastercard", "GB")
    fake.card_expiries["pm_1"] = ("4444", 3, 2027)
    fake.add_subscription("sub_year", customer="cus_1", interval="year", current_period_end=RENEWS)
    fake.add_subscription("sub_month", customer="cus_1", interval="month")
    fake.add_subscription(
        "sub_ending", customer="cus_1", interval="year", cancel_at_period_end=True
    )
    fake.add_subscription("sub_gone", customer="cus_1", interval="year", status="canceled")
    fake.add_subscription("sub_theirs", customer="cus_2", interval="year")

    upcoming = biller.upcoming("cus_1")

    assert upcoming == Upcoming(
        card=CardOnFile(
            payment_method="pm_1", brand="mastercard", last4="4444", exp_month=3, exp_year=2027
        ),
        renewals=[
            Renewal(subscription_id="sub_year", renews_at=datetime(2027, 1, 15, 9, tzinfo=UTC))
        ],
    )
    [listed] = fake.requests_to("/v1/subscriptions")
    assert listed.form == {"customer": "cus_1", "status": "active", "limit": "100"}
    assert listed.headers["authorization"] == f"Bearer {API_KEY}"


def test_a_renewal_reads_the_period_end_where_an_older_api_version_puts_it(fake: FakeStripe):
    fake.add_subscription("sub_year", customer="cus_1", interval="year", current_period_end=RENEWS)
    biller = StripeBiller(API_KEY, fake.url)
    biller.client = stripe.StripeClient(
        API_KEY, stripe_version=LEGACY_API_VERSION, base_addresses={"api": fake.url}
    )

    [renewal] = biller.upcoming("cus_1").renewals

    assert renewal.renews_at == datetime(2027, 1, 15, 9, tzinfo=UTC)


def test_a_customer_without_a_default_card_has_only_renewals(
    fake: FakeStripe, biller: StripeBiller
):
    assert biller.upcoming("cus_new") == Upcoming()
    assert fake.requests_to("/v1/payment_methods/pm_1") == []


def test_a_default_method_deleted_at_stripe_leaves_only_the_renewals(
    fake: FakeStripe, biller: StripeBiller
):
    fake.customers["cus_1"] = {"default_payment_method": "pm_gone"}
    fake.detached_payment_methods.add("pm_gone")
    fake.add_subscription("sub_year", customer="cus_1", interval="year", current_period_end=RENEWS)

    upcoming = biller.upcoming("cus_1")

    assert upcoming.card is None
    assert [r.subscription_id for r in upcoming.renewals] == ["sub_year"]


def test_a_rejected_api_key_is_a_configuration_error(fake: FakeStripe):
    biller = StripeBiller("sk_test_wrong", fake.url)

    with pytest.raises(GatewayConfigError, match="STRIPE_API_KEY"):
        biller.upcoming("cus_1")
