"""What the customer's self-service pages share: the recovery page (one case) and the account
page (every open case of one customer).

`SelfServicePage` holds what both need: the friendly error page (`kindly`), the form a POST
carries, a case's live status from its workflow, a new card checked, saved and told to a case,
and amounts and dates written the customer's way. Every action reaches a case as an update
with actor "customer", so it lands in the case's audit trail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any, TypeVar

from babel.dates import format_date
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.payments.simulated import usable_token
from activities.payments.stripe import StripeBiller
from activities.store import CaseStore, CustomerProfile
from config.errors import one_line
from config.settings import Settings
from intake.cases import workflow_id_for
from webhooks.cases import CaseClosed, CaseDesk, CaseRefused, TemporalUnavailable
from webhooks.pages import PageProblem, Pages
from workflows.dunning import DunningWorkflow
from workflows.models import ID_PATTERN, CaseStatus, CaseView, PaymentMethodUpdated
from workflows.money import format_money

log = logging.getLogger("dunning.webhooks")

ACTOR = "customer"
# A customer waits this long for a case whose worker does not answer, then sees "try later".
QUERY_TIMEOUT = timedelta(seconds=10)
# Forms here are a token and a few short fields.
MAX_FORM_FIELDS = 10
FINISHED = {CaseStatus.RECOVERED, CaseStatus.CANCELLED, CaseStatus.COLLECTIONS}
ON_HOLD = {CaseStatus.PAUSED, CaseStatus.DISPUTED, CaseStatus.BLOCKED}
# A page for one customer: never kept by a shared cache or the browser's history.
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Page = TypeVar("Page", bound="SelfServicePage")


def kindly(
    handler: Callable[[Page, Request], Awaitable[Response]],
) -> Callable[[Page, Request], Awaitable[Response]]:
    """Answer a `PageProblem` with the error page, and anything unforeseen with the
    "unavailable" page (503) whose details go to the log, never to the customer."""

    @functools.wraps(handler)
    async def answer(self: Page, request: Request) -> Response:
        try:
            return await handler(self, request)
        except PageProblem as problem:
            return self.error_page(problem.language, problem.problem, problem.status)
        except Exception:
            log.exception("%s page: unexpected error on %s", self.path, request.url.path)
            language = self.pages.language_from_header(request.headers.get("accept-language"))
            return self.error_page(language, "unavailable", 503)

    return answer


class SelfServicePage:
    """The parts of a customer's page that do not depend on what it shows. `path` is the
    page's own (``/recover``, ``/account``): its errors' language switch points there."""

    path = "/"

    def __init__(self, settings: Settings, desk: CaseDesk, store: CaseStore, pages: Pages):
        self.settings = settings
        self.desk = desk
        self.store = store
        self.pages = pages
        self.secret = settings.self_service_secret.get_secret_value()
        self.hosted = settings.gateway == "stripe"
        # The simulated gateway pays and takes cards here; Stripe on its own pages.
        self.simulated = settings.gateway == "simulated"
        self._stripe: StripeBiller | None = None

    @property
    def stripe(self) -> StripeBiller:
        """The Stripe account, built at first use (GATEWAY=stripe only)."""
        if self._stripe is None:
            self._stripe = StripeBiller.from_settings(self.settings)
        return self._stripe

    async def form(self, request: Request) -> dict[str, str]:
        """A POST's form fields; `PageProblem` (400) for a body that is not a small form."""
        language = self.pages.language_from_header(request.headers.get("accept-language"))
        try:
            async with asyncio.timeout(self.settings.receiver_body_timeout):
                data = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        except Exception as err:  # not a form, too many fields, too slow: the sender's
            log.info("%s page: unreadable form: %s", self.path, one_line(err))
            raise PageProblem(400, "invalid", language) from err
        return {key: value for key, value in data.items() if isinstance(value, str)}

    async def case_status(self, case_id: str, language: str) -> CaseView | None:
        """The running case's status; None once it has finished (its row then speaks)."""
        try:
            client = await self.desk.client()
            handle = client.get_workflow_handle(workflow_id_for(case_id))
            return await handle.query(DunningWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
        except TemporalUnavailable as err:
            log.warning("%s page: %s", self.path, one_line(err))
            raise PageProblem(503, "unavailable", language) from err
        except WorkflowQueryFailedError:
            return None  # not started yet, or finished in a way the query cannot read
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            log.warning("%s page: Temporal did not answer: %s", self.path, one_line(err))
            raise PageProblem(503, "unavailable", language) from err

    async def tell_card(
        self, case_ids: list[str], language: str, update: PaymentMethodUpdated
    ) -> None:
        """A new card is the customer's, not one invoice's: each of `case_ids` charges it soon.
        A case that refuses goes on as it was (the card stays saved)."""
        for case_id in case_ids:
            answer = await self.ask_case(
                case_id, language, DunningWorkflow.record_payment_method, update
            )
            if isinstance(answer, str):
                log.info("case %s kept its card: %s", case_id, answer)

    async def ask_case(
        self,
        case_id: str,
        language: str,
        update: Any,
        payload: BaseModel,
        update_id: str | None = None,
    ) -> CaseView | str | None:
        """Carry out a workflow update: the case's answer, or its refusal (the validator's
        reason). A case that finished meanwhile answers None: its page says how it ended."""
        try:
            return await self.desk.ask(case_id, update, payload, update_id)
        except CaseRefused as refusal:
            log.info("case %s refused %s: %s", case_id, update.__name__, refusal)
            return str(refusal)
        except TemporalUnavailable as err:
            raise PageProblem(503, "unavailable", language) from err
        except CaseClosed:
            return None

    async def save_card(
        self, customer_id: str, customer: CustomerProfile | None, method: str
    ) -> PaymentMethodUpdated:
        """Keep `method` as the customer's card; the update that tells a case about it."""
        profile = customer or CustomerProfile(customer_id=customer_id)
        await run_in_threadpool(
            self.store.upsert_customer, profile.model_copy(update={"payment_method": method})
        )
        return PaymentMethodUpdated(payment_method=method, actor=ACTOR)

    def money(
        self, language: str, customer: CustomerProfile | None, amount: int, currency: str
    ) -> str:
        """An amount the customer's way: their own locale when it speaks the page's language
        (en-GB writes £ differently from en-US), else the page language's."""
        locale = str(self.pages.babel(language))
        if customer is not None:
            theirs = self.pages.babel(customer.locale)
            if theirs.language == self.pages.babel(language).language:
                locale = str(theirs)
        return format_money(amount, currency, locale)

    def long_date(self, language: str, day: date) -> str:
        return format_date(day, "long", locale=self.pages.babel(language))

    def absolute(self, path: str) -> str:
        return f"{self.settings.public_base_url}{path}"

    def error_page(self, language: str, problem: str, status: int) -> HTMLResponse:
        html = self.pages.render_error(language, problem, path=self.path)
        return HTMLResponse(html, status_code=status, headers=NO_STORE)


def card_of(form: dict[str, str]) -> tuple[str, str, str | None]:
    """The card a card form names: what was typed, what was chosen, and the payment method
    to keep (the typed one, else the chosen one), None when it is not one we can use."""
    typed = field(form, "payment_method").strip()
    chosen = field(form, "card")
    method = typed or chosen
    usable = re.fullmatch(ID_PATTERN, method) and usable_token(method)
    return typed, chosen, method if usable else None


def field(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
