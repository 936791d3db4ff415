"""Payment gateways behind one protocol; the simulated one needs no account."""

from __future__ import annotations

from typing import Protocol

from workflows.models import ChargeRequest, ChargeResult


class GatewayConfigError(RuntimeError):
    """The gateway is misconfigured (bad key, wrong account): retrying cannot help."""


class IdempotencyConflict(RuntimeError):
    """An idempotency key came back with other parameters: a bug, never charge on it."""


class PaymentGateway(Protocol):
    """Charges an invoice. Must honour `request.idempotency_key`: the same key, the same
    answer and at most one charge. Raises on transient trouble (the activity retries)."""

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge the invoice's amount, or say why the issuer declined."""
        ...
