"""Acting on a stored billing event: once per delivery, and again later for those no delivery
finished.

Every billing event is stored before it is acted on. `act_once` is the one path from a stored
event to a case: the receiver takes it for each delivery, and the sweeper (run by the worker
every EVENT_SWEEP_SECONDS, and by `dunning events retry`) takes it again for events left
PENDING (Temporal was unreachable) or FAILED (an internal error), re-reading their stored
payload. The store's claim makes a redelivery and a retry of the same event never act at once.
Any other status is final: processed, ignored and rejected events are never retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client

from activities.store import (
    CaseStore,
    WebhookClaim,
    WebhookEvent,
    WebhookEventStatus,
    utcnow,
)
from config.errors import one_line
from config.settings import Settings
from intake.events import InvalidEvent
from webhooks import billing_events, stripe_events
from webhooks.cases import CaseDesk, TemporalUnavailable
from webhooks.intake import Intake, UnreadableEvent

log = logging.getLogger("dunning.webhooks")

PROVIDERS = [stripe_events.PROVIDER, billing_events.PROVIDER]
"""Whose stored events the sweeper can read again."""
RETRY_AFTER = timedelta(minutes=1)
"""Events younger than this are left to the delivery that may still be acting on them."""
MAX_DELIVERIES = 10
"""After this many deliveries and retries an event is left FAILED for an operator."""


@dataclass(frozen=True)
class Handled:
    """What one delivery or retry of an event came to."""

    claim: WebhookClaim
    """DONE: already final (a duplicate); BUSY: another delivery acts on it right now."""
    status: str
    """The event's status afterwards."""
    detail: str
    deliveries: int
    error: Exception | None = None
    """An internal error, already stored as FAILED; the receiver lets it become a 500."""


async def act_once(
    desk: CaseDesk,
    provider: str,
    event_id: str,
    kind: str,
    occurred_at: datetime,
    payload: dict,
    read: Callable[[], Intake],
) -> Handled:
    """Store the event (once per provider and id), claim it, act on it and settle it: bad
    content is REJECTED, Temporal out of reach leaves it PENDING, an internal error FAILED."""
    try:
        intake, unreadable = read(), None
    except UnreadableEvent as err:
        intake, unreadable = None, str(err)
    except Exception as err:  # a payload shape no reader foresaw is still the sender's
        intake, unreadable = None, f"cannot read the event: {one_line(err)}"
    row, claim = await asyncio.to_thread(
        desk.store.claim_webhook_event,
        WebhookEvent(
            provider=provider,
            event_id=event_id,
            type=kind,
            occurred_at=occurred_at,
            invoice_id=intake.invoice_id if intake else None,
            customer_id=intake.customer_id if intake else None,
            subscription_id=intake.subscription_id if intake else None,
            payload=payload,
        ),
    )
    if claim in (WebhookClaim.DONE, WebhookClaim.BUSY):
        return Handled(claim, row.status, row.detail, row.deliveries)
    error = None
    if intake is None:
        status, detail = WebhookEventStatus.REJECTED, unreadable
    else:
        try:
            outcome = await desk.act(intake)
            status, detail = outcome.status, outcome.detail
        except InvalidEvent as err:  # e.g. a policy that does not exist
            status, detail = WebhookEventStatus.REJECTED, str(err)
        except TemporalUnavailable as err:
            status, detail = WebhookEventStatus.PENDING, str(err)
        except Exception as err:
            status, detail, error = WebhookEventStatus.FAILED, f"internal error: {err!r}", err
    await asyncio.to_thread(desk.store.settle_webhook_event, row.id, status, detail)
    report = (
        log.warning
        if status in (WebhookEventStatus.PENDING, WebhookEventStatus.FAILED)
        else log.info
    )
    report("%s %s %s: %s, %s", provider, event_id, kind, status, detail)
    return Handled(claim, status, detail, row.deliveries, error)


def read_stored(event: WebhookEvent) -> Intake:
    """A stored billing event (one of `PROVIDERS`) read again, as its endpoint read it."""
    if event.provider == stripe_events.PROVIDER:
        return stripe_events.read_stripe_event(event.payload, stripe_events.envelope(event.payload))
    raw = json.dumps(event.payload).encode()
    return billing_events.read_neutral_event(billing_events.parse(raw))


async def retry(desk: CaseDesk, event: WebhookEvent, max_deliveries: int | None = None) -> Handled:
    """Act on a stored event again from its payload. One that has now been delivered
    `max_deliveries` times without an outcome is left FAILED and reported."""
    handled = await act_once(
        desk,
        event.provider,
        event.event_id,
        event.type,
        event.occurred_at,
        event.payload,
        lambda: read_stored(event),
    )
    unsettled = handled.status in (WebhookEventStatus.PENDING, WebhookEventStatus.FAILED)
    spent = max_deliveries is not None and handled.deliveries >= max_deliveries
    if handled.claim is not WebhookClaim.RETRY or not (unsettled and spent):
        return handled
    detail = f"gave up after {handled.deliveries} deliveries: {handled.detail}"
    await asyncio.to_thread(
        desk.store.settle_webhook_event, event.id, WebhookEventStatus.FAILED, detail
    )
    log.warning(
        "%s %s: %s; `dunning events retry %s` tries again",
        event.provider,
        event.event_id,
        detail,
        event.event_id,
    )
    return Handled(handled.claim, WebhookEventStatus.FAILED, detail, handled.deliveries)


async def retry_all(
    desk: CaseDesk, events: list[WebhookEvent], max_deliveries: int | None = None
) -> list[tuple[WebhookEvent, Handled]]:
    """`retry` each event in turn, stopping once Temporal is out of reach: the events after
    that one are left as they are, their deliveries unspent."""
    results = []
    for event in events:
        handled = await retry(desk, event, max_deliveries)
        results.append((event, handled))
        if handled.status == WebhookEventStatus.PENDING:
            break
    return results


async def sweep(
    desk: CaseDesk,
    retry_after: timedelta = RETRY_AFTER,
    max_deliveries: int | None = MAX_DELIVERIES,
) -> list[tuple[WebhookEvent, Handled]]:
    """Retry the stored events no delivery finished: pending or failed, received over
    `retry_after` ago, not claimed now, delivered fewer than `max_deliveries` times.
    `TemporalUnavailable` before any is claimed when Temporal is out of reach."""
    await desk.client()
    events = await asyncio.to_thread(
        desk.store.webhook_events_to_retry, PROVIDERS, utcnow() - retry_after, max_deliveries
    )
    return await retry_all(desk, events, max_deliveries)


@asynccontextmanager
async def sweeping(settings: Settings, client: Client, store: CaseStore) -> AsyncIterator[None]:
    """Sweep every EVENT_SWEEP_SECONDS while the block runs; a failed round is logged in one
    line and the next round tries again."""

    async def worker_client() -> Client:
        return client

    desk = CaseDesk(settings, worker_client, store)

    async def rounds() -> None:
        while True:
            try:
                swept = await sweep(desk)
            except Exception as err:
                log.warning(
                    "event sweep: %s; next round in %ss",
                    one_line(err),
                    settings.event_sweep_seconds,
                )
            else:
                if swept:
                    counts = Counter(str(handled.status) for _, handled in swept)
                    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                    log.info("event sweep: retried %d stored events: %s", len(swept), summary)
            await asyncio.sleep(settings.event_sweep_seconds)

    task = asyncio.create_task(rounds())
    try:
        yield
    finally:
        task.cancel()
