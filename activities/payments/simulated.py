"""A processor and a biller that need no account; the processor answers by payment-method token.

Tokens are the names of Stripe's test payment methods, so a demo or a test reads like one
run against Stripe's test mode. Answers are remembered by idempotency key in the store, as
Stripe does: the same key gives the same answer and never a second charge.
"""

from __future__ import annotations

import hashlib
import logging
import re

from activities.faults import Fault, injected_fault
from activities.payments import BILLERS, PROCESSORS, IdempotencyConflict
from activities.store import CaseStore, SimulatedCharge, utcnow
from workflows.models import (
    ChargeRequest,
    ChargeResult,
    InvoiceSettled,
    LateFeeRequest,
    LateFeeResult,
    WriteBackRequest,
    WriteBackResult,
)
from workflows.notice_windows import CardOnFile, Renewal, Upcoming

APPROVING_TOKENS = {
    "pm_card_visa",
    "pm_card_visa_debit",
    "pm_card_mastercard",
    "pm_card_mastercard_debit",
    "pm_card_amex",
    "pm_card_discover",
    "pm_card_jcb",
    "pm_card_unionpay",
}

DECLINING_TOKENS = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedLostCard": "lost_card",
    "pm_card_chargeDeclinedStolenCard": "stolen_card",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
    "pm_card_chargeDeclinedVelocityLimitExceeded": "card_velocity_exceeded",
    "pm_card_authenticationRequired": "authentication_required",
}

CARDS = {
    "pm_card_mastercard": ("mastercard", "US"),
    "pm_card_mastercard_debit": ("mastercard", "US"),
    "pm_card_amex": ("amex", "US"),
    "pm_card_discover": ("discover", "US"),
    "pm_card_jcb": ("jcb", "JP"),
    "pm_card_unionpay": ("unionpay", "CN"),
}
"""Brand and issuing country of the test cards that are not US Visa cards, as Stripe's."""

log = logging.getLogger("dunning.gateway")

# Not a Stripe token: declines with insufficient funds until attempt N, then approves.
RECOVERS_ON = re.compile(r"^pm_sim_recovers_on_attempt_(\d+)$")


def simulated_answer(request: ChargeRequest) -> ChargeResult:
    """The answer a token gets, before idempotency: pure, so tests can name expectations."""
    token = request.payment_method
    if token is None:
        return ChargeResult(approved=False, decline_code="no_payment_method")
    if token in APPROVING_TOKENS:
        return ChargeResult(approved=True)
    if token in DECLINING_TOKENS:
        return ChargeResult(approved=False, decline_code=DECLINING_TOKENS[token])
    if match := RECOVERS_ON.match(token):
        if request.attempt >= int(match.group(1)):
            return ChargeResult(approved=True)
        return ChargeResult(approved=False, decline_code="insufficient_funds")
    return ChargeResult(approved=False, decline_code="invalid_payment_method")


class GatewayUnavailable(RuntimeError):
    """An injected 5xx or timeout (`FAULT_RATE`): transient, the activity retries."""


class SimulatedProcessor:
    """`Processor` for demos and tests; charges are rows in the store. With a `fault_rate`,
    that share of calls fails as a flaky gateway's would (see `activities.faults`)."""

    def __init__(self, store: CaseStore, fault_rate: float = 0.0) -> None:
        self.store = store
        self.fault_rate = fault_rate

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Answer by token; replay the stored answer for a key already seen."""
        key = request.idempotency_key
        fault = injected_fault(self.fault_rate, key)
        if fault is Fault.UNAVAILABLE:
            raise GatewayUnavailable(f"simulated gateway: 503 for {key}")
        fingerprint = _fingerprint(request)
        stored = self.store.simulated_charge(key)
        if stored is None:
            answer = simulated_answer(request)
            stored = self.store.save_simulated_charge(
                SimulatedCharge(
                    idempotency_key=key,
                    fingerprint=fingerprint,
                    approved=answer.approved,
                    decline_code=answer.decline_code,
                    reference="ch_sim_" + fingerprint[:16],
                    created_at=utcnow(),
                )
            )
        if stored.fingerprint != fingerprint:
            raise IdempotencyConflict(f"idempotency key {key} was used with other parameters")
        if fault is Fault.TIMEOUT:  # charged, but the answer is lost: the retry replays it
            raise GatewayUnavailable(f"simulated gateway: timed out on {key}")
        return ChargeResult(
            approved=stored.approved,
            decline_code=stored.decline_code,
            reference=stored.reference,
            message="approved" if stored.approved else f"declined: {stored.decline_code}",
            **card_of(request.payment_method),
        )


class SimulatedBiller:
    """`Biller` for demos and tests: there is no biller behind the simulation, but the
    gateway's ledger keeps late fees (by idempotency key, as Stripe keeps invoice items) and
    holds cards and subscriptions (what pre-dunning reads)."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def add_late_fee(self, request: LateFeeRequest) -> LateFeeResult:
        """Record the fee item once per key; the same key with another amount is a conflict."""
        key = request.idempotency_key
        fingerprint = _fingerprint(request)
        stored = self.store.simulated_charge(key)
        if stored is None:
            stored = self.store.save_simulated_charge(
                SimulatedCharge(
                    idempotency_key=key,
                    fingerprint=fingerprint,
                    approved=True,
                    reference="ii_sim_" + fingerprint[:16],
                    created_at=utcnow(),
                )
            )
        if stored.fingerprint != fingerprint:
            raise IdempotencyConflict(f"idempotency key {key} was used with other parameters")
        return LateFeeResult(reference=stored.reference)

    def settlement(self, invoice_id: str) -> InvoiceSettled | None:
        """The simulated biller keeps no invoices: the biller's events (in the store) are
        the only word on them."""
        return None

    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Log what a real biller would be told."""
        log.info("write back %s for invoice %s", request.action, request.invoice_id)
        return WriteBackResult(done=True, detail="simulated")

    def upcoming(self, customer_id: str) -> Upcoming:
        """The ledger's card for the customer's payment method, and their active yearly
        subscriptions' renewals."""
        if self.store is None:
            return Upcoming()
        customer = self.store.get_customer(customer_id)
        held = None
        if customer is not None and customer.payment_method:
            held = self.store.simulated_card(customer.payment_method)
        card = None
        if held is not None:
            card = CardOnFile(
                payment_method=held.payment_method,
                brand=held.brand,
                last4=held.last4,
                exp_month=held.exp_month,
                exp_year=held.exp_year,
            )
        renewals = [
            Renewal(subscription_id=s.subscription_id, renews_at=s.renews_at)
            for s in self.store.simulated_subscriptions(customer_id)
            if s.status == "active" and s.interval == "year"
        ]
        return Upcoming(card=card, renewals=renewals)


def card_of(token: str | None) -> dict[str, str | None]:
    """The brand and country of the card a token names (none for a token that is no card)."""
    if token is None or not usable_token(token):
        return {"card_brand": None, "card_country": None}
    brand, country = CARDS.get(token, ("visa", "US"))
    return {"card_brand": brand, "card_country": country}


def usable_token(token: str) -> bool:
    """Whether the simulated processor knows `token` (it approves or declines it as Stripe's
    test card of that name would); any other is an invalid payment method."""
    return token in APPROVING_TOKENS or token in DECLINING_TOKENS or bool(RECOVERS_ON.match(token))


def _fingerprint(request: ChargeRequest | LateFeeRequest) -> str:
    """What must match for a key to be replayed: like Stripe, the request's parameters."""
    fields = request.model_dump(exclude={"attempt"})
    fields["key"] = request.idempotency_key
    return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()


PROCESSORS["simulated"] = lambda settings, store: SimulatedProcessor(store, settings.fault_rate)
BILLERS["simulated"] = lambda settings, store: SimulatedBiller(store)
