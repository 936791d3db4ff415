"""A local Twilio Messaging API for adapter tests: Twilio's path, auth and error bodies.

It speaks the wire format the official SDK sends (``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json``, a form body with ``To``, ``From`` or
``MessagingServiceSid``, ``Body`` and ``StatusCallback``, HTTP Basic auth with the account
SID and auth token) and answers as Twilio does: 201 with a Message resource (``SM...``); 401
with code 20003 for bad credentials; 400 with Twilio's error JSON (``code``, ``message``,
``more_info``, ``status``) for a number it refuses. The refused numbers default to Twilio's
test-credential magic numbers; like Twilio's 21211, every refusal here quotes the number,
so tests can prove it is scrubbed. Scripted 429 and 5xx answers come right after
authentication. A test reads back every request and every message created.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.fake_http import LocalServer

API_VERSION = "2010-04-01"
ERRORS_DOC = "https://www.twilio.com/docs/errors"
# Twilio's magic "To" numbers for test credentials, and the error each one gets.
MAGIC_NUMBERS = {
    "+15005550001": 21211,
    "+15005550002": 21612,
    "+15005550003": 21408,
    "+15005550004": 21610,
    "+15005550009": 21614,
}
REFUSALS = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number: {to}.",
    21610: "Attempt to send to unsubscribed recipient {to}.",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone "
    "number: {sender} via SMS.",
    21614: "To number: {to}, is not a mobile number",
}
_OUTAGES = {429: (20429, "Too Many Requests"), 500: (20500, "Internal Server Error")}


@dataclass
class Request:
    """One request as it arrived; header names are lower case, `form` the decoded body."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    raw_body: str

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The (username, password) of the Basic ``Authorization`` header, if any."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        username, _, password = base64.b64decode(token).decode().partition(":")
        return username, password


class _Reply(Exception):
    """An API answer raised from deep in a handler."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, code: int, message: str) -> _Reply:
    return _Reply(
        status,
        {"code": code, "message": message, "more_info": f"{ERRORS_DOC}/{code}", "status": status},
    )


class FakeTwilio(LocalServer):
    """A Twilio API on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(
        self, account_sid: str = "AC" + "0" * 31 + "1", auth_token: str = "fake-auth-token"
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.refusals: dict[str, int] = dict(MAGIC_NUMBERS)
        """Number → the Twilio error code every message to it gets."""
        self.outages: list[int] = []
        """Statuses (429, 500) answered after authentication, before anything else runs."""
        self.requests: list[Request] = []
        self.messages: list[dict] = []
        """Every Message resource created, as the 201 returned it."""
        self._lock = threading.Lock()
        self._start_server(self._handler())

    # Test side ----------------------------------------------------------------------------

    @property
    def messages_path(self) -> str:
        """The account's Messages resource."""
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

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
        headers = {name.lower(): value for name, value in http.headers.items()}
        form = dict(parse_qsl(raw_body, keep_blank_values=True))
        request = Request(http.command, urlsplit(http.path).path, headers, form, raw_body)
        with self._lock:
            self.requests.append(request)
            try:
                status, body = self._answer(request)
            except _Reply as reply:
                status, body = reply.status, reply.body
        payload = json.dumps(body).encode()
        http.send_response(status)
        http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(payload)))
        http.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        http.end_headers()
        http.wfile.write(payload)

    def _answer(self, request: Request) -> tuple[int, dict]:
        if request.basic_auth != (self.account_sid, self.auth_token):
            raise _error(401, 20003, "Authenticate")
        if self.outages:
            status = self.outages.pop(0)
            code, message = _OUTAGES.get(status, (20500, "Internal Server Error"))
            raise _error(status, code, message)
        match = re.match(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages\.json$", request.path)
        if not match or match.group(1) != self.account_sid or request.method != "POST":
            raise _error(404, 20404, f"The requested resource {request.path} was not found")
        return 201, self._create(request.form)

    def _create(self, form: dict[str, str]) -> dict:
        to, sender = form.get("To"), form.get("From")
        service = form.get("MessagingServiceSid")
        if not to:
            raise _error(400, 21604, "A 'To' phone number is required.")
        if not (sender or service):
            raise _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            raise _error(400, 21602, "Message body is required.")
        code = self.refusals.get(to)
        if code is not None:
            message = REFUSALS.get(code, "The 'To' number {to} cannot receive this message.")
            raise _error(400, code, message.format(to=to, sender=sender or "+15005550006"))
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True).replace("GMT", "+0000")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form["Body"],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # With a Messaging Service, Twilio picks the sender later: "accepted", no from.
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        self.messages.append(message)
        return message
