"""Payments in two roles: a processor moves money, a biller keeps the invoice.

Each provider is one module of this package that registers its processor, its biller or both
in `PROCESSORS` and `BILLERS` under the name `Settings.gateway` gives; `PROVIDERS` lists the
modules. The simulated provider needs no account.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Protocol, TypeVar

from workflows.models import (
    ChargeRequest,
    ChargeResult,
    InvoiceSettled,
    LateFeeRequest,
    LateFeeResult,
    WriteBackRequest,
    WriteBackResult,
)
from workflows.notice_windows import Upcoming

if TYPE_CHECKING:
    from activities.store import CaseStore
    from config.settings import Settings

# The modules that register providers: a new provider is a new module named here.
PROVIDERS = ("simulated", "stripe")


class GatewayConfigError(RuntimeError):
    """The provider is misconfigured (bad key, wrong account): retrying cannot help."""


class IdempotencyConflict(RuntimeError):
    """An idempotency key came back with other parameters: a bug, never charge on it."""


class Processor(Protocol):
    """Moves money for invoices: charges them (and, when a caller needs it, refunds).

    Must honour the request's idempotency key: the same key, the same answer and at most one
    charge. Raise on transient trouble (the activity retries), and `GatewayConfigError` when
    retrying cannot help."""

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge the invoice's amount, or say why the issuer declined."""
        ...


class Biller(Protocol):
    """Keeps the invoices and subscriptions: what it says about an invoice, and what it is told
    when a case ends. Raises as a `Processor` does; write-backs honour the request's key."""

    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Record how a case ended (mark paid or uncollectible, cancel the subscription)."""
        ...

    def settlement(self, invoice_id: str) -> InvoiceSettled | None:
        """Whether the biller shows the invoice paid, voided or written off; None when it is
        still open or the biller keeps no invoices. Asked before every charge and reminder."""
        ...

    def add_late_fee(self, request: LateFeeRequest) -> LateFeeResult:
        """Add a late fee to the customer's next invoice (an invoice that failed is final:
        it takes no new lines); the same key adds it once."""

    def upcoming(self, customer_id: str) -> Upcoming:
        """The customer's default card (with its expiry) and the next renewals of their
        yearly subscriptions: what pre-dunning warns about. Nothing for a customer the biller
        does not know. Reads only: safe to retry."""
        ...


Factory = TypeVar("Factory")
ProcessorFactory = Callable[["Settings", "CaseStore"], Processor]
BillerFactory = Callable[["Settings", "CaseStore"], Biller]

# Filled by the modules in `PROVIDERS` as they are imported: name -> factory(settings, store).
PROCESSORS: dict[str, ProcessorFactory] = {}
BILLERS: dict[str, BillerFactory] = {}


def processor_for(settings: Settings, store: CaseStore) -> Processor:
    """The processor `settings.gateway` names."""
    return _factory(PROCESSORS, "processor", settings.gateway)(settings, store)


def biller_for(settings: Settings, store: CaseStore) -> Biller:
    """The biller `settings.gateway` names."""
    return _factory(BILLERS, "biller", settings.gateway)(settings, store)


def _factory(registry: dict[str, Factory], role: str, name: str) -> Factory:
    for module in PROVIDERS:
        import_module(f"{__name__}.{module}")  # each registers itself on import
    if name not in registry:
        raise GatewayConfigError(f"no payment {role} named {name!r}: known are {sorted(registry)}")
    return registry[name]
