"""The message preferences page: /preferences?token=... and /unsubscribe?token=... (the link in
every email's footer and its List-Unsubscribe header; an "unsubscribe" token).

GET shows, in the customer's language, what each choice stops: payment emails to their
address, payment texts to their number, every message about this invoice only, or every
payment message (email, SMS and in-app), each with its undo. GET never changes anything
(mail scanners follow links). POST carries a choice out; a POST without one is a mail
client's one-click unsubscribe (RFC 8058) and stops email. Undo lifts only what this page
stopped: a bounce, a carrier's STOP or support's opt-out is not the page's to lift.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from activities.notify.links import InvalidToken, redact_tokens, verify_token
from activities.store import CASE_SCOPE, CaseStore, CustomerProfile
from webhooks.pages import Pages

log = logging.getLogger("dunning.webhooks")

PATH = "/preferences"
# Written on the suppressions this page makes; undo lifts only those.
REASON, SOURCE = "unsubscribed", "link"
CHANNELS = ("email", "sms", "in_app")
# What each choice stops ("all": every channel the customer can be reached on, for every
# invoice; "case": every message about this invoice only).
CHOICES = ("email", "sms", "all", "case")
# Our forms hold a few short fields; a note of 1000 characters is the longest.
MAX_FORM_BYTES = 64_000
FORM_TIMEOUT = 10.0  # seconds for a form's body to arrive


class UnreadableForm(ValueError):
    """A POST whose body is too large, too slow or not a URL-encoded UTF-8 form."""


async def posted_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the first of a repeated name); {} for a GET or a body
    of another type (a mail client's one-click POST may come as multipart: it needs no field).
    `UnreadableForm` for a body over `MAX_FORM_BYTES`, slower than `FORM_TIMEOUT` or not UTF-8."""
    if request.method != "POST":
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    chunks, size = [], 0
    try:
        async with asyncio.timeout(FORM_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_FORM_BYTES:
                    raise UnreadableForm(f"a form larger than {MAX_FORM_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError as err:
        raise UnreadableForm("the form did not arrive in time") from err
    if kind != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as err:
        raise UnreadableForm("the form is not UTF-8") from err
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


@dataclass(frozen=True)
class ChannelState:
    """One channel of the customer's: where it reaches them, and whether it is stopped."""

    channel: str
    contact: str
    shown: str
    stopped: bool
    by_page: bool
    """Stopped by this page (the customer may undo it), not by a bounce, STOP or support."""


class Preferences:
    """Reads and changes which payment messages a case's customer gets. Safe to share."""

    def __init__(self, store: CaseStore, pages: Pages, secret: str) -> None:
        self.store = store
        self.pages = pages
        self.secret = secret

    def case_for(self, token: str, now: datetime | None = None) -> str:
        """The case a token names; `InvalidToken` for a bad, foreign or expired one."""
        return verify_token(token, self.secret, now or datetime.now(UTC), use="unsubscribe")

    def channels(self, customer: CustomerProfile) -> dict[str, ChannelState]:
        """The channels that reach `customer` and whether each is stopped."""
        contacts = {
            "email": (customer.email, _masked_email(customer.email)),
            "sms": (customer.phone, _masked_phone(customer.phone)),
            "in_app": (customer.customer_id, ""),
        }
        found = {}
        for channel, (contact, shown) in contacts.items():
            if not contact:
                continue
            row = self.store.suppression(channel, contact)
            found[channel] = ChannelState(
                channel=channel,
                contact=contact,
                shown=shown,
                stopped=row is not None,
                by_page=row is not None and row.source == SOURCE,
            )
        return found

    def stop(self, customer: CustomerProfile, choice: str, case_id: str) -> list[str]:
        """Stop `choice` (email, sms or all) for the customer, or (case) every message about
        `case_id`; what was stopped."""
        if choice == "case":
            if self.store.suppression(CASE_SCOPE, case_id) is not None:
                return []
            self.store.suppress(CASE_SCOPE, case_id, REASON, source=SOURCE)
            return ["case"]
        states = self.channels(customer)
        chosen = [c for c in CHANNELS if c in states and (choice == "all" or c == choice)]
        for channel in chosen:
            if not states[channel].stopped:  # a bounce or STOP keeps its own reason
                self.store.suppress(channel, states[channel].contact, REASON, source=SOURCE)
        return chosen

    def resume(self, customer: CustomerProfile, choice: str, case_id: str) -> list[str]:
        """Undo: lift what this page stopped for `choice`; what started again."""
        if choice == "case":
            row = self.store.suppression(CASE_SCOPE, case_id)
            stopped_here = row is not None and row.source == SOURCE
            return (
                ["case"]
                if stopped_here and self.store.lift_suppression(CASE_SCOPE, case_id)
                else []
            )
        states = self.channels(customer)
        chosen = [c for c in CHANNELS if c in states and (choice == "all" or c == choice)]
        return [
            channel
            for channel in chosen
            if states[channel].by_page
            and self.store.lift_suppression(channel, states[channel].contact)
        ]

    # The page ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """GET shows the choices; POST carries out ``action`` (stop or resume) for ``choice``
        (email, sms, all); a POST with neither is RFC 8058's one-click: stop email."""
        header = self.pages.language_from_header(request.headers.get("accept-language"))
        try:
            form = await posted_form(request)
        except UnreadableForm as err:
            log.info("preferences page: %s", err)
            return self._error(header, "invalid", 400)
        token = request.query_params.get("token") or form.get("token", "")
        requested = request.query_params.get("lang") or form.get("lang") or None
        fallback = self.pages.language_for(requested) if requested else header
        try:
            case_id = self.case_for(token)
        except InvalidToken as err:
            problem = "expired" if "expired" in str(err) else "invalid"
            return self._error(fallback, problem, 400)
        try:
            customer = await run_in_threadpool(self._customer, case_id)
            if customer is None:
                return self._error(fallback, "missing", 404)
            language = self.pages.language_for(requested, customer.locale)
            action, choice = form.get("action") or "stop", form.get("choice", "")
            if request.method == "GET":
                return await self._page(token, language, customer, case_id)
            if not choice:  # a mail client's one-click POST carries no choice
                if not customer.email:
                    return self._error(language, "missing", 404)
                choice = "email"
            if choice not in CHOICES or action not in ("stop", "resume"):
                return await self._page(token, language, customer, case_id, status=400)
            carry_out = self.stop if action == "stop" else self.resume
            changed = await run_in_threadpool(carry_out, customer, choice, case_id)
            log.info("case %s: %s %s (%s)", case_id, action, choice, ", ".join(changed) or "none")
            done = f"{action}_{choice}" if changed else f"unchanged_{action}"
            return await self._page(token, language, customer, case_id, done=done)
        except OperationalError:
            return self._error(fallback, "unavailable", 503)

    def _customer(self, case_id: str) -> CustomerProfile | None:
        case = self.store.get_case(case_id)
        if case is None:  # a pre-dunning notice's link names the notice (card-..., renewal-...)
            sent = self.store.messages(case_id)
            return self.store.get_customer(sent[0].customer_id) if sent else None
        return self.store.get_customer(case.customer_id)

    async def _page(
        self,
        token: str,
        language: str,
        customer: CustomerProfile,
        case_id: str,
        done: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        states = await run_in_threadpool(self.channels, customer)
        case, stopped = await run_in_threadpool(
            lambda: (self.store.get_case(case_id), self.store.suppression(CASE_SCOPE, case_id))
        )
        html = self.pages.render_page(
            "preferences",
            language,
            token=token,
            path=PATH,
            states=states,
            all_stopped=all(state.stopped for state in states.values()),
            all_undoable=any(state.by_page for state in states.values()),
            invoice=case.invoice_id if case else case_id,
            case_stopped=stopped is not None,
            case_undoable=stopped is not None and stopped.source == SOURCE,
            done=done,
        )
        return HTMLResponse(html, status_code=status)

    def _error(self, language: str, problem: str, status: int) -> HTMLResponse:
        return HTMLResponse(self.pages.render_error(language, problem, path=PATH), status)


def _masked_email(email: str | None) -> str:
    """k•••@example.com: enough to recognise one's own address on a page a link opens."""
    if not email or "@" not in email:
        return ""
    name, _, domain = email.partition("@")
    return f"{name[:1]}•••@{domain}"


def _masked_phone(phone: str | None) -> str:
    """•••0123: the last four digits."""
    return f"•••{phone[-4:]}" if phone else ""


class RedactTokens(logging.Filter):
    """Takes tokens out of log records before any handler sees them: the access log prints
    each request's query string, and ``GET /preferences?token=...`` (or any page's link)
    carries a working link."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message and its string arguments; never drop the record."""
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True
