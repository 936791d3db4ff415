"""Signed outbound webhooks: case events told to the product, so it can restrict or restore
the customer's access (payloads: config/case-event.schema.json).

    POST <OUTBOUND_WEBHOOK_URL>
    Content-Type: application/json
    Dunning-Event-Id: <event id>
    Dunning-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

An outbox: `publish` stores the event once per event id and tries one delivery with a short
timeout; a failed one waits with exponential backoff (`BACKOFF`) for the delivery loop the
worker runs, and is left FAILED after `MAX_ATTEMPTS`. Every attempt is a delivery-log row. The
case's workflow never waits for a receiver: an unreachable product only delays its events.
Receivers check the signature with `verify_signature` and dedupe on the event id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from activities import signing
from activities.store import (
    CaseStore,
    OutboundDelivery,
    OutboundEvent,
    OutboundEventStatus,
    utcnow,
)
from config.errors import one_line
from config.settings import Settings
from workflows.case_events import CaseEvent

log = logging.getLogger("dunning.outbound")

EVENT_ID_HEADER = "Dunning-Event-Id"
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)
"""The wait after each failed attempt; the attempt after the last wait is the last."""
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = timedelta(minutes=2)
"""How long one delivery holds an event (far longer than an attempt's timeout): a delivery
loop that died mid-attempt leaves it to another once this lapses."""


class SignatureError(signing.SignatureError):
    """A missing, malformed, wrong or stale `Dunning-Signature`; one line says which."""


def verify_signature(
    body: bytes, header: str | None, secret: str, now: float, tolerance: int = signing.TOLERANCE
) -> None:
    """For receivers: accept a `Dunning-Signature` header that signs the raw `body` under
    `secret` within `tolerance` seconds of `now` (unix seconds), or raise `SignatureError`.
    Pure: no clock, no I/O."""
    try:
        signing.verify(body, header, secret, tolerance, now)
    except signing.SignatureError as err:
        raise SignatureError(str(err)) from None


def after_attempt(
    attempts: int, delivered: bool, at: datetime
) -> tuple[OutboundEventStatus, datetime | None]:
    """Where an event stands after its `attempts`-th attempt: delivered, pending until the
    next one (1 min, 5 min, 30 min, 2 h, 12 h after), or failed once all were spent."""
    if delivered:
        return OutboundEventStatus.DELIVERED, None
    if attempts >= MAX_ATTEMPTS:
        return OutboundEventStatus.FAILED, None
    return OutboundEventStatus.PENDING, at + BACKOFF[attempts - 1]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would turn the POST into a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class EventPublisher:
    """Stores case events and delivers them, signed, to the product's webhook (when one is
    configured). Safe to share between activity threads and the delivery loop."""

    def __init__(
        self,
        store: CaseStore,
        url: str | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if url and not secret:
            raise ValueError("OUTBOUND_WEBHOOK_URL needs OUTBOUND_WEBHOOK_SECRET to sign with")
        self.store = store
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock
        self._opener = urllib.request.build_opener(_NoRedirects)

    @classmethod
    def from_settings(cls, settings: Settings, store: CaseStore) -> EventPublisher:
        """The publisher as configured: events are only stored while no URL is set."""
        secret = settings.outbound_webhook_secret
        return cls(
            store,
            settings.outbound_webhook_url,
            secret.get_secret_value() if secret else None,
            settings.outbound_webhook_timeout,
        )

    def publish(self, event: CaseEvent) -> OutboundEventStatus:
        """Store the event once and, the first time, try one delivery; the event's status
        after it. Idempotent: a retried activity finds the event stored and leaves a failed
        or interrupted delivery to the loop."""
        now = self.clock()
        row, stored = self.store.store_outbound_event(
            OutboundEvent(
                event_id=event.id,
                case_id=event.data.case_id,
                type=event.type.value,
                status=OutboundEventStatus.PENDING if self.url else OutboundEventStatus.STORED,
                created_at=event.created,
                # Held for the attempt below; the loop takes it over if this one dies.
                next_attempt_at=now + LEASE if self.url else None,
                payload=event.model_dump(mode="json"),
            )
        )
        if stored and self.url:
            row = self.attempt(row)
        return OutboundEventStatus(row.status)

    def attempt(self, row: OutboundEvent) -> OutboundEvent:
        """POST the event once, signed now; log the attempt and settle the event by it."""
        if not self.url:
            raise ValueError("OUTBOUND_WEBHOOK_URL is not set: events are stored, not sent")
        body = json.dumps(row.payload, separators=(",", ":")).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                EVENT_ID_HEADER: row.event_id,
                # Signed with the wall clock the receiver checks against, whatever `clock` says.
                signing.HEADER: signing.sign(body, self.secret),
            },
        )
        at = self.clock()
        started = time.monotonic()
        status_code, error = None, ""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status_code = response.status
        except urllib.error.HTTPError as err:
            status_code, error = err.code, f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:  # refused, timed out, reset
            error = one_line(getattr(err, "reason", err))
        duration_ms = round((time.monotonic() - started) * 1000)
        delivered = status_code is not None and 200 <= status_code < 300
        if status_code is not None and not delivered and not error:
            error = f"HTTP {status_code}"  # a redirect: not a delivery
        status, next_at = after_attempt(row.attempts + 1, delivered, at)
        settled = self.store.log_delivery(
            row.event_id,
            OutboundDelivery(
                event_id=row.event_id,
                at=at,
                status_code=status_code,
                error=error[:500],
                duration_ms=duration_ms,
            ),
            status,
            next_at,
        )
        report = log.info if delivered else log.warning
        report("%s %s: attempt %d %s", row.type, row.event_id, settled.attempts, error or "ok")
        return settled

    def redeliver(self, event_id: str) -> OutboundEvent | None:
        """Send a stored event now, whatever its status (`dunning webhooks redeliver`); None
        for an unknown id. Logged as any attempt: one that fails is retried with backoff
        while attempts remain, else stays failed."""
        row = self.store.outbound_event(event_id)
        return None if row is None else self.attempt(row)

    def deliver_due(self) -> list[OutboundEvent]:
        """One round of the delivery loop: each pending event whose next attempt has come,
        claimed (another loop on the same store skips it) and tried once."""
        if not self.url:
            return []
        now = self.clock()
        delivered = []
        for row in self.store.outbound_events_due(now):
            if self.store.claim_outbound_event(row, now + LEASE):
                delivered.append(self.attempt(row))
        return delivered


@asynccontextmanager
async def delivering(publisher: EventPublisher, every: float) -> AsyncIterator[None]:
    """Deliver due events every `every` seconds while the block runs; a failed round is
    logged in one line and the next round tries again. Nothing runs without a URL."""

    async def rounds() -> None:
        while True:
            try:
                settled = await asyncio.to_thread(publisher.deliver_due)
            except Exception as err:
                log.warning("outbound delivery: %s; next round in %ss", one_line(err), every)
            else:
                if settled:
                    log.info("outbound delivery: tried %d due events", len(settled))
            await asyncio.sleep(every)

    if not publisher.url:
        yield
        return
    task = asyncio.create_task(rounds())
    try:
        yield
    finally:
        task.cancel()
