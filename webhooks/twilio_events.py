"""Twilio's webhooks, read into suppressions and delivery reports.

    POST /webhooks/twilio          inbound SMS: STOP and START keep the suppression table true
    POST /webhooks/twilio/status   status callbacks of the SMS we sent

Both are form posts signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the public URL Twilio
called and the form parameters, under the account's auth token). The phone numbers in them go
to the store, where contacts live, and nowhere else: not to logs, not to answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from activities.notify import UndeliverableReason
from activities.notify.twilio import UNDELIVERABLE
from activities.store import CaseStore, WebhookEvent, WebhookEventStatus, utcnow
from webhooks.deliveries import find_message, note_delivery

PROVIDER = "twilio"
SOURCE = "twilio"  # the suppression's source
SIGNATURE_HEADER = "X-Twilio-Signature"
# Twilio's default opt-out and opt-in keywords: a message that is only one of these words.
OPT_OUT_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
OPT_IN_WORDS = {"START", "YES", "UNSTOP"}
FAILED_STATUSES = {"undelivered", "failed"}
# How far along a message is; a late callback never moves a message back (they can cross).
_PROGRESS = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "canceled": 4,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}

Form = ImmutableMultiDict[str, str]

# What Twilio sends, loosely: a SID is letters and digits (SM + 32 hex), a status a word, an
# error code a number (ASCII digits only: int() takes '²' and chokes on 5,000 digits).
_SID = re.compile(r"[A-Za-z0-9]{1,64}")
_STATUS = re.compile(r"[a-z_-]{1,32}")
_ERROR_CODE = re.compile(r"[0-9]{1,9}")
MAX_ADDRESS_LENGTH = 64  # a phone number, a short code, "whatsapp:+1..."
MAX_KEY_LENGTH = 512  # our message key, <case>:<step>:<channel>


class SignatureRejected(ValueError):
    """A missing or wrong ``X-Twilio-Signature``; the message says which, in one line."""


class UnreadableCallback(ValueError):
    """An authentic request without the parameters Twilio always sends."""


def public_url(base_url: str, path: str, query: str) -> str:
    """The URL Twilio called, which is what it signed: our public base, the path, the query."""
    url = base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def verify(auth_token: str, url: str, form: Form, signature: str | None) -> None:
    """Accept a request Twilio signed for `url` with these form parameters, or raise
    `SignatureRejected`."""
    if not signature:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header")
    if not RequestValidator(auth_token).validate(url, form, signature):
        raise SignatureRejected(
            f"{SIGNATURE_HEADER} does not match {url} and the form: "
            "is PUBLIC_BASE_URL the address Twilio calls?"
        )


class Keyword(StrEnum):
    """What an inbound SMS asks of us."""

    STOP = "stop"
    START = "start"


@dataclass(frozen=True)
class InboundSms:
    """An inbound SMS, as much of it as dunning needs."""

    message_sid: str
    sender: str
    keyword: Keyword | None

    def event(self, form: Form) -> WebhookEvent:
        """The row that records it: the sender and the keyword, never the text of a message
        that is not a keyword."""
        payload = {k: form[k] for k in ("MessageSid", "AccountSid", "From", "To") if k in form}
        payload["OptOutType"] = form.get("OptOutType", "")
        payload["keyword"] = self.keyword.value if self.keyword else None
        kind = f"sms.{self.keyword.value}" if self.keyword else "sms.inbound"
        return _event(self.message_sid, kind, payload)


def read_inbound(form: Form) -> InboundSms:
    """The inbound SMS in a webhook's form; `UnreadableCallback` without a sid or a sender."""
    sid, sender = form.get("MessageSid", "").strip(), form.get("From", "").strip()
    if not sid or not sender:
        raise UnreadableCallback("an inbound SMS needs MessageSid and From")
    if not _SID.fullmatch(sid):
        raise UnreadableCallback("MessageSid is not a Twilio SID")
    if not _address(sender):
        raise UnreadableCallback("From is not a phone number or address")
    return InboundSms(sid, sender, keyword(form))


def keyword(form: Form) -> Keyword | None:
    """STOP or START: Twilio's ``OptOutType`` (Advanced Opt-Out) when it sends one, else the
    body when it is only a keyword, in any case ("Stop texting me" is not one, as for Twilio)."""
    opt_out_type = form.get("OptOutType", "").strip().upper()
    if opt_out_type == "STOP":
        return Keyword.STOP
    if opt_out_type == "START":
        return Keyword.START
    word = form.get("Body", "").strip().strip(".!").upper()
    if word in OPT_OUT_WORDS:
        return Keyword.STOP
    if word in OPT_IN_WORDS:
        return Keyword.START
    return None


def apply_inbound(store: CaseStore, sms: InboundSms) -> tuple[WebhookEventStatus, str]:
    """Suppress SMS to a sender who said STOP, lift it for one who said START."""
    if sms.keyword is Keyword.STOP:
        store.suppress("sms", sms.sender, UndeliverableReason.OPTED_OUT, SOURCE)
        return WebhookEventStatus.PROCESSED, "opted out: SMS suppressed"
    if sms.keyword is Keyword.START:
        if store.lift_suppression("sms", sms.sender):
            return WebhookEventStatus.PROCESSED, "opted in: SMS suppression lifted"
        return WebhookEventStatus.IGNORED, "opted in: SMS was not suppressed"
    return WebhookEventStatus.IGNORED, "not an opt-out or opt-in keyword"


@dataclass(frozen=True)
class StatusCallback:
    """Twilio's report on an SMS we sent."""

    message_sid: str
    status: str
    error_code: int | None
    key: str
    to: str

    def event(self, form: Form) -> WebhookEvent:
        """The row that records it, keyed by sid and status (one callback per status)."""
        payload = {k: form[k] for k in ("MessageSid", "AccountSid", "MessageStatus") if k in form}
        payload |= {"ErrorCode": self.error_code, "key": self.key}
        return _event(f"{self.message_sid}:{self.status}", f"sms.{self.status}", payload)


def read_status(form: Form, query: Form) -> StatusCallback:
    """The callback in a form (and our message key in the URL's query)."""
    sid = form.get("MessageSid", "").strip() or form.get("SmsSid", "").strip()
    status = (form.get("MessageStatus", "") or form.get("SmsStatus", "")).strip().lower()
    if not sid or not status:
        raise UnreadableCallback("a status callback needs MessageSid and MessageStatus")
    if not _SID.fullmatch(sid):
        raise UnreadableCallback("MessageSid is not a Twilio SID")
    if not _STATUS.fullmatch(status):
        raise UnreadableCallback("MessageStatus is not a message status")
    code, key, to = form.get("ErrorCode", "").strip(), query.get("key", ""), form.get("To", "")
    return StatusCallback(
        message_sid=sid,
        status=status,
        error_code=int(code) if _ERROR_CODE.fullmatch(code) else None,
        key=key if len(key) <= MAX_KEY_LENGTH and key.isprintable() else "",
        to=to.strip() if _address(to.strip()) else "",
    )


def apply_status(store: CaseStore, callback: StatusCallback) -> tuple[WebhookEventStatus, str]:
    """Note the delivery on the message row; a number that refused it for good (opted out,
    invalid, no SMS) is suppressed, so no later step tries it again."""
    row = find_message(store, "sms", [callback.message_sid], callback.key)
    if row is not None and row.provider_id not in (None, callback.message_sid):
        row = None  # the key names a message that went out as another SMS
    details = [note_delivery(store, row, callback.status, _PROGRESS)] if row else []
    reason = UNDELIVERABLE.get(callback.error_code or 0)
    recipient = row.recipient if row is not None else callback.to
    if callback.status in FAILED_STATUSES and reason is not None and recipient:
        store.suppress("sms", recipient, reason, SOURCE)
        details.append(f"error {callback.error_code}: SMS suppressed ({reason})")
    if not details:
        return WebhookEventStatus.IGNORED, f"no message of ours is {callback.message_sid}"
    return WebhookEventStatus.PROCESSED, "; ".join(details)


def _address(text: str) -> bool:
    """Whether `text` can be a sender or recipient: short, printable text."""
    return 0 < len(text) <= MAX_ADDRESS_LENGTH and text.isprintable()


def _event(event_id: str, kind: str, payload: dict) -> WebhookEvent:
    return WebhookEvent(
        provider=PROVIDER, event_id=event_id, type=kind, occurred_at=utcnow(), payload=payload
    )
