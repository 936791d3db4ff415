"""The receiver's HTTP side: verify, store, act, answer.

    POST /webhooks/stripe          Stripe events, verified with STRIPE_WEBHOOK_SECRET
    POST /events                   provider-neutral events, verified with BILLING_EVENTS_SECRET
    POST /webhooks/twilio          inbound SMS (STOP, START), verified with TWILIO_AUTH_TOKEN
    POST /webhooks/twilio/status   SMS status callbacks, verified with TWILIO_AUTH_TOKEN
    POST /webhooks/sendgrid        SendGrid events, verified with SENDGRID_WEBHOOK_PUBLIC_KEY
    GET  /preferences?token=...    the customer's message preferences (webhooks/preferences.py);
                                   POST stops or restarts email, SMS or all of them
    GET  /unsubscribe?token=...    the same page, the email footer's link; POST (one-click,
                                   RFC 8058) stops email
    GET  /recover/feedback?...     "tell us why" (webhooks/feedback.py); POST follows the answer
    GET  /recover?token=...        the recovery page (webhooks/recovery.py): HTML, and its
                                   forms (POST /recover/pay, /card, /plan, /promise)
    GET  /account?token=...        the customer's account page (webhooks/account.py): every
                                   open invoice; POST /account/pay pays them all, /account/card
    GET  /healthz                  {"ok": true, ...}; 503 when Temporal or the store is down
    GET  /metrics                  Prometheus metrics (activities/metrics.py)

Every authentic event is stored before a 2xx answer and deduplicated by its id. Answers are
one JSON object (empty TwiML to an inbound SMS); an error is one line, ``{"error": "..."}``,
and never a stack trace: 400 for the caller's mistakes (signature, JSON, a value that breaks
a rule: stored as rejected), 403 for a Twilio or SendGrid signature that does not verify, 408
for a body that does not arrive in time, 409 while another delivery of the same event is
being acted on, 503 while Temporal or the store is unreachable or a provider's secret is not
set (the event stays pending: the biller's redelivery or the worker's sweeper carries it out).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

import stripe
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from activities import metrics, signing
from activities.logs import configure_logging
from activities.payments import GatewayConfigError
from activities.payments.stripe import StripeBiller
from activities.scrub import scrubbed
from activities.store import CaseStore, WebhookClaim, WebhookEvent, WebhookEventStatus
from config.errors import one_line
from config.settings import Settings
from intake.client import connect
from webhooks import (
    billing_events,
    preferences,
    sendgrid_events,
    stripe_events,
    twilio_events,
)
from webhooks.account import AccountPage
from webhooks.cases import CaseDesk, ClientProvider, TemporalUnavailable
from webhooks.feedback import FeedbackPage
from webhooks.intake import Intake, UnreadableEvent
from webhooks.pages import Pages
from webhooks.recovery import Recovery
from webhooks.sweeper import act_once

log = logging.getLogger("dunning.webhooks")

MAX_BODY = 1_000_000  # bytes; Stripe's events are far smaller
HEALTH_TIMEOUT = 2.0  # seconds to wait for Temporal or the store in /healthz
# What we answer an inbound SMS: nothing (Twilio itself confirms STOP and START).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class Problem(Exception):
    """A request that cannot be accepted: answered with `status` and the one-line `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = one_line(reason, 500)


def create_app(settings: Settings, client_provider: ClientProvider, store: CaseStore) -> Starlette:
    """The receiver as an ASGI app. `client_provider` is awaited for each event that needs
    Temporal, so a cluster that is down only delays events (503) instead of stopping the app."""
    desk = CaseDesk(settings, client_provider, store)
    receiver = Receiver(settings, desk, store)
    pages = Pages.from_settings(settings)
    recovery = Recovery(settings, desk, store, pages)
    account = AccountPage(settings, desk, store, pages)
    secret = settings.self_service_secret.get_secret_value()
    feedback = FeedbackPage(store, desk, pages, secret)
    choices = preferences.Preferences(store, pages, secret)
    return Starlette(
        routes=[
            Route("/webhooks/stripe", receiver.stripe_webhook, methods=["POST"]),
            Route("/events", receiver.billing_event, methods=["POST"]),
            Route("/webhooks/twilio", receiver.twilio_inbound, methods=["POST"]),
            Route("/webhooks/twilio/status", receiver.twilio_status, methods=["POST"]),
            Route("/webhooks/sendgrid", receiver.sendgrid_events, methods=["POST"]),
            Route("/preferences", choices.handle, methods=["GET", "POST"]),
            Route("/unsubscribe", choices.handle, methods=["GET", "POST"]),
            Route("/healthz", receiver.health, methods=["GET"]),
            Route("/metrics", receiver.metrics, methods=["GET"]),
            Route("/recover", recovery.page, methods=["GET"]),
            Route("/recover/pay", recovery.pay, methods=["POST"]),
            Route("/recover/card", recovery.card_form, methods=["GET"]),
            Route("/recover/card", recovery.card, methods=["POST"]),
            Route("/recover/plan", recovery.plan, methods=["POST"]),
            Route("/recover/promise", recovery.promise, methods=["POST"]),
            Route("/recover/feedback", feedback.handle, methods=["GET", "POST"]),
            Route("/account", account.page, methods=["GET"]),
            Route("/account/pay", account.pay_all, methods=["POST"]),
            Route("/account/card", account.card_form, methods=["GET"]),
            Route("/account/card", account.card, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )


def connect_lazily(settings: Settings) -> ClientProvider:
    """A client provider that connects on first use and keeps the client; while the cluster
    is unreachable each call raises, and a later call connects."""
    client: Client | None = None
    lock = asyncio.Lock()

    async def provider() -> Client:
        nonlocal client
        async with lock:
            if client is None:
                client = await connect(settings)
        return client

    return provider


async def serve(settings: Settings, client_provider: ClientProvider, store: CaseStore) -> None:
    """Serve the receiver on RECEIVER_HOST:RECEIVER_PORT until interrupted."""
    app = create_app(settings, client_provider, store)
    json_logs = settings.log_format == "json"
    if json_logs:  # uvicorn's own loggers then reach the JSON handler too
        configure_logging("json")
    config = uvicorn.Config(
        app,
        host=settings.receiver_host,
        port=settings.receiver_port,
        lifespan="off",
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
    )
    access = logging.getLogger("uvicorn.access")  # configured by uvicorn.Config above
    if not any(isinstance(f, preferences.RedactTokens) for f in access.filters):
        access.addFilter(preferences.RedactTokens())
    where = f"{settings.receiver_host}:{settings.receiver_port}"
    await serve_until_stopped(
        uvicorn.Server(config),
        f"the receiver on {where}",
        "RECEIVER_PORT",
        f"Billing-event receiver on http://{where} (POST /webhooks/stripe, POST /events)",
    )


async def serve_until_stopped(
    server: uvicorn.Server, what: str, port_setting: str, started: str
) -> None:
    """Serve until cancelled, saying `started` once it listens. A port it cannot bind is an
    `OSError` naming `port_setting`: uvicorn itself would exit the whole process."""

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit as err:  # uvicorn exits when it cannot bind
            raise OSError(f"cannot serve {what} (in use? set {port_setting})") from err

    serving = asyncio.create_task(run())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(started, flush=True)
    await serving


def _answering(
    handler: Callable[[Receiver, Request], Awaitable[Response]],
) -> Callable[[Receiver, Request], Awaitable[Response]]:
    """Answer a `Problem` with its status and reason, and anything unforeseen with a 500
    whose details go to the log, never to the caller."""

    @functools.wraps(handler)
    async def answer(self: Receiver, request: Request) -> Response:
        try:
            response = await handler(self, request)
        except Problem as problem:
            response = _error(problem.status, problem.reason)
        except OperationalError as err:
            # SQLAlchemy quotes the statement's parameters: contacts must not reach the log.
            log.warning("store unavailable: %s", scrubbed(one_line(err, 500)))
            response = _error(503, "the store is unavailable; retry later")
        except Exception:
            log.exception("unexpected error on %s", request.url.path)
            response = _error(500, "internal error; the receiver's log has the details")
        metrics.count_event(request.url.path, response.status_code)
        return response

    return answer


class Receiver:
    """The request handlers; one per app."""

    def __init__(self, settings: Settings, desk: CaseDesk, store: CaseStore) -> None:
        self.settings = settings
        self.desk = desk
        self.store = store
        self._stripe: StripeBiller | None = None
        self._metrics = metrics.registry(store, metrics.sdk_metrics_address(settings))

    @_answering
    async def stripe_webhook(self, request: Request) -> JSONResponse:
        """A Stripe event: verified on the raw body, deduplicated by its id, acted on."""
        secret = self.settings.stripe_webhook_secret
        if secret is None:
            raise Problem(503, "STRIPE_WEBHOOK_SECRET is not set: cannot verify Stripe events")
        raw = await _body(request, self.settings.receiver_body_timeout)
        header = request.headers.get("stripe-signature")
        if header and not header.isascii():  # the SDK's compare_digest raises TypeError on it
            raise Problem(400, "Stripe-Signature rejected: not ASCII text")
        try:
            stripe.WebhookSignature.verify_header(
                raw, header, secret.get_secret_value(), self.settings.stripe_webhook_tolerance
            )
        except stripe.SignatureVerificationError as err:
            if not header:
                raise Problem(400, "missing Stripe-Signature header") from err
            reason = str(err.user_message or err).split(". ")[0]
            raise Problem(400, f"Stripe-Signature rejected: {reason}") from err
        except UnicodeDecodeError as err:
            raise Problem(400, "malformed JSON: the body is not UTF-8") from err
        try:  # the SDK refuses a stale signature, not one dated ahead to be replayed later
            signing.check_fresh(
                signing.signed_at(header, "Stripe-Signature"),
                self.settings.stripe_webhook_tolerance,
                "Stripe-Signature",
            )
        except signing.SignatureError as err:
            raise Problem(400, str(err)) from err
        try:  # parsed once, here: the signature check above reads only the header
            payload = json.loads(raw)
        except (ValueError, RecursionError) as err:
            raise Problem(400, f"malformed JSON: {one_line(err, 500)}") from err
        try:
            head = stripe_events.envelope(payload)
        except ValueError as err:
            raise Problem(400, f"not a Stripe event: {err}") from err
        if head.kind == stripe_events.SETUP_COMPLETED:
            payload = await self._setup_adopted(payload)
        return await self._receive(
            stripe_events.PROVIDER,
            head.event_id,
            head.kind,
            head.occurred_at,
            payload,
            lambda: stripe_events.read_stripe_event(payload, head),
        )

    def _stripe_biller(self) -> StripeBiller:
        """The Stripe account for what a webhook leaves out, built at first use."""
        if self._stripe is None:
            self._stripe = StripeBiller.from_settings(self.settings)
        return self._stripe

    async def _setup_adopted(self, payload: dict) -> dict:
        """A completed setup session with its setup intent expanded to the card it collected,
        that card made the customer's default at Stripe first. Webhooks expand nothing, and
        the stored payload must hold what the reader needs, so a later retry reads the same.
        Stripe out of reach is a 503: Stripe delivers the event again; a setup intent Stripe
        refuses to show is left unexpanded (the event is then stored as ignored)."""
        session = payload["data"]["object"] if isinstance(payload.get("data"), dict) else None
        if self.settings.gateway != "stripe" or not isinstance(session, dict):
            return payload
        intent, customer = session.get("setup_intent"), session.get("customer")
        if session.get("mode") != "setup" or not isinstance(intent, str):
            return payload
        if not isinstance(customer, str):
            return payload  # the reader ignores a session for no customer
        try:
            method = await run_in_threadpool(self._stripe_biller().adopt_setup, intent, customer)
        except stripe.StripeError as err:
            raise Problem(503, f"Stripe did not answer for {intent}: {one_line(err)}") from err
        except GatewayConfigError as err:  # retrying cannot help: stored, then ignored
            log.warning("cannot read %s at Stripe: %s", intent, one_line(err))
            return payload
        expanded = {**session, "setup_intent": {"id": intent, "payment_method": method}}
        return {**payload, "data": {**payload["data"], "object": expanded}}

    @_answering
    async def billing_event(self, request: Request) -> JSONResponse:
        """A provider-neutral event (config/billing-event.schema.json), HMAC-signed."""
        secret = self.settings.billing_events_secret
        if secret is None:
            raise Problem(503, "BILLING_EVENTS_SECRET is not set: cannot verify events")
        raw = await _body(request, self.settings.receiver_body_timeout)
        try:
            signing.verify(
                raw,
                request.headers.get("dunning-signature"),
                secret.get_secret_value(),
                self.settings.stripe_webhook_tolerance,
            )
        except signing.SignatureError as err:
            raise Problem(400, str(err)) from err
        try:
            head, payload = billing_events.envelope(raw)
        except ValueError as err:
            raise Problem(400, str(err)) from err

        def read() -> Intake:
            # A named event whose content breaks a rule is stored as rejected, then refused.
            try:
                event = billing_events.parse(raw)
            except ValueError as err:
                raise UnreadableEvent(str(err)) from err
            return billing_events.read_neutral_event(event)

        return await self._receive(
            billing_events.PROVIDER, head.id, head.type, head.created, payload, read
        )

    @_answering
    async def twilio_inbound(self, request: Request) -> Response:
        """An SMS to our number: STOP suppresses SMS to the sender, START lifts it. Answered
        with empty TwiML, so we add no reply of our own."""
        form = await self._twilio_form(request)
        try:
            sms = twilio_events.read_inbound(form)
        except twilio_events.UnreadableCallback as err:
            raise Problem(400, str(err)) from err
        event = sms.event(form)
        outcome, detail = await run_in_threadpool(
            _once, self.store, event, lambda: twilio_events.apply_inbound(self.store, sms)
        )
        if outcome == "busy":
            raise Problem(409, detail)
        log.info("twilio %s %s: %s, %s", sms.message_sid, event.type, outcome, detail)
        return Response(EMPTY_TWIML, media_type="text/xml")

    @_answering
    async def twilio_status(self, request: Request) -> Response:
        """Twilio's report on an SMS we sent: noted on its message row; a number that refused
        it for good (opted out, invalid, no SMS) is suppressed."""
        form = await self._twilio_form(request)
        try:
            callback = twilio_events.read_status(form, request.query_params)
        except twilio_events.UnreadableCallback as err:
            raise Problem(400, str(err)) from err
        event = callback.event(form)
        outcome, detail = await run_in_threadpool(
            _once, self.store, event, lambda: twilio_events.apply_status(self.store, callback)
        )
        if outcome == "busy":
            raise Problem(409, detail)
        log.info("twilio %s %s: %s, %s", callback.message_sid, event.type, outcome, detail)
        return _accepted(event.event_id, outcome, detail)

    @_answering
    async def sendgrid_events(self, request: Request) -> Response:
        """A batch of SendGrid events, ECDSA-verified on the raw body: deliveries are noted on
        message rows, bounces, drops, unsubscribes and spam reports suppress the address."""
        key = self.settings.sendgrid_webhook_public_key
        if key is None:
            raise Problem(
                503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: cannot verify SendGrid events"
            )
        try:
            webhook = sendgrid_events.verifier(key)
        except sendgrid_events.KeyUnusable as err:
            raise Problem(503, str(err)) from err
        raw = await _body(request, self.settings.receiver_body_timeout)
        try:
            payload = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise Problem(400, "the body is not UTF-8") from err
        try:
            sendgrid_events.verify(
                webhook,
                payload,
                request.headers.get(sendgrid_events.SIGNATURE_HEADER),
                request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
            )
        except sendgrid_events.SignatureRejected as err:
            raise Problem(403, str(err)) from err
        try:
            events = sendgrid_events.read_events(payload)
        except ValueError as err:
            raise Problem(400, str(err)) from err
        counts = await run_in_threadpool(self._sendgrid_batch, events)
        return JSONResponse({"events": len(events), **counts})

    def _sendgrid_batch(self, events: list[dict]) -> dict[str, int]:
        """Act on each event once; how many were processed, ignored, duplicates or busy."""
        counts = dict.fromkeys(["processed", "ignored", "duplicate", "busy"], 0)
        group = self.settings.sendgrid_unsubscribe_group_id
        for raw in events:
            event = sendgrid_events.read_event(raw)
            if event is None:  # processed, open, click, ...: nothing for dunning
                counts["ignored"] += 1
                continue
            outcome, detail = _once(
                self.store,
                event.row(),
                lambda e=event: sendgrid_events.apply_event(self.store, e, group),
            )
            counts[outcome if outcome in counts else "processed"] += 1
            log.info("sendgrid %s %s: %s, %s", event.event_id, event.kind, outcome, detail)
        return counts

    async def _twilio_form(self, request: Request) -> ImmutableMultiDict[str, str]:
        """The form of a request Twilio signed, or a `Problem`: 503 without an auth token to
        check it with, 403 when the signature is missing or wrong."""
        token = self.settings.twilio_auth_token
        if token is None:
            raise Problem(503, "TWILIO_AUTH_TOKEN is not set: cannot verify Twilio webhooks")
        raw = await _body(request, self.settings.receiver_body_timeout)
        try:
            form = ImmutableMultiDict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as err:
            raise Problem(400, "the body is not a UTF-8 form") from err
        url = twilio_events.public_url(
            self.settings.public_base_url, request.url.path, request.url.query
        )
        try:
            twilio_events.verify(
                token.get_secret_value(),
                url,
                form,
                request.headers.get(twilio_events.SIGNATURE_HEADER),
            )
        except twilio_events.SignatureRejected as err:
            raise Problem(403, str(err)) from err
        return form

    async def health(self, request: Request) -> JSONResponse:
        """200 when Temporal and the store both answer within `HEALTH_TIMEOUT`, else 503;
        the body says which is down and which secrets are set."""
        temporal = await _reachable(self._ping_temporal)
        store = await _reachable(lambda: run_in_threadpool(self._ping_store))
        ok = temporal == store == "reachable"
        return JSONResponse(
            {
                "ok": ok,
                "temporal": temporal,
                "store": store,
                "stripe_webhooks": self.settings.stripe_webhook_secret is not None,
                "billing_events": self.settings.billing_events_secret is not None,
            },
            status_code=200 if ok else 503,
        )

    async def metrics(self, request: Request) -> Response:
        """Prometheus's text format: the counters, the open cases by status (one query) and,
        when configured, the Temporal SDK's metrics."""
        body = await run_in_threadpool(generate_latest, self._metrics)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def _ping_temporal(self) -> None:
        """Ask the cluster itself: a client connected earlier says nothing of it now."""
        client = await self.desk.client()
        timeout = timedelta(seconds=HEALTH_TIMEOUT)
        if not await client.service_client.check_health(timeout=timeout):
            raise TemporalUnavailable("Temporal is not serving")

    async def _receive(
        self,
        provider: str,
        event_id: str,
        kind: str,
        occurred_at: datetime,
        payload: dict,
        read: Callable[[], Intake],
    ) -> JSONResponse:
        """Store, dedupe and act on one authentic event; the answer says what became of it."""
        handled = await act_once(self.desk, provider, event_id, kind, occurred_at, payload, read)
        if handled.claim is WebhookClaim.DONE:
            return _accepted(event_id, "duplicate", f"already {handled.status}: {handled.detail}")
        if handled.claim is WebhookClaim.BUSY:
            raise Problem(409, f"event {event_id} is being processed by another delivery")
        if handled.error is not None:
            raise handled.error
        if handled.status == WebhookEventStatus.REJECTED:
            raise Problem(400, handled.detail)
        if handled.status == WebhookEventStatus.PENDING:
            raise Problem(503, f"{handled.detail}; the event is kept and will be carried out later")
        return _accepted(event_id, handled.status, handled.detail)

    def _ping_store(self) -> None:
        self.store.ping()


def _once(
    store: CaseStore,
    event: WebhookEvent,
    act: Callable[[], tuple[WebhookEventStatus, str]],
) -> tuple[str, str]:
    """Store a messaging event once and act on it once; ("duplicate", ...) for one already
    acted on, ("busy", ...) while another delivery of it acts. What `act` raises leaves here
    scrubbed of addresses and numbers (the store's errors quote its parameters)."""
    row, claim = store.claim_webhook_event(event)
    if claim is WebhookClaim.DONE:
        return "duplicate", f"already {row.status}: {row.detail}"
    if claim is WebhookClaim.BUSY:
        return "busy", f"event {event.event_id} is being processed by another delivery"
    try:
        outcome, detail = act()
    except OperationalError:
        raise  # the store is down: nothing can be settled; the provider's retry acts
    except Exception as err:
        detail = scrubbed(f"{type(err).__name__}: {err}")
        store.settle_webhook_event(row.id, WebhookEventStatus.FAILED, f"internal error: {detail}")
        raise RuntimeError(f"{event.provider} {event.event_id}: {detail}") from None
    store.settle_webhook_event(row.id, outcome, detail)
    return str(outcome), detail


async def _body(request: Request, timeout: float) -> bytes:
    """The raw body, exactly as sent (signatures cover these bytes), up to MAX_BODY and
    within `timeout` seconds: a sender that trickles its body does not hold a request open."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise Problem(413, f"body larger than {MAX_BODY} bytes")
                chunks.append(chunk)
    except TimeoutError as err:
        raise Problem(408, f"the body did not arrive within {timeout:g} s") from err
    return b"".join(chunks)


async def _reachable(ping: Callable[[], Awaitable[object]]) -> str:
    """ "reachable", or "unreachable: <why>" when `ping` fails or takes over HEALTH_TIMEOUT."""
    try:
        await asyncio.wait_for(ping(), HEALTH_TIMEOUT)
    except TimeoutError:
        return "unreachable: no answer in time"
    except Exception as err:
        return f"unreachable: {one_line(err, 500).removeprefix('Temporal is unreachable: ')}"
    return "reachable"


def _accepted(event_id: str, status: str, detail: str) -> JSONResponse:
    return JSONResponse({"event": event_id, "status": str(status), "detail": detail})


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": one_line(reason, 500)}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown paths and methods answer in JSON like everything else."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
