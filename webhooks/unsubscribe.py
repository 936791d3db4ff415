"""One-click email unsubscribe: the link in every email's footer and List-Unsubscribe header.

GET shows a page with one button (mail scanners follow links; they must not unsubscribe
anybody); POST, from that button or a mail client's one-click (RFC 8058), suppresses dunning
email to the customer the token's case belongs to.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from html import escape

from activities.notify.links import redact_tokens, verify_token
from activities.store import CaseStore

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Payment reminders</title></head>
<body style="font-family:sans-serif;max-width:480px;margin:48px auto;padding:0 16px;">
{body}
</body></html>"""


class Unsubscribe:
    """Checks unsubscribe tokens and carries the unsubscription out."""

    def __init__(self, store: CaseStore, secret: str) -> None:
        self.store = store
        self.secret = secret

    def case_for(self, token: str, now: datetime | None = None) -> str:
        """The case a token names; `InvalidToken` for a bad, foreign or expired one."""
        return verify_token(token, self.secret, now or datetime.now(UTC), use="unsubscribe")

    def carry_out(self, case_id: str) -> bool:
        """Suppress dunning email to the case's customer; False when nobody is on file."""
        case = self.store.get_case(case_id)
        customer = self.store.get_customer(case.customer_id) if case else None
        if customer is None or not customer.email:
            return False
        self.store.suppress("email", customer.email, "unsubscribed", source="link")
        return True


def confirm_page(token: str) -> str:
    """The page a GET shows: one button that posts the unsubscription."""
    return PAGE.format(
        body=(
            "<h1>Stop payment reminders by email?</h1>"
            f'<form method="post" action="?token={escape(token, quote=True)}">'
            '<button type="submit">Unsubscribe</button></form>'
        )
    )


def done_page() -> str:
    """The page after unsubscribing."""
    return PAGE.format(
        body="<h1>You are unsubscribed</h1><p>We will not email you about this payment again.</p>"
    )


def refused_page(reason: str) -> str:
    """The page for a link that does not work."""
    return PAGE.format(body=f"<h1>This link does not work</h1><p>{escape(reason)}.</p>")


class RedactTokens(logging.Filter):
    """Takes tokens out of log records before any handler sees them: the access log prints
    each request's query string, and ``GET /unsubscribe?token=...`` carries a working link."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message and its string arguments; never drop the record."""
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True
