"""Twilio: dunning SMS through the official `twilio` SDK (Programmable Messaging).

Twilio has no idempotency key, so the activity's outbox row is what keeps a retry from
sending twice. Errors leave here as `UndeliverableError` (invalid number 21211, not able to
take SMS 21614, opted out 21610), `NotifierConfigError` (credentials or request wrong: no
retry can help) or `NotifierUnavailable` (rate limited, down or unreachable: the activity
retries). Twilio's messages quote the phone number; what leaves here never does.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from activities.notify import (
    NotifierConfigError,
    NotifierUnavailable,
    OutboundMessage,
    UndeliverableError,
    UndeliverableReason,
)
from activities.scrub import scrubbed
from config.settings import Settings

log = logging.getLogger("dunning.twilio")

TWILIO_API = "https://api.twilio.com"
UNDELIVERABLE = {
    21211: UndeliverableReason.INVALID,  # not a valid phone number
    21614: UndeliverableReason.NOT_SMS_CAPABLE,  # a landline, or no SMS
    21610: UndeliverableReason.OPTED_OUT,  # the recipient replied STOP
}
AUTHENTICATE = 20003


class RebasedHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending what it addresses to api.twilio.com to `base_url`.

    With no `base_url` it is the plain client (with our timeout): Twilio itself."""

    def __init__(self, base_url: str | None = None, timeout: float = 20.0) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None

    def request(self, method: str, url: str, *args, **kwargs) -> Response:
        """Send the request, to `base_url` when one is set."""
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioNotifier:
    """`Notifier` for SMS over Twilio.

    Sends from the Messaging Service when one is set (its sender pool picks the number and
    handles STOP), else from the one number; asks Twilio to report delivery to our status
    webhook, keyed by the message key only."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        public_base_url: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise NotifierConfigError("Twilio needs a From number or a Messaging Service SID")
        self.client = Client(
            account_sid, auth_token, http_client=RebasedHttpClient(base_url, timeout)
        )
        self.public_base_url = public_base_url.rstrip("/")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioNotifier:
        """The notifier for `Settings` with ``SMS_PROVIDER=twilio``."""
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise NotifierConfigError(
                "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            public_base_url=settings.public_base_url,
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_base_url,
        )

    def status_callback(self, message: OutboundMessage) -> str:
        """Where Twilio reports this message's delivery: our webhook, with the key only."""
        return f"{self.public_base_url}/webhooks/twilio/status?key={quote(message.key, safe=':')}"

    def send(self, message: OutboundMessage) -> str:
        """Hand the SMS to Twilio; returns the Message SID (``SM...``)."""
        sender = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number}
        )
        try:
            sent = self.client.messages.create(
                to=message.recipient,
                body=message.body,
                status_callback=self.status_callback(message),
                **sender,
            )
        except TwilioException as err:
            raise _translated(err, message.recipient) from None
        except requests.RequestException as err:  # timeouts, refused or reset connections
            raise NotifierUnavailable(f"Twilio unreachable ({type(err).__name__})") from None
        return sent.sid


def _translated(err: TwilioException, recipient: str) -> Exception:
    """The error `send` raises instead of `err`, with the phone number scrubbed out."""
    status = getattr(err, "status", None)
    code = getattr(err, "code", None)
    log.warning("twilio %s (http %s, code %s)", type(err).__name__, status, code)
    if isinstance(err, TwilioRestException):
        text = str(err.msg).removeprefix("Unable to create record: ")
    elif isinstance(err, TwilioServiceException):
        text = f"{err.title}: {err.detail}" if err.detail else err.title
    else:
        text = str(err)
    clean = scrubbed(text, recipient)
    if code in UNDELIVERABLE:
        return UndeliverableError(f"Twilio {code}: {clean}", UNDELIVERABLE[code])
    if code == AUTHENTICATE or status in (401, 403):
        return NotifierConfigError(
            f"Twilio rejected the credentials (HTTP {status}, code {code}): "
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    if status is not None and (status == 429 or status >= 500):
        return NotifierUnavailable(f"Twilio unavailable (HTTP {status}, code {code}): {clean}")
    if status is None:
        return NotifierConfigError(f"Twilio client error: {clean}")
    return NotifierConfigError(f"Twilio refused the message (HTTP {status}, code {code}): {clean}")
