"""In-app messages: the message row in the store is the notification the product shows; when
``IN_APP_WEBHOOK_URL`` is set, the product is also told at once by a signed webhook.

    POST <IN_APP_WEBHOOK_URL>
    Content-Type: application/json
    Dunning-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">

    {"key": ..., "customer_id": ..., "case_id": ..., "step": ..., "template": ..., "text": ...}

The product verifies the signature as our receiver does (activities/signing.py) and dedupes on
`key`: a retried activity may post the same message again. The payload names the customer by
id only; their email address and phone number never leave the store this way.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from activities import signing
from activities.notify import NotifierConfigError, NotifierUnavailable, OutboundMessage
from config.settings import Settings

log = logging.getLogger("dunning.in_app")

SIGNATURE_HEADER = "Dunning-Signature"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would turn the POST into a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class InAppNotifier:
    """`Notifier` for in-app messages: the stored row, plus a signed POST to the product when
    a webhook URL is configured. Any answer but 2xx, and any timeout, raises
    `NotifierUnavailable`, so the activity retries."""

    def __init__(
        self, webhook_url: str | None = None, secret: str | None = None, timeout: float = 10.0
    ) -> None:
        if webhook_url and not secret:
            raise NotifierConfigError("IN_APP_WEBHOOK_URL needs IN_APP_WEBHOOK_SECRET to sign with")
        self.webhook_url = webhook_url
        self.secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    @classmethod
    def from_settings(cls, settings: Settings) -> InAppNotifier:
        """The notifier for `Settings`: a webhook when ``IN_APP_WEBHOOK_URL`` is set."""
        secret = settings.in_app_webhook_secret
        return cls(settings.in_app_webhook_url, secret.get_secret_value() if secret else None)

    @staticmethod
    def payload(message: OutboundMessage) -> dict[str, str]:
        """What the product is told: opaque ids and the text, never a contact detail (the
        recipient of an in-app message is the customer id)."""
        return {
            "key": message.key,
            "customer_id": message.recipient,
            "case_id": message.case_id,
            "step": message.step,
            "template": message.template,
            "text": message.body,
        }

    def send(self, message: OutboundMessage) -> str:
        """Post the notification when a webhook is configured; returns ``in_app:<key>``."""
        if self.webhook_url:
            self._post(message)
        else:
            log.info("in-app %s: stored for the product", message.key)
        return f"in_app:{message.key}"

    def _post(self, message: OutboundMessage) -> None:
        body = json.dumps(self.payload(message), ensure_ascii=False).encode()
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signing.sign(body, self.secret),
                "User-Agent": "dunning-in-app-webhook",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            err.close()
            raise NotifierUnavailable(f"in-app webhook answered HTTP {err.code}") from None
        except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out, DNS
            reason = getattr(err, "reason", err)
            raise NotifierUnavailable(
                f"in-app webhook unreachable ({type(reason).__name__})"
            ) from None
        if not 200 <= status < 300:
            raise NotifierUnavailable(f"in-app webhook answered HTTP {status}")
        log.info("in-app %s: posted to the product (HTTP %s)", message.key, status)
