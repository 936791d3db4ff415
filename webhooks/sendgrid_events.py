"""SendGrid's Event Webhook, read into delivery reports and suppressions.

    POST /webhooks/sendgrid   a JSON array of events, ECDSA-signed

SendGrid signs ``<timestamp><raw body>`` with its P-256 key: the base64 DER signature comes in
``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in ``...-Timestamp``, and the
public key is shown under Mail Settings (``SENDGRID_WEBHOOK_PUBLIC_KEY``). Each event is
stored once by its ``sg_event_id``; the addresses in them go to the store and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from activities import signing
from activities.store import CaseStore, WebhookEvent, WebhookEventStatus, utcnow
from webhooks.deliveries import find_message, note_delivery

PROVIDER = "sendgrid"
SOURCE = "sendgrid"  # the suppression's source
SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP

# Event → what the message row's `delivery` becomes.
DELIVERIES = {
    "deferred": "deferred",
    "delivered": "delivered",
    "bounce": "bounced",
    "dropped": "dropped",
}
# Event → the reason the address is suppressed for email.
SUPPRESSIONS = {
    "bounce": "bounced",
    "dropped": "dropped",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "spamreport": "unsubscribed",
}
HANDLED = DELIVERIES.keys() | SUPPRESSIONS.keys()
# Drops that are about our mail or account, not the address: reported, never suppressed.
SENDER_DROPS = ("invalid smtpapi header", "spam content", "recipient list over package quota")
# Longer values than these are no ids or addresses of ours: read as absent.
MAX_ID_LENGTH = 512
MAX_EMAIL_LENGTH = 320
MAX_REASON_LENGTH = 2000
# A later event never moves a message back (SendGrid's events can arrive out of order).
_PROGRESS = {"deferred": 1, "blocked": 2, "delivered": 2, "bounced": 2, "dropped": 2}


class KeyUnusable(ValueError):
    """``SENDGRID_WEBHOOK_PUBLIC_KEY`` is not an ECDSA public key."""


class SignatureRejected(ValueError):
    """A missing, malformed or wrong signature; the message says which, in one line."""


def verifier(public_key: str) -> EventWebhook:
    """The SDK's verifier for the key as SendGrid shows it (base64 DER), or as PEM."""
    body = "".join(line for line in public_key.strip().splitlines() if not line.startswith("-----"))
    try:
        webhook = EventWebhook(body)
    except (ValueError, TypeError) as err:
        raise KeyUnusable(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: paste the verification key "
            "from SendGrid's Mail Settings"
        ) from err
    if not isinstance(webhook.public_key, ec.EllipticCurvePublicKey):
        raise KeyUnusable("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA public key")
    return webhook


def verify(
    webhook: EventWebhook,
    payload: str,
    signature: str | None,
    timestamp: str | None,
    tolerance: int = signing.TOLERANCE,
    now: float | None = None,
) -> None:
    """Accept a body SendGrid signed with a timestamp within `tolerance` seconds of now,
    or raise `SignatureRejected`: a signature of any other time could be replayed forever."""
    if not signature:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header")
    if not timestamp:
        raise SignatureRejected(f"missing {TIMESTAMP_HEADER} header")
    if not signing.UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureRejected(f"{TIMESTAMP_HEADER} is not unix seconds")
    try:
        signing.check_fresh(int(timestamp), tolerance, TIMESTAMP_HEADER, now)
    except signing.SignatureError as err:
        raise SignatureRejected(f"{TIMESTAMP_HEADER} is more than {tolerance} s from now") from err
    try:
        base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignatureRejected(f"{SIGNATURE_HEADER} is not base64") from err
    try:  # the SDK raises on what is base64 but no DER signature
        valid = webhook.verify_signature(payload, signature, timestamp)
    except (binascii.Error, ValueError, TypeError) as err:
        raise SignatureRejected(f"{SIGNATURE_HEADER} is not an ECDSA signature") from err
    if not valid:
        raise SignatureRejected(f"{SIGNATURE_HEADER} does not match the body and timestamp")


def read_events(payload: str) -> list[dict[str, Any]]:
    """The events of a delivery; `ValueError` when it is not a JSON array of objects."""
    try:
        events = json.loads(payload)
    except RecursionError as err:
        raise ValueError("malformed JSON: nested too deeply") from err
    except ValueError as err:
        raise ValueError(f"malformed JSON: {' '.join(str(err).split())}") from err
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("not SendGrid events: expected a JSON array of objects")
    return events


@dataclass(frozen=True)
class EmailEvent:
    """One SendGrid event dunning acts on."""

    event_id: str
    kind: str
    email: str
    provider_id: str
    message_key: str
    occurred_at: datetime
    bounce_type: str
    reason: str
    group_id: int | None
    payload: dict[str, Any]

    def row(self) -> WebhookEvent:
        """The row that records it (and dedupes a redelivery)."""
        return WebhookEvent(
            provider=PROVIDER,
            event_id=self.event_id,
            type=self.kind,
            occurred_at=self.occurred_at,
            payload=self.payload,
        )


def read_event(event: dict[str, Any]) -> EmailEvent | None:
    """The event, or None for one dunning does not act on (processed, open, click, ...)."""
    kind = event.get("event")
    if not isinstance(kind, str) or kind not in HANDLED:
        return None
    event_id = _text(event.get("sg_event_id"), MAX_ID_LENGTH)
    return EmailEvent(
        event_id=event_id or _fingerprint(event),
        kind=kind,
        email=_text(event.get("email"), MAX_EMAIL_LENGTH).strip(),
        # sg_message_id is the X-Message-Id we stored, then ".filter...": keep the first part
        provider_id=_text(event.get("sg_message_id"), MAX_ID_LENGTH).partition(".")[0],
        message_key=_text(event.get("message_key"), MAX_ID_LENGTH),
        occurred_at=_when(event.get("timestamp")),
        bounce_type=_text(event.get("type"), MAX_ID_LENGTH),
        reason=_text(event.get("reason"), MAX_REASON_LENGTH),
        group_id=event.get("asm_group_id") if isinstance(event.get("asm_group_id"), int) else None,
        payload=event,
    )


def apply_event(
    store: CaseStore, event: EmailEvent, dunning_group: int | None = None
) -> tuple[WebhookEventStatus, str]:
    """Note the delivery on our message row; suppress an address that bounced, was dropped
    for its own sake, unsubscribed (from everything, or from `dunning_group` when one is set)
    or reported spam."""
    details = []
    delivery = DELIVERIES.get(event.kind)
    reason = SUPPRESSIONS.get(event.kind)
    if event.kind == "bounce" and event.bounce_type == "blocked":
        delivery, reason = "blocked", None  # the receiving server refused us for now
    if event.kind == "dropped" and event.reason.strip().lower().startswith(SENDER_DROPS):
        reason = None  # our mail or account was at fault, not the address
    if event.kind == "group_unsubscribe" and dunning_group not in (None, event.group_id):
        reason = None  # unsubscribed from other mail (a newsletter), not from dunning
    if delivery is not None:
        row = find_message(
            store, "email", [event.provider_id, event.message_key], event.message_key
        )
        if row is not None:
            details.append(note_delivery(store, row, delivery, _PROGRESS))
    if reason is not None and event.email:
        store.suppress("email", event.email, reason, SOURCE)
        details.append(f"email suppressed ({reason})")
    if not details:
        return WebhookEventStatus.IGNORED, f"{event.kind}: no message of ours, nothing to suppress"
    return WebhookEventStatus.PROCESSED, "; ".join(details)


def _text(value: object, limit: int) -> str:
    """A string field as sent, or "" for anything else (a number, a list, a megabyte): such
    a value must neither be taken for an id nor reach an index or a log line."""
    return value if isinstance(value, str) and len(value) <= limit else ""


def _when(timestamp: object) -> datetime:
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        try:
            return datetime.fromtimestamp(timestamp, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return utcnow()


def _fingerprint(event: dict[str, Any]) -> str:
    """An id for an event without ``sg_event_id`` (older webhooks): the hash of its JSON."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
