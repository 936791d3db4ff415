"""A local Stripe API for adapter tests: Stripe's paths, auth, idempotency and error bodies.

It speaks the wire format the official SDK sends (form-encoded POST bodies, Bearer auth, an
`Idempotency-Key` header) and answers with objects shaped like Stripe's, so the real
`stripe` client parses them. A test scripts each invoice (pays, declines, is rate limited or
down first, loses its response) and reads back every request and every charge.

Idempotency works as Stripe documents it for API v1: rate limiting and outages happen before
the idempotency layer (nothing is stored, a retry runs afresh); once an endpoint runs, its
status and body are stored under the key and a repeat with the same parameters gets them
back byte for byte, with ``Idempotent-Replayed: true``, even when they were an error; the
same key with other parameters is a 400 ``idempotency_error``. GET and DELETE ignore keys.

An invoice takes installments as Stripe's partial payments do: a PaymentIntent confirmed at
`POST /v1/payment_intents` (declined by the script of its customer's open invoice, since the
card is the customer's) and attached at `POST /v1/invoices/{id}/attach_payment`, which
credits it to the invoice once it has succeeded.

Both invoice shapes are served, chosen per request by the `Stripe-Version` header (the
account's default version when none is sent, as Stripe does): since 2025-03-31.basil an
invoice has no `payment_intent`, `charge` or `paid` and its payments are listed at
`/v1/invoice_payments`; before it, those fields are on the invoice. Expanding a field the
version does not have is Stripe's 400.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.fake_http import LocalServer

BASIL = "2025-03-31.basil"
LEGACY_API_VERSION = "2024-06-20"
ERROR_DOCS = "https://docs.stripe.com/error-codes"


@dataclass
class Decline:
    """How the issuer and network refuse a charge: a 402 ``card_error``."""

    decline_code: str | None
    advice_code: str | None = None
    network_decline_code: str | None = None
    network_advice_code: str | None = None
    brand: str = "visa"
    country: str = "US"
    code: str = "card_declined"
    message: str = "Your card was declined."


@dataclass
class Invoice:
    """An invoice and its script; fields change as requests act on it."""

    id: str
    amount_due: int = 4980
    currency: str = "usd"
    customer: str = "cus_fake"
    subscription: str | None = None
    status: str = "open"
    decline: Decline | None = None
    """Every charge declines like this, but of a method in `approves`."""
    approves: set[str] = field(default_factory=set)
    """Payment methods that pay even when `decline` is scripted: a new card."""
    outages: list[int] = field(default_factory=list)
    """Statuses (401, 403, 404, 429, 500, 503) answered before the request runs, one per
    request to the invoice or its payments, not stored."""
    failures: list[int] = field(default_factory=list)
    """Statuses (500) the charge fails with after it started: stored under the key."""
    lose_responses: int = 0
    """Payments (`pay`, `attach_payment`) that run and are stored, then the connection
    closes with no answer."""
    settles: bool = True
    """False: a bank debit still processing, the invoice stays open after paying."""
    attempt_count: int = 0
    amount_paid: int = 0
    paid_out_of_band: bool = False
    payment_intent: str | None = None
    default_payment_method: str | None = "pm_fake_default"
    payments: list[str] = field(default_factory=list)
    """Its PaymentIntents, oldest first: its own (`pay`) and the installments attached."""
    last_decline: Decline | None = None
    """The decline of the latest attempt (Stripe's own, before the case, when scripted): its
    payment intent's `last_payment_error`."""
    charged_method: str | None = None
    """The payment method its own payment intent last charged."""

    def __post_init__(self) -> None:
        if self.last_decline is not None:
            self.payment_intent = self.payment_intent or _id("pi")


@dataclass
class PaymentIntent:
    """A PaymentIntent created through the API: an installment of an invoice."""

    id: str
    amount: int
    currency: str
    customer: str
    payment_method: str
    status: str
    """succeeded, processing (a bank debit) or requires_payment_method (declined)."""
    latest_charge: str
    decline: Decline | None = None
    invoice: str | None = None
    """The invoice it is attached to."""


@dataclass
class Subscription:
    """A subscription; canceled ones stay readable but refuse cancel and most updates."""

    id: str
    customer: str = "cus_fake"
    status: str = "active"
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    interval: str = "month"
    """Its price's billing interval: month or year."""
    current_period_end: int | None = None
    """When the period ends and it renews (unix seconds); default: ten days from now."""


@dataclass
class CheckoutSession:
    """A Checkout Session in setup mode and the SetupIntent Stripe made with it."""

    id: str
    customer: str
    currency: str
    success_url: str
    cancel_url: str
    setup_intent: str
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "open"
    payment_method: str | None = None
    """The card the customer gave, once the session completes."""

    @property
    def url(self) -> str:
        return f"https://checkout.stripe.com/c/pay/{self.id}"


@dataclass
class Request:
    """One request as it arrived; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, Any]
    raw_body: str


@dataclass
class Charge:
    """One charge the card network saw (a replay or an outage is none)."""

    invoice: str | None
    """The invoice whose script decided it; None for a customer with no open invoice."""
    payment_method: str
    amount: int
    approved: bool
    decline_code: str | None = None


@dataclass
class _Stored:
    fingerprint: tuple
    status: int
    body: bytes
    request_id: str


def decode_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding back to data: ``a[b]=1`` nests, ``a[0]=x`` and ``a[]=x`` make
    a list."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if key.endswith("[]"):
            node.setdefault(parts[-1], {})[str(len(node.get(parts[-1], {})))] = value
        else:
            node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {key: _lists(value) for key, value in node.items()}
    if node and all(key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class _Reply(Exception):
    """An API answer raised from deep in a handler."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, type_: str, message: str, **fields: Any) -> _Reply:
    return _Reply(status, {"error": {"message": message, "type": type_, **fields}})


def _missing(kind: str, object_id: str) -> _Reply:
    return _error(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param="id",
        doc_url=f"{ERROR_DOCS}/resource-missing",
    )


class FakeStripe(LocalServer):
    """A Stripe API on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(
        self, api_key: str = "sk_test_fake", account_api_version: str = LEGACY_API_VERSION
    ) -> None:
        self.api_key = api_key
        self.account_api_version = account_api_version
        """What a request without a `Stripe-Version` header gets: an older account's default."""
        self.wrong_base = False
        """True: answer everything like a web server that is not Stripe (a non-JSON 404)."""
        self.invoices: dict[str, Invoice] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.requests: list[Request] = []
        self.attempts: list[Charge] = []
        self.detached_payment_methods: set[str] = set()
        self.checkout_sessions: dict[str, CheckoutSession] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        """Customers' `invoice_settings` (a test's or updated through the API), by id; any
        other customer exists with no default payment method."""
        self.payment_intents: dict[str, PaymentIntent] = {}
        self.cards: dict[str, tuple[str, str]] = {}
        """Brand and issuing country of payment methods (a test's); any other is a US Visa."""
        self.invoice_items: dict[str, dict[str, Any]] = {}
        """Pending invoice items (late fees) created through the API, by id."""
        self.invoice_item_outages: list[int] = []
        """Statuses answered to `POST /v1/invoiceitems` before it runs, one per request."""
        self.lose_invoice_item_responses = 0
        """Invoice items created and stored under their key whose answer is then lost."""
        self.card_expiries: dict[str, tuple[str, int, int]] = {}
        """Last 4 digits, expiry month and year of payment methods (a test's); any other
        is 4242, expiring 12/2034."""
        self._stored: dict[tuple[str, str], _Stored] = {}
        self._lock = threading.RLock()
        self._start_server(self._handler())

    # Test side ----------------------------------------------------------------------------

    def add_invoice(self, invoice_id: str, **script: Any) -> Invoice:
        """An open invoice, scripted by `Invoice`'s fields."""
        invoice = Invoice(id=invoice_id, **script)
        self.invoices[invoice_id] = invoice
        return invoice

    def add_subscription(self, subscription_id: str, **fields: Any) -> Subscription:
        """An active subscription, unless `fields` say otherwise."""
        subscription = Subscription(id=subscription_id, **fields)
        self.subscriptions[subscription_id] = subscription
        return subscription

    def complete_checkout(self, session_id: str, payment_method: str) -> dict:
        """The customer gives `payment_method` on a setup session's page: the session and its
        SetupIntent complete. The session as `checkout.session.completed` carries it."""
        session = self.checkout_sessions[session_id]
        session.status, session.payment_method = "complete", payment_method
        return self._session_body(session)

    @property
    def charges(self) -> list[Charge]:
        """Charges that took money."""
        return [charge for charge in self.attempts if charge.approved]

    def requests_to(self, path: str) -> list[Request]:
        """Every request to `path`, in order of arrival."""
        return [request for request in self.requests if request.path == path]

    # Server side --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

            def do_DELETE(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read `fake.requests`, not stderr

        return Handler

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        url = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        raw_body = http.rfile.read(length).decode() if length else ""
        form = decode_form(raw_body if http.command == "POST" else url.query)
        headers = {name.lower(): value for name, value in http.headers.items()}
        request = Request(http.command, url.path, headers, form, raw_body)
        with self._lock:
            self.requests.append(request)
            answer = self._answer(request) if not self.wrong_base else _NOT_STRIPE
        if answer is None:
            http.close_connection = True  # the response is lost on the way back
            return
        status, body, extra = answer
        http.send_response(status)
        extra = {"Content-Type": "application/json", **extra}
        if not self.wrong_base:
            extra["Stripe-Version"] = self._version(request)
        http.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(body)

    def _answer(self, request: Request) -> tuple[int, bytes, dict[str, str]] | None:
        request_id = _id("req")
        headers = {"Request-Id": request_id}
        try:
            key = self._authorize(request)
            self._outage(request)
        except _Reply as reply:
            return reply.status, _encode(reply.body), headers
        idempotency_key = request.headers.get("idempotency-key")
        if request.method != "POST" or not idempotency_key:
            status, body = self._run(request)
            return status, _encode(body), headers
        headers["Idempotency-Key"] = idempotency_key
        fingerprint = (request.method, request.path, sorted(parse_qsl(request.raw_body)))
        stored = self._stored.get((key, idempotency_key))
        if stored is not None:
            if stored.fingerprint != fingerprint:
                body = {
                    "error": {
                        "message": "Keys for idempotent requests can only be used with the "
                        "same parameters they were first used with. Try using a key other "
                        f"than '{idempotency_key}' if you meant to execute a different "
                        "request.",
                        "type": "idempotency_error",
                    }
                }
                return 400, _encode(body), headers
            headers["Idempotent-Replayed"] = "true"
            headers["Original-Request"] = stored.request_id
            return stored.status, stored.body, headers
        status, body = self._run(request)
        encoded = _encode(body)
        self._stored[(key, idempotency_key)] = _Stored(fingerprint, status, encoded, request_id)
        headers["Original-Request"] = request_id
        invoice = self._invoice_of(request)
        paying = request.path.endswith(("/pay", "/attach_payment"))
        if invoice is not None and invoice.lose_responses > 0 and paying:
            invoice.lose_responses -= 1
            return None
        if request.path == "/v1/invoiceitems" and self.lose_invoice_item_responses > 0:
            self.lose_invoice_item_responses -= 1
            return None
        return status, encoded, headers

    def _authorize(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            raise _error(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        if key != self.api_key:
            raise _error(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}",
            )
        return key

    def _version(self, request: Request) -> str:
        return request.headers.get("stripe-version") or self.account_api_version

    def _legacy(self, form: dict) -> bool:
        """Whether the request speaks an API version from before basil."""
        return form["_version"] < BASIL

    def _outage(self, request: Request) -> None:
        """Rate limits and outages come before Stripe runs the request: nothing is stored."""
        invoice = self._invoice_of(request)
        if request.path == "/v1/invoiceitems" and self.invoice_item_outages:
            status = self.invoice_item_outages.pop(0)
        elif invoice is None or not invoice.outages:
            return
        else:
            status = invoice.outages.pop(0)
        if status == 401:
            raise _error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        if status == 403:
            raise _error(
                403,
                "invalid_request_error",
                "The provided key 'rk_test_****' does not have the required permissions for "
                "this endpoint on account 'acct_fake'.",
            )
        if status == 404:
            raise _missing("invoice", invoice.id)
        if status == 429:
            raise _error(
                429,
                "invalid_request_error",
                "Too many requests hit the API too quickly. We recommend an exponential "
                "backoff of your requests.",
                code="rate_limit",
                doc_url=f"{ERROR_DOCS}/rate-limit",
            )
        raise _error(status, "api_error", "An unknown error occurred while processing.")

    def _invoice_of(self, request: Request) -> Invoice | None:
        match = re.match(r"^/v1/invoices/([^/]+)", request.path)
        if match:
            return self.invoices.get(match.group(1))
        if request.path == "/v1/invoice_payments":
            return self.invoices.get(str(request.form.get("invoice")))
        return None

    def _run(self, request: Request) -> tuple[int, dict]:
        routes = [
            ("POST", r"^/v1/invoices/([^/]+)/pay$", self._pay),
            ("POST", r"^/v1/invoices/([^/]+)/mark_uncollectible$", self._mark_uncollectible),
            ("POST", r"^/v1/invoices/([^/]+)/attach_payment$", self._attach_payment),
            ("GET", r"^/v1/invoices/([^/]+)$", self._get_invoice),
            ("GET", r"^/v1/invoice_payments()$", self._list_invoice_payments),
            ("POST", r"^/v1/payment_intents()$", self._create_payment_intent),
            ("GET", r"^/v1/payment_intents/([^/]+)$", self._get_payment_intent),
            ("DELETE", r"^/v1/subscriptions/([^/]+)$", self._cancel),
            ("POST", r"^/v1/subscriptions/([^/]+)$", self._update_subscription),
            ("GET", r"^/v1/subscriptions/([^/]+)$", self._get_subscription),
            ("POST", r"^/v1/checkout/sessions()$", self._create_checkout_session),
            ("GET", r"^/v1/setup_intents/([^/]+)$", self._get_setup_intent),
            ("POST", r"^/v1/customers/([^/]+)$", self._update_customer),
            ("POST", r"^/v1/invoiceitems()$", self._create_invoice_item),
            ("GET", r"^/v1/customers/([^/]+)$", self._get_customer),
            ("GET", r"^/v1/payment_methods/([^/]+)$", self._get_payment_method),
            ("GET", r"^/v1/subscriptions()$", self._list_subscriptions),
        ]
        try:
            for method, pattern, route in routes:
                match = re.match(pattern, request.path)
                if match and request.method == method:
                    form = {**request.form, "_version": self._version(request)}
                    return 200, route(match.group(1), form)
            raise _error(
                404,
                "invalid_request_error",
                f"Unrecognized request URL ({request.method}: {request.path}).",
            )
        except _Reply as reply:
            return reply.status, reply.body

    # Endpoints ----------------------------------------------------------------------------

    def _pay(self, invoice_id: str, form: dict) -> dict:
        invoice = self._find_invoice(invoice_id)
        if invoice.status == "paid":
            raise _error(400, "invalid_request_error", "Invoice is already paid")
        if invoice.status == "void":
            raise _error(400, "invalid_request_error", "This invoice is no longer payable.")
        if form.get("paid_out_of_band") == "true":
            invoice.status, invoice.paid_out_of_band = "paid", True
            return self._invoice_body(invoice, form)
        if invoice.failures:
            raise _error(
                invoice.failures.pop(0), "api_error", "An unknown error occurred while processing."
            )
        method = (
            form.get("payment_method")
            or invoice.default_payment_method
            or self._default_method(invoice.customer)
        )
        if method is None:
            raise _error(
                400,
                "invalid_request_error",
                "This customer has no attached payment source or default payment method.",
            )
        self._check_attached(method)
        invoice.charged_method = method
        invoice.attempt_count += 1
        invoice.payment_intent = invoice.payment_intent or _id("pi")
        if invoice.payment_intent not in invoice.payments:
            invoice.payments.append(invoice.payment_intent)
        decline = None if method in invoice.approves else invoice.decline
        invoice.last_decline = decline
        # The invoice's own payment intent asks for what is left after any installments.
        remaining = invoice.amount_due - invoice.amount_paid
        if decline is not None:
            self.attempts.append(Charge(invoice.id, method, remaining, False, decline.decline_code))
            raise _Reply(
                402,
                self._card_error(
                    invoice.customer, method, decline, self._default_intent_summary(invoice)
                ),
            )
        self.attempts.append(Charge(invoice.id, method, remaining, True))
        if invoice.settles:
            invoice.status, invoice.amount_paid = "paid", invoice.amount_due
        return self._invoice_body(invoice, form)

    def _create_payment_intent(self, _: str, form: dict) -> dict:
        """`POST /v1/payment_intents`, confirmed off-session at once (what an installment
        sends); the customer's open invoice scripts the card's answer."""
        for name in ("amount", "currency"):
            if not form.get(name):
                raise _error(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {name}.",
                    code="parameter_missing",
                    param=name,
                )
        if form.get("confirm") != "true" or form.get("off_session") != "true":
            raise _error(400, "invalid_request_error", "The fake confirms off-session only.")
        method, customer = form.get("payment_method"), str(form.get("customer") or "")
        if not method:
            raise _error(
                400,
                "invalid_request_error",
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        self._check_attached(method)
        script = self._open_invoice_of(customer)
        if script is not None and script.failures:
            raise _error(
                script.failures.pop(0), "api_error", "An unknown error occurred while processing."
            )
        decline = None
        if script is not None and method not in script.approves:
            decline = script.decline
        settles = script is None or script.settles
        intent = PaymentIntent(
            id=_id("pi"),
            amount=int(form["amount"]),
            currency=str(form.get("currency") or ""),
            customer=customer,
            payment_method=method,
            status="requires_payment_method"
            if decline
            else "succeeded"
            if settles
            else "processing",
            latest_charge=_id("ch"),
            decline=decline,
        )
        self.payment_intents[intent.id] = intent
        invoice_id = script.id if script else None
        if decline is not None:
            self.attempts.append(
                Charge(invoice_id, method, intent.amount, False, decline.decline_code)
            )
            summary = self._intent_summary(intent)
            raise _Reply(402, self._card_error(customer, method, decline, summary))
        self.attempts.append(Charge(invoice_id, method, intent.amount, True))
        return self._expanded_intent(self._created_intent_body(intent), form)

    def _attach_payment(self, invoice_id: str, form: dict) -> dict:
        """`POST /v1/invoices/{id}/attach_payment`: a succeeded PaymentIntent is credited at
        once; a processing one is attached, to be credited when it succeeds."""
        invoice = self._find_invoice(invoice_id)
        intent_id = str(form.get("payment_intent") or "")
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise _error(
                400,
                "invalid_request_error",
                f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
                param="payment_intent",
                doc_url=f"{ERROR_DOCS}/resource-missing",
            )
        if intent.invoice is not None:
            raise _error(
                400,
                "invalid_request_error",
                f"The PaymentIntent {intent.id} is already attached to invoice {intent.invoice}.",
                param="payment_intent",
            )
        if invoice.status != "open":
            raise _error(
                400,
                "invalid_request_error",
                f"You can only attach payments to an open invoice; this one is {invoice.status}.",
            )
        if (intent.customer, intent.currency) != (invoice.customer, invoice.currency):
            raise _error(
                400,
                "invalid_request_error",
                "The PaymentIntent must have the same customer and currency as the invoice.",
                param="payment_intent",
            )
        if intent.amount > invoice.amount_due - invoice.amount_paid:
            raise _error(
                400,
                "invalid_request_error",
                "The PaymentIntent's amount is more than the invoice's amount remaining.",
                param="payment_intent",
            )
        intent.invoice = invoice.id
        invoice.payments.append(intent.id)
        if intent.status == "succeeded":
            invoice.amount_paid += intent.amount
            if invoice.amount_paid >= invoice.amount_due:
                invoice.status = "paid"
        return self._invoice_body(invoice, form)

    def _mark_uncollectible(self, invoice_id: str, form: dict) -> dict:
        invoice = self._find_invoice(invoice_id)
        if invoice.status != "open":
            raise _error(
                400,
                "invalid_request_error",
                f"You can only mark an open invoice as uncollectible; this one is "
                f"{invoice.status}.",
            )
        invoice.status = "uncollectible"
        return self._invoice_body(invoice, form)

    def _get_invoice(self, invoice_id: str, form: dict) -> dict:
        return self._invoice_body(self._find_invoice(invoice_id), form)

    def _list_invoice_payments(self, _: str, form: dict) -> dict:
        """`GET /v1/invoice_payments?invoice=...`, newest first; expands the payment intent."""
        invoice = self._find_invoice(str(form.get("invoice")))
        expand = form.get("expand") or []
        unknown = [path for path in expand if path != "data.payment.payment_intent"]
        if unknown:
            raise _not_expandable(unknown[0])
        return {
            "object": "list",
            "data": self._invoice_payments(invoice, expand=bool(expand)),
            "has_more": False,
            "url": "/v1/invoice_payments",
        }

    def _get_payment_intent(self, intent_id: str, form: dict) -> dict:
        if intent_id in self.payment_intents:
            return self._expanded_intent(
                self._created_intent_body(self.payment_intents[intent_id]), form
            )
        for invoice in self.invoices.values():
            if invoice.payment_intent == intent_id:
                return self._expanded_intent(self._intent_body(invoice), form)
        raise _missing("payment_intent", intent_id)

    def _expanded_intent(self, intent: dict, form: dict) -> dict:
        """A payment intent with what `expand` asks for: its `latest_charge`, the Charge with
        the card's `payment_method_details`."""
        expand = form.get("expand") or []
        unknown = [path for path in expand if path != "latest_charge"]
        if unknown:
            raise _not_expandable(unknown[0])
        if expand and intent.get("latest_charge"):
            intent["latest_charge"] = self._charge_body(intent)
        return intent

    def _cancel(self, subscription_id: str, form: dict) -> dict:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.status == "canceled":
            # Stripe's answer for a canceled subscription too, though it can still be read.
            raise _missing("subscription", subscription_id)
        subscription.status, subscription.canceled_at = "canceled", int(time.time())
        return self._subscription_body(subscription)

    def _update_subscription(self, subscription_id: str, form: dict) -> dict:
        subscription = self._find_subscription(subscription_id)
        if subscription.status == "canceled":
            raise _error(
                400,
                "invalid_request_error",
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        if "cancel_at_period_end" in form:
            subscription.cancel_at_period_end = form["cancel_at_period_end"] == "true"
            subscription.canceled_at = (
                int(time.time()) if subscription.cancel_at_period_end else None
            )
        return self._subscription_body(subscription)

    def _get_subscription(self, subscription_id: str, form: dict) -> dict:
        return self._subscription_body(self._find_subscription(subscription_id))

    def _create_checkout_session(self, _: str, form: dict) -> dict:
        """`POST /v1/checkout/sessions`: setup mode only (what dunning asks for)."""
        mode = form.get("mode")
        if mode not in ("setup", "payment", "subscription"):
            raise _error(
                400,
                "invalid_request_error",
                "Missing required param: mode.",
                code="parameter_missing",
                param="mode",
            )
        if mode != "setup":
            raise _error(400, "invalid_request_error", "The fake serves setup mode only.")
        # Stripe needs a currency in setup mode unless the payment method types are named.
        required = (
            ("success_url",) if form.get("payment_method_types") else ("success_url", "currency")
        )
        for name in required:
            if not form.get(name):
                raise _error(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {name}.",
                    code="parameter_missing",
                    param=name,
                )
        session = CheckoutSession(
            id=f"cs_test_{secrets.token_hex(12)}",
            customer=str(form.get("customer") or ""),
            currency=str(form.get("currency") or ""),
            success_url=str(form["success_url"]),
            cancel_url=str(form.get("cancel_url") or ""),
            setup_intent=_id("seti"),
            metadata=dict(form.get("metadata") or {}),
        )
        self.checkout_sessions[session.id] = session
        return self._session_body(session)

    def _get_setup_intent(self, intent_id: str, form: dict) -> dict:
        for session in self.checkout_sessions.values():
            if session.setup_intent == intent_id:
                return {
                    "id": intent_id,
                    "object": "setup_intent",
                    "customer": session.customer or None,
                    "livemode": False,
                    "mandate": None,
                    "metadata": session.metadata,
                    "payment_method": session.payment_method,
                    "payment_method_types": ["card"],
                    "status": "succeeded" if session.payment_method else "requires_payment_method",
                    "usage": "off_session",
                }
        raise _missing("setup_intent", intent_id)

    def _create_invoice_item(self, _: str, form: dict) -> dict:
        """`POST /v1/invoiceitems` with no `invoice`: a pending item the customer's next
        invoice bills. An item for a finalized invoice is Stripe's 400."""
        for param in ("customer", "currency", "amount"):
            if not form.get(param):
                raise _error(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {param}.",
                    code="parameter_missing",
                    param=param,
                    doc_url=f"{ERROR_DOCS}/parameter-missing",
                )
        if not re.fullmatch(r"-?\d+", form["amount"]):
            raise _error(
                400,
                "invalid_request_error",
                "Invalid integer: " + form["amount"],
                code="parameter_invalid_integer",
                param="amount",
            )
        invoice_id = form.get("invoice")
        if invoice_id is not None and self._find_invoice(invoice_id).status != "draft":
            raise _error(
                400,
                "invalid_request_error",
                f"You can only add invoice items to draft invoices. Invoice {invoice_id} is "
                "finalized.",
                code="invoice_not_editable",
                param="invoice",
            )
        item = {
            "id": _id("ii"),
            "object": "invoiceitem",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "customer": form["customer"],
            "date": int(time.time()),
            "description": form.get("description"),
            "discountable": True,
            "invoice": invoice_id,
            "livemode": False,
            "metadata": form.get("metadata") or {},
            "quantity": 1,
        }
        self.invoice_items[item["id"]] = item
        return item

    def _update_customer(self, customer_id: str, form: dict) -> dict:
        settings = self.customers.setdefault(customer_id, {"default_payment_method": None})
        settings.update(form.get("invoice_settings") or {})
        return self._get_customer(customer_id, form)

    def _get_customer(self, customer_id: str, form: dict) -> dict:
        settings = self.customers.get(customer_id, {})
        return {
            "id": customer_id,
            "object": "customer",
            "email": "jenny.rosen@example.com",
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": settings.get("default_payment_method"),
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
        }

    def _get_payment_method(self, method: str, form: dict) -> dict:
        if method in self.detached_payment_methods:
            raise _missing("payment_method", method)
        brand, country = self.cards.get(method, ("visa", "US"))
        last4, month, year = self.card_expiries.get(method, ("4242", 12, 2034))
        return {
            "id": method,
            "object": "payment_method",
            "billing_details": {"email": None, "name": None, "phone": None},
            "card": {
                "brand": brand,
                "country": country,
                "exp_month": month,
                "exp_year": year,
                "funding": "credit",
                "last4": last4,
            },
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
        }

    def _list_subscriptions(self, _: str, form: dict) -> dict:
        """`GET /v1/subscriptions`: by `customer`; `status` filters (default: all but
        canceled, as Stripe's)."""
        status = form.get("status")
        found = [
            self._subscription_body(subscription, form)
            for subscription in self.subscriptions.values()
            if subscription.customer == form.get("customer", subscription.customer)
            and (
                subscription.status == status
                or (status is None and subscription.status != "canceled")
            )
        ]
        return {"object": "list", "data": found, "has_more": False, "url": "/v1/subscriptions"}

    def _default_method(self, customer_id: str) -> str | None:
        return self.customers.get(customer_id, {}).get("default_payment_method")

    def _check_attached(self, method: str) -> None:
        """A payment method detached from its customer is gone: Stripe's 400 names it."""
        if method in self.detached_payment_methods:
            raise _error(
                400,
                "invalid_request_error",
                f"No such PaymentMethod: '{method}'",
                code="resource_missing",
                param="payment_method",
                doc_url=f"{ERROR_DOCS}/resource-missing",
            )

    def _open_invoice_of(self, customer_id: str) -> Invoice | None:
        """The invoice whose script a customer's PaymentIntent follows: their first open one."""
        return next(
            (i for i in self.invoices.values() if i.customer == customer_id and i.status == "open"),
            None,
        )

    def _find_invoice(self, invoice_id: str) -> Invoice:
        if invoice_id not in self.invoices:
            raise _missing("invoice", invoice_id)
        return self.invoices[invoice_id]

    def _find_subscription(self, subscription_id: str) -> Subscription:
        if subscription_id not in self.subscriptions:
            raise _missing("subscription", subscription_id)
        return self.subscriptions[subscription_id]

    # Bodies -------------------------------------------------------------------------------

    def _invoice_body(self, invoice: Invoice, form: dict) -> dict:
        now = int(time.time())
        paid = invoice.status == "paid"
        body: dict[str, Any] = {
            "id": invoice.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Fake Stripe Co",
            "amount_due": invoice.amount_due,
            "amount_paid": invoice.amount_due if paid else invoice.amount_paid,
            "amount_remaining": 0 if paid else invoice.amount_due - invoice.amount_paid,
            "attempt_count": invoice.attempt_count,
            "attempted": invoice.attempt_count > 0,
            "auto_advance": False,
            "billing_reason": "subscription_cycle" if invoice.subscription else "manual",
            "collection_method": "charge_automatically",
            "created": now - 86400,
            "currency": invoice.currency,
            "customer": invoice.customer,
            # Real invoices carry the customer's contact details: nothing may copy them out.
            "customer_email": "jenny.rosen@example.com",
            "customer_name": "Jenny Rosen",
            "customer_phone": "+15555550123",
            "default_payment_method": invoice.default_payment_method,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_fake/{invoice.id}",
            "lines": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/invoices/{invoice.id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "status": invoice.status,
            "status_transitions": {
                "finalized_at": now - 86400,
                "marked_uncollectible_at": now if invoice.status == "uncollectible" else None,
                "paid_at": now if paid else None,
                "voided_at": None,
            },
            "subtotal": invoice.amount_due,
            "total": invoice.amount_due,
        }
        expand = form.get("expand") or []
        if self._legacy(form):
            # Before basil: the payment and the subscription are named on the invoice.
            intent: Any = invoice.payment_intent
            if "payment_intent" in expand and intent:
                intent = self._intent_body(invoice)
            body.update(paid=paid, payment_intent=intent, charge=None)
            body["subscription"] = invoice.subscription
            allowed = {"payment_intent"}
        else:
            body["parent"] = _invoice_parent(invoice)
            allowed = {"payments"}
            if "payments" in expand:
                body["payments"] = {
                    "object": "list",
                    "data": self._invoice_payments(invoice, expand=False),
                    "has_more": False,
                    "url": "/v1/invoice_payments",
                }
        unknown = [path for path in expand if path not in allowed]
        if unknown:
            raise _not_expandable(unknown[0])
        return body

    def _session_body(self, session: CheckoutSession) -> dict:
        complete = session.status == "complete"
        return {
            "id": session.id,
            "object": "checkout.session",
            "cancel_url": session.cancel_url,
            "created": int(time.time()),
            "currency": session.currency,
            "customer": session.customer or None,
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "metadata": session.metadata,
            "mode": "setup",
            "payment_status": "no_payment_required",
            "setup_intent": session.setup_intent,
            "status": session.status,
            "success_url": session.success_url,
            "url": None if complete else session.url,
        }

    def _intent_body(self, invoice: Invoice) -> dict:
        """The invoice's payment intent; its last decline is `last_payment_error`."""
        decline = invoice.last_decline
        status = "requires_payment_method" if decline else "requires_confirmation"
        error = None
        if invoice.status == "paid":
            status = "succeeded"
        elif decline is not None and decline.code == "invoice_payment_intent_requires_action":
            status = "requires_action"  # 3-D Secure pending: no error yet
        elif decline is not None:
            error = self._card_error(
                invoice.customer,
                invoice.default_payment_method or "",
                decline,
                self._default_intent_summary(invoice),
            )["error"]
            del error["payment_intent"]
        charged = invoice.charged_method is not None
        return {
            "id": invoice.payment_intent,
            "object": "payment_intent",
            "amount": invoice.amount_due,
            "currency": invoice.currency,
            "customer": invoice.customer,
            "last_payment_error": error,
            "latest_charge": f"ch_of_{invoice.payment_intent}" if charged else None,
            "livemode": False,
            "payment_method": invoice.charged_method,
            "status": status,
        }

    def _created_intent_body(self, intent: PaymentIntent) -> dict:
        error = None
        if intent.decline is not None:
            error = self._card_error(
                intent.customer, intent.payment_method, intent.decline, self._intent_summary(intent)
            )["error"]
            del error["payment_intent"]
        return {
            **self._intent_summary(intent),
            "amount_received": intent.amount if intent.status == "succeeded" else 0,
            "confirmation_method": "automatic",
            "last_payment_error": error,
            "metadata": {},
            "payment_method": intent.payment_method,
            "payment_method_types": ["card"],
        }

    def _intent_summary(self, intent: PaymentIntent) -> dict:
        return {
            "id": intent.id,
            "object": "payment_intent",
            "amount": intent.amount,
            "currency": intent.currency,
            "customer": intent.customer,
            "latest_charge": intent.latest_charge,
            "livemode": False,
            "status": intent.status,
        }

    def _invoice_payments(self, invoice: Invoice, expand: bool) -> list[dict]:
        """The invoice's payments, newest first; `expand` puts each payment intent in."""
        order = list(invoice.payments)
        if invoice.payment_intent and invoice.payment_intent not in order:
            order.insert(0, invoice.payment_intent)  # a scripted past attempt is the oldest
        payments = []
        for intent_id in reversed(order):
            if intent_id == invoice.payment_intent:
                payment = self._invoice_payment(invoice)
                if expand:
                    payment["payment"]["payment_intent"] = self._intent_body(invoice)
            else:
                payment = self._attached_payment(invoice, self.payment_intents[intent_id])
                if expand:
                    payment["payment"]["payment_intent"] = self._created_intent_body(
                        self.payment_intents[intent_id]
                    )
            payments.append(payment)
        return payments

    def _attached_payment(self, invoice: Invoice, intent: PaymentIntent) -> dict:
        paid = intent.status == "succeeded"
        return _invoice_payment(invoice, intent.id, intent.amount, intent.currency, paid, False)

    def _invoice_payment(self, invoice: Invoice) -> dict:
        paid = invoice.status == "paid"
        return _invoice_payment(
            invoice, invoice.payment_intent, invoice.amount_due, invoice.currency, paid, True
        )

    def _default_intent_summary(self, invoice: Invoice) -> dict:
        """The invoice's own payment intent as a card error embeds it."""
        return {
            "id": invoice.payment_intent,
            "object": "payment_intent",
            "amount": invoice.amount_due,
            "currency": invoice.currency,
            "customer": invoice.customer,
            "latest_charge": _id("ch"),
            "livemode": False,
            "status": "requires_payment_method",
        }

    def _charge_body(self, intent: dict) -> dict:
        """A payment intent's latest Charge, as `expand=latest_charge` shows it."""
        method = intent.get("payment_method") or ""
        brand, country = self.cards.get(method, ("visa", "US"))
        succeeded = intent["status"] == "succeeded"
        return {
            "id": intent["latest_charge"],
            "object": "charge",
            "amount": intent["amount"],
            "captured": succeeded,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "livemode": False,
            "paid": succeeded,
            "payment_intent": intent["id"],
            "payment_method": method,
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": brand,
                    "country": country,
                    "exp_month": 8,
                    "exp_year": 2030,
                    "funding": "credit",
                    "last4": "4242",
                    "network": brand,
                },
            },
            "status": "succeeded" if succeeded else "failed",
        }

    def _card_error(self, customer: str, method: str, decline: Decline, intent: dict) -> dict:
        """Stripe's 402 body: the declined payment intent (`intent`) and the card."""
        charge = intent["latest_charge"]
        payment_method = {
            "id": method,
            "object": "payment_method",
            "billing_details": {
                "address": {"country": "US", "postal_code": "94107"},
                "email": "jenny.rosen@example.com",
                "name": "Jenny Rosen",
                "phone": "+15555550123",
            },
            "card": {
                "brand": decline.brand,
                "country": decline.country,
                "exp_month": 8,
                "exp_year": 2030,
                "funding": "credit",
                "last4": "0341",
            },
            "created": int(time.time()) - 86400 * 90,
            "customer": customer,
            "livemode": False,
            "type": "card",
        }
        error: dict[str, Any] = {
            "charge": charge,
            "code": decline.code,
            "doc_url": f"{ERROR_DOCS}/{decline.code.replace('_', '-')}",
            "message": decline.message,
            "payment_intent": intent,
            "payment_method": payment_method,
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_fake",
            "type": "card_error",
        }
        optional = {
            "decline_code": decline.decline_code,
            "advice_code": decline.advice_code,
            "network_decline_code": decline.network_decline_code,
            "network_advice_code": decline.network_advice_code,
        }
        # Stripe leaves out the codes an issuer did not give.
        error.update({name: value for name, value in optional.items() if value is not None})
        return {"error": error}

    def _subscription_body(self, subscription: Subscription, form: dict | None = None) -> dict:
        """The subscription in the version asked: its period end on its items since basil,
        on the subscription itself before."""
        now = int(time.time())
        period_end = subscription.current_period_end or now + 86400 * 10
        item = {
            "id": f"si_{subscription.id}",
            "object": "subscription_item",
            "current_period_end": period_end,
            "current_period_start": period_end
            - 86400 * (365 if subscription.interval == "year" else 30),
            "price": {
                "id": f"price_{subscription.interval}",
                "object": "price",
                "recurring": {"interval": subscription.interval, "interval_count": 1},
                "unit_amount": 4980,
            },
            "quantity": 1,
            "subscription": subscription.id,
        }
        legacy = form is not None and self._legacy(form)
        if legacy:
            del item["current_period_end"], item["current_period_start"]
        body = {
            "id": subscription.id,
            "object": "subscription",
            "billing_cycle_anchor": now - 86400 * 20,
            "cancel_at": now + 86400 * 10 if subscription.cancel_at_period_end else None,
            "cancel_at_period_end": subscription.cancel_at_period_end,
            "canceled_at": subscription.canceled_at,
            "collection_method": "charge_automatically",
            "created": now - 86400 * 200,
            "currency": "usd",
            "customer": subscription.customer,
            "ended_at": subscription.canceled_at if subscription.status == "canceled" else None,
            "items": {
                "object": "list",
                "data": [item],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription.id}",
            },
            "livemode": False,
            "metadata": {},
            "status": subscription.status,
        }
        if legacy:
            body["current_period_end"] = period_end
        return body


def _invoice_parent(invoice: Invoice) -> dict | None:
    if invoice.subscription is None:
        return None
    return {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {"metadata": {}, "subscription": invoice.subscription},
    }


def _encode(body: dict) -> bytes:
    return (json.dumps(body, indent=2) + "\n").encode()


def _not_expandable(path: str) -> _Reply:
    return _error(
        400, "invalid_request_error", f"This property cannot be expanded ({path}).", param="expand"
    )


# What a web server that is not Stripe answers (a wrong STRIPE_API_BASE): HTML, not Stripe's JSON.
_NOT_STRIPE = (
    404,
    b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n",
    {"Content-Type": "text/html"},
)


def _invoice_payment(
    invoice: Invoice, intent_id: str, amount: int, currency: str, paid: bool, is_default: bool
) -> dict:
    """An InvoicePayment as Stripe shows it in `invoice.payments`: the invoice's own payment
    (`is_default`) or one attached to it (an installment)."""
    return {
        "id": _id("inpay"),
        "object": "invoice_payment",
        "amount_paid": amount if paid else None,
        "amount_requested": amount,
        "created": int(time.time()),
        "currency": currency,
        "invoice": invoice.id,
        "is_default": is_default,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": intent_id},
        "status": "paid" if paid else "open",
        "status_transitions": {"canceled_at": None, "paid_at": int(time.time()) if paid else None},
    }
