"""Payment gateways behind one protocol; the simulated one needs no account."""

from __future__ import annotations

from typing import Protocol

from workflows.models import (
    ChargeRequest,
    ChargeResult,
    InvoiceSettled,
    WriteBackRequest,
    WriteBackResult,
)


class GatewayConfigError(RuntimeError):
    """The gateway is misconfigured (bad key, wrong account): retrying cannot help."""


class IdempotencyConflict(RuntimeError):
    """An idempotency key came back with other parameters: a bug, never charge on it."""


class PaymentGateway(Protocol):
    """Charges invoices and writes outcomes back to the biller.

    Both calls must honour the request's idempotency key: the same key, the same answer and
    at most one effect. Raise on transient trouble (the activity retries), and
    `GatewayConfigError` when retrying cannot help."""

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge the invoice's amount, or say why the issuer declined."""
        ...

    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Tell the biller how a case ended (mark uncollectible, cancel the subscription)."""
        ...

    def settlement(self, invoice_id: str) -> InvoiceSettled | None:
        """Whether the biller shows the invoice paid, voided or written off; None when it is
        still open or the gateway keeps no invoices. Asked before every charge and reminder."""
        ...
