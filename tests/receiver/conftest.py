"""The receiver's fixtures: over the test's time-skipping server, with Stripe, or offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.payments.stripe import StripeBiller, StripeProcessor
from activities.store import CaseStore
from tests.support.fake_stripe import FakeStripe
from tests.support.harness import Dunning
from tests.support.receiver import (
    STRIPE_API_KEY,
    Receiver,
    client_of,
    page_settings,
    receiver_settings,
    temporal_is_down,
)


@pytest.fixture
def receiver(dunning: Dunning, tmp_path: Path) -> Receiver:
    """The receiver on the test's time-skipping server and store (the worker's store)."""
    settings = receiver_settings(tmp_path, dunning.task_queue)
    return Receiver(settings, client_of(dunning), dunning.activities.store)


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    """A fake Stripe API that holds the invoices the test's events are about."""
    with FakeStripe(STRIPE_API_KEY) as server:
        yield server


@pytest.fixture
def stripe_receiver(dunning: Dunning, tmp_path: Path, stripe_api: FakeStripe) -> Receiver:
    """The receiver with GATEWAY=stripe: it asks `stripe_api` for a decline a webhook lacks."""
    settings = receiver_settings(
        tmp_path,
        dunning.task_queue,
        gateway="stripe",
        stripe_api_key=STRIPE_API_KEY,
        stripe_api_base=stripe_api.url,
    )
    return Receiver(settings, client_of(dunning), dunning.activities.store)


@pytest.fixture
def offline(tmp_path: Path) -> Receiver:
    """The receiver with no Temporal behind it, for what is answered before any case."""
    store = CaseStore(f"sqlite:///{tmp_path / 'offline.db'}")
    store.create_schema()
    return Receiver(receiver_settings(tmp_path), temporal_is_down, store)


@pytest.fixture
def pages(dunning: Dunning, tmp_path: Path) -> Receiver:
    """The receiver for the customer's pages, signing links with the worker's secret."""
    return Receiver(page_settings(dunning, tmp_path), client_of(dunning), dunning.activities.store)


@pytest.fixture
def stripe_pages(dunning: Dunning, tmp_path: Path, stripe_api: FakeStripe) -> Receiver:
    """The same with GATEWAY=stripe, and the worker charging through the fake Stripe too."""
    dunning.activities.processor = StripeProcessor(STRIPE_API_KEY, stripe_api.url)
    dunning.activities.biller = StripeBiller(STRIPE_API_KEY, stripe_api.url)
    settings = page_settings(
        dunning,
        tmp_path,
        gateway="stripe",
        stripe_api_key=STRIPE_API_KEY,
        stripe_api_base=stripe_api.url,
    )
    return Receiver(settings, client_of(dunning), dunning.activities.store)
