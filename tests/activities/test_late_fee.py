"""The late fee through the biller: with Stripe a pending invoice item (the failed invoice is
finalized and takes no new lines), driven through the real `stripe` SDK against the fake
Stripe API; with the simulated gateway an item in the store's ledger. Once per case, however
often the activity runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from activities.dunning import DunningActivities
from activities.payments import GatewayConfigError, IdempotencyConflict
from activities.payments.simulated import SimulatedBiller
from activities.payments.stripe import StripeBiller
from activities.store import CaseStore
from config.settings import Settings
from tests.support.fake_stripe import FakeStripe
from workflows.models import LateFeeRequest

API_KEY = "sk_test_fees"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(API_KEY) as server:
        yield server


@pytest.fixture
def biller(fake: FakeStripe) -> StripeBiller:
    return StripeBiller(API_KEY, fake.url)


def fee(amount: int = 500, case_id: str = "case-in_late") -> LateFeeRequest:
    return LateFeeRequest(
        case_id=case_id,
        invoice_id="in_late",
        customer_id="cus_late",
        amount=amount,
        currency="USD",
    )


# Stripe ------------------------------------------------------------------------------------


def test_stripe_fee_is_a_pending_item_for_the_customers_next_invoice(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    result = biller.add_late_fee(fee())

    [sent] = fake.requests_to("/v1/invoiceitems")
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["idempotency-key"] == "dunning:case-in_late:late-fee"
    assert sent.form["customer"] == "cus_late"
    assert (sent.form["amount"], sent.form["currency"]) == ("500", "usd")
    assert "invoice" not in sent.form  # not the failed invoice: it is finalized
    assert sent.form["metadata"] == {"dunning_case": "case-in_late", "invoice": "in_late"}
    [item] = fake.invoice_items.values()
    assert result.reference == item["id"]
    assert (item["amount"], item["invoice"]) == (500, None)


def test_stripe_fee_asked_twice_is_added_once(fake: FakeStripe, biller: StripeBiller) -> None:
    first = biller.add_late_fee(fee())
    again = biller.add_late_fee(fee())

    assert again.reference == first.reference
    assert len(fake.invoice_items) == 1


def test_stripe_fee_whose_answer_was_lost_is_replayed_on_retry(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    fake.lose_invoice_item_responses = 1

    with pytest.raises(stripe.APIConnectionError):
        biller.add_late_fee(fee())
    result = biller.add_late_fee(fee())

    [item] = fake.invoice_items.values()
    assert result.reference == item["id"]
    keys = {r.headers["idempotency-key"] for r in fake.requests_to("/v1/invoiceitems")}
    assert keys == {"dunning:case-in_late:late-fee"}


def test_stripe_outage_is_transient_and_nothing_is_added(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    fake.invoice_item_outages = [503]

    with pytest.raises(stripe.APIError, match="Stripe unavailable"):
        biller.add_late_fee(fee())
    assert fake.invoice_items == {}
    biller.add_late_fee(fee())
    assert len(fake.invoice_items) == 1


def test_stripe_fee_of_another_amount_under_the_same_key_is_a_conflict(
    fake: FakeStripe, biller: StripeBiller
) -> None:
    biller.add_late_fee(fee(500))

    with pytest.raises(IdempotencyConflict, match="dunning:case-in_late:late-fee"):
        biller.add_late_fee(fee(700))
    assert len(fake.invoice_items) == 1


def test_stripe_refusals_are_config_errors(fake: FakeStripe) -> None:
    with pytest.raises(GatewayConfigError, match="STRIPE_API_KEY"):
        StripeBiller("sk_test_wrong", fake.url).add_late_fee(fee())
    fake.invoice_item_outages = [403]
    with pytest.raises(GatewayConfigError, match="HTTP 403"):
        StripeBiller(API_KEY, fake.url).add_late_fee(fee())
    assert fake.invoice_items == {}


def test_fake_refuses_items_for_a_finalized_invoice(fake: FakeStripe) -> None:
    fake.add_invoice("in_open")
    client = stripe.StripeClient(API_KEY, base_addresses={"api": fake.url})

    with pytest.raises(stripe.InvalidRequestError, match="draft invoices"):
        client.v1.invoice_items.create(
            params={"customer": "cus_fake", "amount": 500, "currency": "usd", "invoice": "in_open"}
        )
    with pytest.raises(stripe.InvalidRequestError, match="Missing required param: customer"):
        client.v1.invoice_items.create(params={"amount": 500, "currency": "usd"})


def test_the_activity_adds_the_fee_through_the_configured_stripe_biller(
    fake: FakeStripe, tmp_path: Path
) -> None:
    settings = Settings(
        gateway="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=fake.url,
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        _env_file=None,
    )
    activities = DunningActivities.from_settings(settings)

    result = activities.add_late_fee(fee())

    assert result.reference in fake.invoice_items


# The simulated gateway ---------------------------------------------------------------------


def test_simulated_fee_is_kept_in_the_ledger_once(store: CaseStore) -> None:
    biller = SimulatedBiller(store)

    first = biller.add_late_fee(fee())
    again = biller.add_late_fee(fee())
    other = biller.add_late_fee(fee(case_id="case-in_other"))

    assert first.reference.startswith("ii_sim_")
    assert again == first
    assert other.reference != first.reference
    stored = store.simulated_charge("dunning:case-in_late:late-fee")
    assert stored is not None and stored.reference == first.reference


def test_simulated_fee_of_another_amount_under_the_same_key_is_a_conflict(
    store: CaseStore,
) -> None:
    biller = SimulatedBiller(store)
    biller.add_late_fee(fee(500))

    with pytest.raises(IdempotencyConflict):
        biller.add_late_fee(fee(900))
