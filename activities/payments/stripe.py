"""Stripe as processor (pay invoices off-session, whole or by installments) and biller
(write outcomes back, read invoice status), through the official SDK.

Every call carries the request's idempotency key and the SDK's own network retries are off:
Temporal's activity retry is the only retry, and it sends the same key, so Stripe replays
the first answer instead of charging twice. Errors leave here as one of three kinds: a
declined `ChargeResult` (402), a transient Stripe error (429, 5xx, no answer: the activity
retries), or `GatewayConfigError` / `IdempotencyConflict` (401, 403, 404 and every other 4xx,
with or without Stripe's error body: retrying cannot help). Their messages are one line with
no email address or phone number, since they end up in workflow history.

The client speaks `STRIPE_API_VERSION`, whatever the SDK's default: an SDK upgrade must not
change the shapes Stripe answers with.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Self

import stripe

from activities.payments import BILLERS, PROCESSORS, GatewayConfigError, IdempotencyConflict
from activities.payments.stripe_objects import (
    card_facts,
    decline_codes,
    dig,
    object_id,
    payment_reference,
    stripe_card,
    yearly_renewal,
)
from activities.scrub import scrubbed
from config.settings import Settings
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
from workflows.policy import DeclineCodes, WriteBackAction

log = logging.getLogger("dunning.gateway")

# The API version every request names (2025-03-31.basil or later: invoices list their payments
# at /v1/invoice_payments and have no payment_intent, charge or paid field).
STRIPE_API_VERSION = "2026-10-28.endive"
# An invoice in one of these needs no dunning: what each means for the case.
SETTLED_STATUSES: dict[str, Literal["paid", "voided", "written_off"]] = {
    "paid": "paid",
    "void": "voided",
    "uncollectible": "written_off",
}
SUBSCRIPTION_ACTIONS = {
    WriteBackAction.CANCEL_SUBSCRIPTION_NOW,
    WriteBackAction.CANCEL_SUBSCRIPTION_AT_PERIOD_END,
}


class StripeAccount:
    """A Stripe client for one API key: what the processor and the biller are built on.

    Safe to retry: the same request sends the same idempotency key, and Stripe answers a
    repeated key with the stored response and never a second charge."""

    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        self.client = stripe.StripeClient(
            api_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,  # Temporal's activity retry is the only retry
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The account for `Settings` with ``GATEWAY=stripe``."""
        if settings.stripe_api_key is None:
            raise GatewayConfigError("GATEWAY=stripe needs STRIPE_API_KEY")
        return cls(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base)


class StripeProcessor(StripeAccount):
    """`Processor` over Stripe invoices: pays them in full, or one installment at a time with
    Stripe's partial payments, and reads why a payment was declined."""

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Pay what the invoice still owes off-session (its default method, or the request's);
        an amount below that is an installment: a PaymentIntent of that amount attached to
        the invoice. Safe to retry: every call carries the attempt's key."""
        try:
            invoice = self.client.v1.invoices.retrieve(request.invoice_id).to_dict()
        except stripe.StripeError as err:
            raise _translated(err, request.idempotency_key) from None
        # Only an open invoice takes an installment; any other keeps today's answers.
        remaining = invoice.get("amount_remaining")
        if invoice.get("status") == "open" and request.amount < _amount(remaining):
            return self._charge_installment(request, invoice)
        try:
            return self._pay(request)
        except stripe.IdempotencyError as err:
            if not invoice.get("amount_paid"):
                raise _translated(err, request.idempotency_key) from None
            # This attempt's installment was credited before its answer got back, leaving
            # no more than it to owe: the key is the installment's, and that replays.
            return self._charge_installment(request, invoice)

    def _pay(self, request: ChargeRequest) -> ChargeResult:
        """`invoices.pay`: the whole amount remaining. Raises `stripe.IdempotencyError` as is
        (the caller knows when the key went to an installment)."""
        params: dict[str, Any] = {"off_session": True, "expand": ["payments"]}
        if request.payment_method:
            params["payment_method"] = request.payment_method
        try:
            invoice = self.client.v1.invoices.pay(
                request.invoice_id,
                params=params,
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.IdempotencyError:
            raise
        except stripe.InvalidRequestError as err:
            if _already_paid(err):
                return ChargeResult(
                    approved=True, reference=request.invoice_id, message="invoice already paid"
                )
            return _refused(err, request.idempotency_key)
        except stripe.StripeError as err:
            return _refused(err, request.idempotency_key)
        fields = invoice.to_dict()
        status = fields.get("status")
        if status != "paid":
            # Bank debits settle days later: not money yet; `invoice.paid` will say when.
            return ChargeResult(
                approved=False,
                decline_code="payment_pending",
                reference=payment_reference(fields) or request.invoice_id,
                message=f"invoice {status}: payment not confirmed yet",
            )
        reference = payment_reference(fields)
        return ChargeResult(
            approved=True,
            reference=reference or request.invoice_id,
            message="paid",
            **self._card_of(reference),
        )

    def _card_of(self, intent_id: str | None) -> dict[str, str | None]:
        """The brand and country of the card a PaymentIntent charged (its latest charge's
        `payment_method_details`); unknown when Stripe cannot say: the charge stands."""
        if intent_id is None or not intent_id.startswith("pi_"):
            return card_facts(None)
        try:
            intent = self.client.v1.payment_intents.retrieve(
                intent_id, params={"expand": ["latest_charge"]}
            ).to_dict()
        except stripe.StripeError as err:
            log.warning("no card details for %s: %s", intent_id, type(err).__name__)
            return card_facts(None)
        return card_facts(dig(intent, "latest_charge", "payment_method_details", "card"))

    def _charge_installment(self, request: ChargeRequest, invoice: dict) -> ChargeResult:
        """One installment: a PaymentIntent of `request.amount` confirmed off-session, then
        attached to the invoice (Stripe's partial payments), which credits it once it
        succeeds. A retry replays both calls by their keys: one charge, one credit."""
        method = request.payment_method or object_id(invoice.get("default_payment_method"))
        try:
            method = method or self._customer_default_method(invoice.get("customer"))
        except stripe.StripeError as err:
            raise _translated(err, request.idempotency_key) from None
        if method is None:
            return ChargeResult(
                approved=False,
                decline_code="no_payment_method",
                message="no payment method on the invoice or the customer",
            )
        params: Any = {
            "amount": request.amount,
            "currency": invoice.get("currency"),
            "customer": object_id(invoice.get("customer")),
            "payment_method": method,
            "off_session": True,
            "confirm": True,
            "expand": ["latest_charge"],
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": request.idempotency_key}
            ).to_dict()
        except stripe.StripeError as err:
            return _refused(err, request.idempotency_key)
        status, intent_id = intent.get("status"), _text(intent.get("id"))
        if status not in ("succeeded", "processing"):
            codes = _intent_decline(intent) or DeclineCodes(decline_code="payment_pending")
            return ChargeResult(
                approved=False,
                **codes.model_dump(),
                payment_method=method,
                reference=intent_id,
                message=f"installment {status}",
            )
        # A processing intent is attached too: Stripe credits it the day it succeeds.
        attach_key = f"{request.idempotency_key}:attach"
        try:
            self.client.v1.invoices.attach_payment(
                request.invoice_id,
                params={"payment_intent": intent_id},
                options={"idempotency_key": attach_key},
            )
        except stripe.StripeError as err:
            if not _transient(err):  # a retry replays the charge and tries the attach again
                log.error(
                    "installment %s was charged but Stripe refused to attach it to invoice %s",
                    intent_id,
                    request.invoice_id,
                )
            raise _translated(err, attach_key) from None
        if status != "succeeded":
            # Bank debits settle days later: not money yet.
            return ChargeResult(
                approved=False,
                decline_code="payment_pending",
                payment_method=method,
                reference=intent_id,
                message="installment processing: payment not confirmed yet",
            )
        return ChargeResult(
            approved=True,
            payment_method=method,
            reference=intent_id,
            message="installment paid",
            **card_facts(dig(intent, "latest_charge", "payment_method_details", "card")),
        )

    def _customer_default_method(self, customer: Any) -> str | None:
        """The customer's default method for invoices, when the invoice names none."""
        customer_id = object_id(customer)
        if customer_id is None:
            return None
        found = self.client.v1.customers.retrieve(customer_id).to_dict()
        return _text(object_id(dig(found, "invoice_settings", "default_payment_method")))

    def invoice_decline(self, invoice_id: str) -> DeclineCodes | None:
        """The codes of the invoice's latest payment, which webhooks never carry (they expand
        nothing); None when it was not declined. Raises like `charge`. Invoice payments list
        every invoice's payments in the pinned version, whatever version sent the webhook."""
        try:
            payments = self.client.v1.invoice_payments.list(
                params={
                    "invoice": invoice_id,
                    "limit": 1,  # newest first
                    "expand": ["data.payment.payment_intent"],
                }
            ).to_dict()["data"]
        except stripe.StripeError as err:
            raise _translated(err, f"decline:{invoice_id}") from None
        return _intent_decline(dig(payments[0], "payment", "payment_intent")) if payments else None


class StripeBiller(StripeAccount):
    """`Biller` over Stripe invoices and subscriptions."""

    def settlement(self, invoice_id: str) -> InvoiceSettled | None:
        """The invoice's state at Stripe: paid, void or uncollectible settle it. Transient
        trouble is raised (the activity retries). A configuration error is logged and the
        invoice taken as open: this check runs before every message too, and a reminder must
        not fail on it; the charge that follows raises the same error as `GatewayConfigError`."""
        try:
            status = self.client.v1.invoices.retrieve(invoice_id).status
        except stripe.StripeError as err:
            if _transient(err):
                raise _translated(err, f"settlement:{invoice_id}") from None
            log.warning(
                "cannot read invoice %s at Stripe: %s (http %s)",
                invoice_id,
                type(err).__name__,
                err.http_status,
            )
            return None
        kind = SETTLED_STATUSES.get(status or "")
        return (
            None if kind is None else InvoiceSettled(kind=kind, source=f"Stripe: invoice {status}")
        )

    def write_back(self, request: WriteBackRequest) -> WriteBackResult:
        """Tell Stripe how the case ended; already in that state is not an error."""
        if request.action in SUBSCRIPTION_ACTIONS and request.subscription_id is None:
            return WriteBackResult(done=False, detail="no subscription")
        options: Any = {"idempotency_key": request.idempotency_key}
        invoices, subscriptions = self.client.v1.invoices, self.client.v1.subscriptions
        subscription = request.subscription_id
        try:
            match request.action:
                case WriteBackAction.MARK_UNCOLLECTIBLE:
                    invoices.mark_uncollectible(request.invoice_id, options=options)
                    return WriteBackResult(done=True, detail="invoice marked uncollectible")
                case WriteBackAction.MARK_PAID_OUT_OF_BAND:
                    invoices.pay(
                        request.invoice_id, params={"paid_out_of_band": True}, options=options
                    )
                    return WriteBackResult(done=True, detail="invoice marked paid out of band")
                case WriteBackAction.CANCEL_SUBSCRIPTION_NOW:
                    subscriptions.cancel(subscription, options=options)
                    return WriteBackResult(done=True, detail="subscription canceled")
                case WriteBackAction.CANCEL_SUBSCRIPTION_AT_PERIOD_END:
                    subscriptions.update(
                        subscription, params={"cancel_at_period_end": True}, options=options
                    )
                    return WriteBackResult(done=True, detail="subscription cancels at period end")
        except stripe.InvalidRequestError as err:
            # Stripe refuses an action on an object already past it (a canceled subscription
            # even reads as "no such subscription"): look before calling it an error.
            already = self._already_done(request, err)
            if already is None:
                raise _translated(err, request.idempotency_key) from None
            return WriteBackResult(done=False, detail=already)
        except stripe.StripeError as err:
            raise _translated(err, request.idempotency_key) from None
        raise ValueError(f"unknown write-back action {request.action!r}")

    def add_late_fee(self, request: LateFeeRequest) -> LateFeeResult:
        """A pending invoice item for the customer: Stripe adds items only to draft invoices,
        and the failed one is finalized, so the fee is billed on their next invoice."""
        key = request.idempotency_key
        params: Any = {
            "customer": request.customer_id,
            "amount": request.amount,
            "currency": request.currency.lower(),
            "description": f"Late fee for invoice {request.invoice_id}",
            "metadata": {"dunning_case": request.case_id, "invoice": request.invoice_id},
        }
        try:
            item = self.client.v1.invoice_items.create(
                params=params, options={"idempotency_key": key}
            )
        except stripe.StripeError as err:
            raise _translated(err, key) from None
        return LateFeeResult(reference=item.id)

    def upcoming(self, customer_id: str) -> Upcoming:
        """The customer's default payment method for invoices, when it is a card, and the
        next period end of each active yearly subscription that will renew (not one set to
        cancel at period end). A customer (or a default method) Stripe no longer has is
        answered with nothing; other errors are raised like `charge`'s."""
        key = f"upcoming:{customer_id}"
        customer = self._found(lambda: self.client.v1.customers.retrieve(customer_id), key)
        if customer is None or customer.get("deleted"):
            return Upcoming()
        card = None
        method = object_id(dig(customer, "invoice_settings", "default_payment_method"))
        if method is not None:
            found = self._found(lambda: self.client.v1.payment_methods.retrieve(method), key)
            card = stripe_card(method, found.get("card")) if found else None
        params: Any = {"customer": customer_id, "status": "active", "limit": 100}
        listed = self._found(lambda: self.client.v1.subscriptions.list(params=params), key)
        renewals = [
            renewal
            for subscription in (listed or {}).get("data") or []
            if (renewal := yearly_renewal(subscription)) is not None
        ]
        return Upcoming(card=card, renewals=renewals)

    @staticmethod
    def _found(call: Any, key: str) -> dict | None:
        """`call()`'s object as plain data; None when Stripe has no such object."""
        try:
            return call().to_dict()
        except stripe.InvalidRequestError as err:
            if err.code == "resource_missing":
                return None
            raise _translated(err, key) from None
        except stripe.StripeError as err:
            raise _translated(err, key) from None

    # The customer's pages: Stripe takes the payment and the card, 3-D Secure included.

    def payment_page_url(self, invoice_id: str) -> str | None:
        """The invoice's hosted page, where the customer pays it (None when Stripe has none:
        a draft invoice). Raises like `charge`."""
        try:
            invoice = self.client.v1.invoices.retrieve(invoice_id)
        except stripe.StripeError as err:
            raise _translated(err, f"invoice-page:{invoice_id}") from None
        return _text(invoice.to_dict().get("hosted_invoice_url"))

    def setup_session_url(
        self,
        customer_id: str,
        currency: str | None,
        success_url: str,
        cancel_url: str,
        case_id: str | None,
    ) -> str:
        """A Checkout Session in setup mode for the customer: the URL where they give a new
        card. Its `checkout.session.completed` makes the card their default (`adopt_setup`).
        A new session per call: creating one moves no money, and a stale one expires. With
        no case (the account page of a customer who owes nothing) it names none, and with no
        currency known it asks for a card, which Stripe then needs no currency for."""
        params: Any = {
            "mode": "setup",
            "customer": customer_id,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if currency:
            params["currency"] = currency.lower()
        else:
            params["payment_method_types"] = ["card"]
        if case_id:
            params["metadata"] = {"dunning_case": case_id}
            params["setup_intent_data"] = {"metadata": {"dunning_case": case_id}}
        try:
            session = self.client.v1.checkout.sessions.create(params=params)
        except stripe.StripeError as err:
            raise _translated(err, f"setup:{case_id or customer_id}") from None
        url = _text(session.to_dict().get("url"))
        if url is None:
            raise GatewayConfigError("Stripe answered a Checkout Session without a url")
        return url

    def adopt_setup(self, setup_intent_id: str, customer_id: str) -> str | None:
        """The card a completed setup collected, made the customer's default for invoices;
        None when the setup intent holds no payment method (it did not succeed). Safe to
        repeat: the update's key is the setup intent's."""
        try:
            intent = self.client.v1.setup_intents.retrieve(setup_intent_id).to_dict()
            method = intent.get("payment_method")
            method = _text(method.get("id") if isinstance(method, dict) else method)
            if method is None:
                return None
            self.client.v1.customers.update(
                customer_id,
                params={"invoice_settings": {"default_payment_method": method}},
                options={"idempotency_key": f"dunning:setup:{setup_intent_id}:default"},
            )
        except stripe.StripeError as err:
            raise _translated(err, f"dunning:setup:{setup_intent_id}:default") from None
        return method

    def _already_done(
        self, request: WriteBackRequest, err: stripe.InvalidRequestError
    ) -> str | None:
        """Why there is nothing to do, when the object is already where the action leads."""
        if request.action is WriteBackAction.MARK_PAID_OUT_OF_BAND and _already_paid(err):
            return "invoice already paid"
        try:
            if request.action in (
                WriteBackAction.MARK_UNCOLLECTIBLE,
                WriteBackAction.MARK_PAID_OUT_OF_BAND,
            ):
                status = self.client.v1.invoices.retrieve(request.invoice_id).status
                finished = {"uncollectible", "paid", "void"}
                if request.action is WriteBackAction.MARK_PAID_OUT_OF_BAND:
                    finished -= {"uncollectible"}  # Stripe can still mark those paid
                return f"invoice already {status}" if status in finished else None
            status = self.client.v1.subscriptions.retrieve(request.subscription_id).status
            return "subscription already canceled" if status == "canceled" else None
        except stripe.StripeError as lookup:
            raise _translated(lookup, request.idempotency_key) from None


PROCESSORS["stripe"] = lambda settings, store: StripeProcessor.from_settings(settings)
BILLERS["stripe"] = lambda settings, store: StripeBiller.from_settings(settings)


def _intent_decline(intent: Any) -> DeclineCodes | None:
    """A payment intent's last decline; one waiting for 3-D Secure with no error yet is
    Stripe's `authentication_required`."""
    if not isinstance(intent, dict):
        return None
    error = intent.get("last_payment_error")
    if isinstance(error, dict) and (error.get("decline_code") or error.get("code")):
        return decline_codes(error)
    if intent.get("status") == "requires_action":
        return DeclineCodes(decline_code="authentication_required")
    return None


def _declined(err: stripe.CardError) -> ChargeResult:
    """A 402 as the issuer and network said it, codes intact for the decline table."""
    body = _error_body(err)
    codes = decline_codes({"code": err.code, **body})
    method = body.get("payment_method") or dig(
        body, "payment_intent", "last_payment_error", "payment_method"
    )
    return ChargeResult(
        approved=False,
        **codes.model_dump(),
        payment_method=_text(dig(method, "id")),
        reference=_text(body.get("charge")) or _text(dig(body, "payment_intent", "id")),
        message=scrubbed(_text(body.get("message")) or err.user_message or "declined"),
    )


def _refused(err: stripe.StripeError, key: str) -> ChargeResult:
    """A charge Stripe did not make: a decline for the table (a card error, or a method that
    is gone), else raised as the error the activity raises."""
    if isinstance(err, stripe.CardError):
        return _declined(err)
    if isinstance(err, stripe.InvalidRequestError) and err.param == "payment_method":
        # A method detached or never the customer's: only a new one can pay.
        return ChargeResult(
            approved=False,
            decline_code="invalid_payment_method",
            message=scrubbed(err.user_message or "invalid payment method"),
        )
    raise _translated(err, key) from None


def _translated(err: stripe.StripeError, key: str) -> Exception:
    """The error the activity raises instead of `err`: retryable or not, and clean."""
    log.warning(
        "stripe %s (http %s, code %s, request %s)",
        type(err).__name__,
        err.http_status,
        err.code,
        err.request_id,
    )
    body = _error_body(err)
    message = scrubbed(_text(body.get("message")) or err.user_message or "")
    if isinstance(err, stripe.IdempotencyError):
        return IdempotencyConflict(f"idempotency key {key} was used with other parameters")
    if _transient(err):
        # Same type, so the activity retries; the SDK's own text names Stripe's support email.
        status = f"HTTP {err.http_status}" if err.http_status else "no response"
        clean = f"Stripe unavailable ({status}): {message}".rstrip(": ")
        if isinstance(err, stripe.APIConnectionError):
            clean = f"Stripe unreachable ({type(err.__context__ or err).__name__})"
        return type(err)(clean, http_status=err.http_status, headers=err.headers, code=err.code)
    if isinstance(err, stripe.AuthenticationError):
        return GatewayConfigError("Stripe rejected the API key (HTTP 401): check STRIPE_API_KEY")
    if isinstance(err, stripe.PermissionError):
        return GatewayConfigError(
            "Stripe refused the request (HTTP 403): the API key may not use this resource"
        )
    if isinstance(err, stripe.InvalidRequestError):
        code = err.code or "invalid_request_error"
        return GatewayConfigError(f"Stripe rejected the request ({code}): {message}")
    if not body:
        # Stripe always answers errors in its JSON: something else answered.
        return GatewayConfigError(
            f"HTTP {err.http_status} without Stripe's error body: check STRIPE_API_BASE"
        )
    return GatewayConfigError(
        f"Stripe error ({type(err).__name__}, HTTP {err.http_status}): {message}"
    )


def _transient(err: stripe.StripeError) -> bool:
    """Whether a later try of the same request may pass: rate limits, no answer, 5xx, and
    409 (a concurrent request with the same key; the SDK's own retry treats it so)."""
    if isinstance(err, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    status = err.http_status
    return isinstance(err, stripe.APIError) and (status is None or status >= 500 or status == 409)


def _already_paid(err: stripe.InvalidRequestError) -> bool:
    message = (_text(_error_body(err).get("message")) or err.user_message or "").lower()
    return err.code == "invoice_already_paid" or "already paid" in message


def _error_body(err: stripe.StripeError) -> dict:
    """The API's ``error`` object as plain data; empty when the body was not Stripe's JSON."""
    body = err.json_body if isinstance(err.json_body, dict) else {}
    error = body.get("error")
    return error if isinstance(error, dict) else {}


def _amount(value: Any) -> int:
    """An amount Stripe gave, 0 when missing."""
    return value if isinstance(value, int) else 0


def _text(value: Any, limit: int | None = None) -> str | None:
    """A code as text, cut to the model's limit; None for missing or empty."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    return text[:limit] if limit else text
