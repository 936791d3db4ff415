"""A local SendGrid v3 Mail Send API for adapter tests: SendGrid's path, auth and error bodies.

It speaks the wire format the official SDK sends (``POST /v3/mail/send``, a JSON body,
``Authorization: Bearer <key>``) and answers as SendGrid does: 202 with an ``X-Message-Id``
header and no body; 200 and no message id in sandbox mode (valid, but not queued); 401 for a
missing or wrong key; 400 with every validation error of the payload, each naming its field
(an address that is not one is ``personalizations.0.to.0.email``); and scripted 403, 429 or
5xx answers, which come before validation. A test reads back every request and every mail.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.fake_http import LocalServer

ERRORS_DOC = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
# Close enough to SendGrid's own check: one @, no spaces, a dotted domain.
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_OUTAGES = {
    403: "access forbidden",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


@dataclass
class Request:
    """One request as it arrived; header names are lower case, `body` is the parsed JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: str


@dataclass
class Mail:
    """One message SendGrid accepted (202) or validated in sandbox mode (200)."""

    message_id: str | None
    body: dict
    sandbox: bool


class _Reply(Exception):
    """An API answer raised from deep in a handler."""

    def __init__(self, status: int, errors: list[dict], headers: dict | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def _error(message: str, field: str | None = None, help_url: str | None = None) -> dict:
    return {"message": message, "field": field, "help": help_url}


class FakeSendGrid(LocalServer):
    """A SendGrid API on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, api_key: str = "SG.fake-key") -> None:
        self.api_key = api_key
        self.requests: list[Request] = []
        self.mails: list[Mail] = []
        self.outages: list[int] = []
        """Statuses (403, 429, 500, 503) answered before validation, one per request."""
        self._lock = threading.Lock()
        self._start_server(self._handler())

    # Test side ----------------------------------------------------------------------------

    @property
    def sent(self) -> list[Mail]:
        """Mails queued for delivery (sandbox ones are not)."""
        return [mail for mail in self.mails if not mail.sandbox]

    # Server side --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read `fake.requests`, not stderr

        return Handler

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw_body = http.rfile.read(length).decode() if length else ""
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body
        headers = {name.lower(): value for name, value in http.headers.items()}
        request = Request(http.command, urlsplit(http.path).path, headers, body, raw_body)
        with self._lock:
            self.requests.append(request)
            try:
                status, extra = self._answer(request)
                payload = b""
            except _Reply as reply:
                status, extra = reply.status, {"Content-Type": "application/json"} | reply.headers
                payload = json.dumps({"errors": reply.errors}).encode()
        http.send_response(status)
        http.send_header("Server", "nginx")
        http.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(payload)

    def _answer(self, request: Request) -> tuple[int, dict[str, str]]:
        self._authorize(request)
        if (request.method, request.path) != ("POST", "/v3/mail/send"):
            raise _Reply(404, [_error("resource not found")])
        if self.outages:
            status = self.outages.pop(0)
            limits = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            limits["X-RateLimit-Reset"] = str(int(time.time()) + 60)
            raise _Reply(
                status, [_error(_OUTAGES.get(status, "error"))], limits if status == 429 else {}
            )
        body = request.body
        if not isinstance(body, dict):
            raise _Reply(400, [_error("Bad Request")])
        errors = _validate(body)
        if errors:
            raise _Reply(400, errors)
        sandbox = bool(body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"))
        if sandbox:
            self.mails.append(Mail(None, body, sandbox=True))
            return 200, {}
        message_id = secrets.token_urlsafe(16)[:22]
        self.mails.append(Mail(message_id, body, sandbox=False))
        return 202, {"X-Message-Id": message_id}

    def _authorize(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            raise _Reply(401, [_error("authorization required")])
        if key != self.api_key:
            raise _Reply(
                401, [_error("The provided authorization grant is invalid, expired, or revoked")]
            )


def _validate(body: dict) -> list[dict]:
    """SendGrid's 400 errors for a Mail Send payload: all of them, each with its field."""
    errors = []
    sender = body.get("from") or {}
    if not _ADDRESS.match(str(sender.get("email", ""))):
        errors.append(
            _error(
                "The from email does not contain a valid address.",
                "from.email",
                f"{ERRORS_DOC}#message.from",
            )
        )
    personalizations = body.get("personalizations") or []
    if not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                f"{ERRORS_DOC}#-Personalizations-Errors",
            )
        )
    for p, personalization in enumerate(personalizations):
        for t, recipient in enumerate(personalization.get("to") or []):
            if not _ADDRESS.match(str(recipient.get("email", ""))):
                errors.append(
                    _error(
                        "Does not contain a valid address.",
                        f"personalizations.{p}.to.{t}.email",
                        f"{ERRORS_DOC}#message.personalizations.to",
                    )
                )
    if body.get("template_id"):
        return errors
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                f"{ERRORS_DOC}#message.subject",
            )
        )
    content = body.get("content") or []
    if not content:
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content",
                f"{ERRORS_DOC}#message.content",
            )
        )
    for c, block in enumerate(content):
        if not block.get("value"):
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{c}.value",
                    f"{ERRORS_DOC}#message.content.value",
                )
            )
    return errors
