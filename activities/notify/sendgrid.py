"""SendGrid: dunning email through the official `sendgrid` SDK (v3 Mail Send).

SendGrid has no idempotency key, so the activity's outbox row is what keeps a retry from
sending twice. Errors leave here as one of three kinds: `UndeliverableError` (SendGrid
refused the recipient's address), `NotifierConfigError` (the key, the sender or the request
is wrong: no retry can help) or `NotifierUnavailable` (rate limited, down or unreachable: the
activity retries). Their messages never hold the recipient's address.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    From,
    GroupId,
    Header,
    Mail,
    MailSettings,
    SandBoxMode,
    To,
)

from activities.notify import (
    NotifierConfigError,
    NotifierUnavailable,
    OutboundMessage,
    UndeliverableError,
    UndeliverableReason,
)
from activities.scrub import scrubbed
from config.settings import Settings

log = logging.getLogger("dunning.sendgrid")

SENT = (202, 200)  # 200 only in sandbox mode: valid, but not queued
# The 400 errors that are about the recipient, e.g. ``personalizations.0.to.0.email``.
_RECIPIENT_FIELD = re.compile(r"^personalizations(\.\d+)?\.(to|cc|bcc)\b")


class SendGridNotifier:
    """`Notifier` for email over SendGrid.

    Sends our own rendered subject, text and HTML, or SendGrid's dynamic template when one is
    configured for the message's template. Every message goes out in the dunning unsubscribe
    group when one is set (SendGrid then adds the unsubscribe link and List-Unsubscribe
    header), and carries only opaque ids as categories and custom args."""

    def __init__(
        self,
        api_key: str,
        *,
        sender: str,
        sender_name: str = "",
        host: str = "https://api.sendgrid.com",
        template_ids: Mapping[str, str] | None = None,
        unsubscribe_group_id: int | None = None,
        sandbox: bool = False,
        timeout: float = 20.0,
    ) -> None:
        self.client = SendGridAPIClient(api_key, host=host.rstrip("/"))
        self.sender = From(sender, sender_name or None)
        self.template_ids = dict(template_ids or {})
        self.unsubscribe_group_id = unsubscribe_group_id
        self.sandbox = sandbox
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridNotifier:
        """The notifier for `Settings` with ``EMAIL_PROVIDER=sendgrid``."""
        if settings.sendgrid_api_key is None:
            raise NotifierConfigError("EMAIL_PROVIDER=sendgrid needs SENDGRID_API_KEY")
        return cls(
            settings.sendgrid_api_key.get_secret_value(),
            sender=settings.email_from,
            sender_name=settings.email_from_name,
            host=settings.sendgrid_host,
            template_ids=settings.sendgrid_template_ids,
            unsubscribe_group_id=settings.sendgrid_unsubscribe_group_id,
        )

    def send(self, message: OutboundMessage) -> str:
        """Hand the email to SendGrid; returns its ``X-Message-Id`` (else the message key)."""
        body = self.mail(message).get()
        try:
            response = self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as err:
            raise _translated(err, message.recipient) from None
        except OSError as err:  # TimeoutError, a refused or reset connection (URLError)
            raise NotifierUnavailable(f"SendGrid unreachable ({type(err).__name__})") from None
        if response.status_code not in SENT:
            raise NotifierUnavailable(f"SendGrid answered HTTP {response.status_code}")
        return response.headers.get("X-Message-Id") or message.key

    def mail(self, message: OutboundMessage) -> Mail:
        """The Mail Send request for `message`, as the SDK's helpers build it."""
        template_id = self.template_ids.get(message.template)
        if template_id:
            mail = Mail(from_email=self.sender, to_emails=_to(message.recipient))
            mail.template_id = template_id
            mail.dynamic_template_data = dict(message.variables)
        else:
            mail = Mail(
                from_email=self.sender,
                to_emails=_to(message.recipient),
                subject=message.subject,
                plain_text_content=message.body,
                html_content=message.html or None,
            )
        if self.unsubscribe_group_id is not None:
            mail.asm = Asm(GroupId(self.unsubscribe_group_id))
        elif message.variables.get("unsubscribe"):
            # No SendGrid group to add one: our own one-click link (RFC 8058).
            mail.header = [
                Header("List-Unsubscribe", f"<{message.variables['unsubscribe']}>"),
                Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ]
        mail.category = [Category(name) for name in ("dunning", message.template) if name]
        ids = {"case_id": message.case_id, "step": message.step, "message_key": message.key}
        mail.custom_arg = [CustomArg(key, value) for key, value in ids.items() if value]
        if self.sandbox:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        return mail


def _to(address: str) -> To:
    """The recipient exactly as given: `To(address)` would parse it as "Name <address>" and
    turn anything without an @ into a display name with no address at all."""
    to = To()
    to.email = address
    return to


def _translated(err: HTTPError, recipient: str) -> Exception:
    """The error `send` raises instead of `err`: undeliverable, misconfigured or transient."""
    status = err.status_code
    errors = _errors(err)
    log.warning("sendgrid http %s: %s", status, [error.get("field") for error in errors])
    detail = "; ".join(_described(error, recipient) for error in errors)
    if status == 400 and any(_RECIPIENT_FIELD.match(error.get("field") or "") for error in errors):
        return UndeliverableError(
            f"SendGrid refused the recipient address: {detail}", UndeliverableReason.INVALID
        )
    if status == 401:
        return NotifierConfigError(
            "SendGrid rejected the API key (HTTP 401): check SENDGRID_API_KEY"
        )
    if status == 403:
        return NotifierConfigError(
            f"SendGrid refused the request (HTTP 403): the API key needs Mail Send access. {detail}"
        )
    if status == 429 or status >= 500:
        return NotifierUnavailable(f"SendGrid unavailable (HTTP {status}): {detail}".rstrip(": "))
    return NotifierConfigError(f"SendGrid rejected the message (HTTP {status}): {detail}")


def _errors(err: HTTPError) -> list[dict]:
    """SendGrid's ``errors`` list; empty when the body was not SendGrid's JSON."""
    try:
        body = json.loads(err.body or b"{}")
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [error for error in errors or [] if isinstance(error, dict)]


def _described(error: dict, recipient: str) -> str:
    """One SendGrid error as ``message (field)``, without the recipient's address."""
    text = str(error.get("message") or "error")
    if error.get("field"):
        text = f"{text} ({error['field']})"
    return scrubbed(text, recipient)
