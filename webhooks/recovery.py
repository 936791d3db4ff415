"""The recovery page: the link in every reminder, where the customer settles the case.

    GET  /recover?token=...&lang=...   what is owed, for which invoice, since when; the buttons
    POST /recover/pay                  pay now (simulated: charged here; Stripe: its invoice page)
    GET  /recover/card?token=...       the card form (simulated gateway)
    POST /recover/card                 save a card (simulated) or go to Stripe Checkout (setup)
    POST /recover/plan                 choose one of the case's payment plans
    POST /recover/promise              promise to pay on a date

The signed "pay" token names the case and is the only credential: every form carries it in a
hidden field, so a form posted from another site cannot act without it (no cookies, nothing to
forge). It works for its whole lifetime, however often it is used: each action is idempotent
(a payment's key comes from the case, the amount and the card; the case refuses what it has
already done) and a paid case's page says it is paid. Each action reaches the case as an
update with actor "customer", so it lands in the case's audit trail. A POST that succeeds
answers 303 to the page (redirect-after-POST); one the case refuses re-renders the page with
the reason. A link that cannot be used gets a friendly page with a 4xx, never a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from activities.store import CaseStore, CustomerProfile
from activities.store.tables import Case
from config.settings import Settings
from webhooks.cases import CaseDesk
from webhooks.intake import OPENING_TYPES
from webhooks.pages import PageProblem, Pages, case_of_link, page_url
from webhooks.self_service import (
    ACTOR,
    FINISHED,
    NO_STORE,
    ON_HOLD,
    SelfServicePage,
    card_of,
    field,
    kindly,
)
from workflows.arrangements import PROMISE_HOUR
from workflows.dunning import DunningWorkflow
from workflows.models import (
    CaseStatus,
    CaseView,
    PaymentMethodUpdated,
    PayNow,
    PlanChosen,
    PromiseToPay,
)

log = logging.getLogger("dunning.webhooks")

PAGE = "/recover"
DONE_NOTICES = {"paid", "card_saved", "card_pending", "plan", "promise"}


@dataclass
class Visit:
    """One request's case: who the token names, in which language, and where the case
    stands (`view` is None for a finished case: the store's row has the last word)."""

    token: str
    language: str
    case: Case
    customer: CustomerProfile | None
    view: CaseView | None

    @property
    def status(self) -> CaseStatus:
        return self.view.status if self.view is not None else CaseStatus(self.case.status)

    @property
    def open(self) -> bool:
        """Whether the customer can still act: the case runs and is not finished."""
        return self.view is not None and self.status not in FINISHED

    @property
    def amount_due(self) -> int:
        return self.view.amount_due if self.view is not None else self.case.amount_due

    @property
    def amount_recovered(self) -> int:
        if self.view is not None:
            return self.view.amount_recovered
        return self.case.amount_recovered

    @property
    def zone(self) -> ZoneInfo | Any:
        """The customer's time zone (UTC when unknown)."""
        name = self.customer.time_zone if self.customer else None
        return ZoneInfo(name) if name else UTC


class Recovery(SelfServicePage):
    """The recovery page's handlers; one per app."""

    path = PAGE

    def __init__(self, settings: Settings, desk: CaseDesk, store: CaseStore, pages: Pages):
        super().__init__(settings, desk, store, pages)
        self.valid_for = timedelta(days=settings.self_service_valid_days)

    # Pages ---------------------------------------------------------------------------------

    @kindly
    async def page(self, request: Request) -> Response:
        """The page: what is owed and what the customer can do; `done` names the notice of
        the action just carried out."""
        query = request.query_params
        visit = await self._visit(request, query.get("token", ""), query.get("lang"))
        done = query.get("done")
        return self._page(visit, self._done_notice(visit, done) if done in DONE_NOTICES else None)

    @kindly
    async def card_form(self, request: Request) -> Response:
        """The card form (simulated gateway); with Stripe, the page's button goes to Checkout."""
        query = request.query_params
        visit = await self._visit(request, query.get("token", ""), query.get("lang"))
        if not visit.open or not self.simulated:
            return self._back(visit)
        return self._card_page(visit)

    # Actions -------------------------------------------------------------------------------

    @kindly
    async def pay(self, request: Request) -> Response:
        """Pay what is due now: charged at once (simulated) or on Stripe's invoice page."""
        visit, form = await self._posted(request)
        if not visit.open:
            return self._back(visit)
        if not self.simulated:
            url = await run_in_threadpool(self.stripe.payment_page_url, visit.case.invoice_id)
            if not url:
                raise PageProblem(503, "unavailable", visit.language)
            return RedirectResponse(url, status_code=303)
        # The case charges, with its own attempt key: never beside a retry of its own. Clicks
        # on the same page (the same attempts so far) are one request.
        update_id = f"pay-now:{visit.case.case_id}:{len(visit.view.attempts)}"
        answer = await self._update(visit, DunningWorkflow.pay_now, PayNow(actor=ACTOR), update_id)
        if isinstance(answer, str):
            return self._refused(visit, answer)
        if answer is not None and answer.status is not CaseStatus.RECOVERED:
            declined = answer.attempts[-1] if answer.attempts else None
            code = declined.decline_code if declined and not declined.approved else None
            reason = (code or "declined").replace("_", " ")
            notice = self._notice("problem", self.pages_text(visit, "declined", reason=reason))
            return self._page(visit, notice, status=402)
        return self._back(visit, done="paid")

    @kindly
    async def card(self, request: Request) -> Response:
        """A new card: saved and told to the case (simulated), or collected by Stripe
        Checkout in setup mode (its `checkout.session.completed` tells the case)."""
        visit, form = await self._posted(request)
        if not visit.open:
            return self._back(visit)
        if not self.simulated:
            back = self.absolute(page_url(PAGE, visit.token, visit.language))
            done = self.absolute(page_url(PAGE, visit.token, visit.language, done="card_pending"))
            url = await run_in_threadpool(
                self.stripe.setup_session_url,
                visit.case.customer_id,
                visit.case.currency,
                done,
                back,
                visit.case.case_id,
            )
            return RedirectResponse(url, status_code=303)
        typed, chosen, method = card_of(form)
        if method is None:
            return self._card_page(visit, chosen=chosen, typed=typed, error=True)
        update = await self.save_card(visit.case.customer_id, visit.customer, method)
        answer = await self._update(visit, DunningWorkflow.record_payment_method, update)
        if isinstance(answer, str):
            return self._refused(visit, answer)
        await self._tell_other_cases(visit, update)
        return self._back(visit, done="card_saved")

    async def _tell_other_cases(self, visit: Visit, update: PaymentMethodUpdated) -> None:
        """The customer's other open cases charge the new card too, as with Stripe, where
        `checkout.session.completed` tells every open case."""
        customer_id, case_id = visit.case.customer_id, visit.case.case_id
        case_ids = await run_in_threadpool(
            lambda: self.store.open_case_ids(
                customer_id=customer_id, opened_by=tuple(OPENING_TYPES)
            )
        )
        await self.tell_card([i for i in case_ids if i != case_id], visit.language, update)

    @kindly
    async def plan(self, request: Request) -> Response:
        """Choose one of the plans the case offers, by its number of installments."""
        visit, form = await self._posted(request)
        if not visit.open:
            return self._back(visit)
        try:  # the case itself judges what it offers: its refusal is shown as it says it
            installments = int(field(form, "installments"))
        except ValueError:
            installments = 0
        if not 2 <= installments <= 12:
            return self._refused(visit, "that plan is not offered")
        choice = PlanChosen(installments=installments, actor=ACTOR)
        answer = await self._update(visit, DunningWorkflow.choose_plan, choice)
        if isinstance(answer, str):
            return self._refused(visit, answer)
        return self._back(visit, done="plan")

    @kindly
    async def promise(self, request: Request) -> Response:
        """Promise to pay on a date, up to the latest the case allows: the case takes the
        payment at 10:00 that day in the customer's time zone."""
        visit, form = await self._posted(request)
        if not visit.open:
            return self._back(visit)
        earliest, latest = self._promise_range(visit)
        try:
            day = date.fromisoformat(field(form, "pay_on").strip())
        except ValueError:
            day = None
        if day is None and latest is None:
            return self._refused(visit, "a promise to pay is not offered")
        if day is None or (latest is not None and not earliest <= day <= latest):
            error = self.pages_text(visit, "promise.invalid", date=self._date(visit, latest))
            return self._page(visit, None, status=422, promise_error=error, promise_value=day)
        pay_on = datetime.combine(day, PROMISE_HOUR, tzinfo=visit.zone)
        promise = PromiseToPay(pay_on=pay_on, actor=ACTOR)
        answer = await self._update(visit, DunningWorkflow.promise_payment, promise)
        if isinstance(answer, str):
            return self._refused(visit, answer)
        return self._back(visit, done="promise")

    # Reading the case ----------------------------------------------------------------------

    async def _posted(self, request: Request) -> tuple[Visit, dict[str, str]]:
        """The visit a form's token names, and the form's fields."""
        form = await self.form(request)
        visit = await self._visit(request, form.get("token", ""), form.get("lang"))
        return visit, form

    async def _visit(self, request: Request, token: str, requested: str | None) -> Visit:
        """The case the token names, with its customer and live status."""
        case, customer, language = await case_of_link(
            self.pages,
            self.store,
            self.secret,
            token,
            requested,
            request.headers.get("accept-language"),
        )
        view = None
        if CaseStatus(case.status) not in FINISHED:
            view = await self.case_status(case.case_id, language)
        return Visit(token, language, case, customer, view)

    async def _update(
        self, visit: Visit, update: Any, payload: BaseModel, update_id: str | None = None
    ) -> CaseView | str | None:
        """The case's answer to an update, its refusal, or None once it has finished."""
        return await self.ask_case(visit.case.case_id, visit.language, update, payload, update_id)

    def _payment_method(self, visit: Visit) -> str | None:
        """The card to charge: the customer's on file, else the one the case last tried."""
        if visit.customer is not None and visit.customer.payment_method:
            return visit.customer.payment_method
        tried = [a.payment_method for a in visit.view.attempts if a.payment_method]
        return tried[-1] if tried else None

    def _promise_range(self, visit: Visit) -> tuple[date, date | None]:
        """The first and last day the customer may promise (tomorrow, the case's limit)."""
        zone = visit.zone
        earliest = datetime.now(zone).date() + timedelta(days=1)
        latest = visit.view.promise_by if visit.view is not None else None
        if latest is None:
            return earliest, None
        last = latest.astimezone(zone).date()
        if datetime.combine(last, PROMISE_HOUR, tzinfo=zone) > latest:
            last -= timedelta(days=1)  # that morning is already past the case's limit
        return earliest, last if last >= earliest else None

    # Answers -------------------------------------------------------------------------------

    def _page(
        self,
        visit: Visit,
        notice: dict | None,
        status: int = 200,
        promise_error: str | None = None,
        promise_value: date | None = None,
    ) -> HTMLResponse:
        html = self.pages.render_page(
            "recover",
            visit.language,
            token=visit.token,
            path=PAGE,
            page=self._figures(visit, promise_value),
            notice=notice,
            promise_error=promise_error,
        )
        return HTMLResponse(html, status_code=status, headers=NO_STORE)

    def _figures(self, visit: Visit, promise_value: date | None = None) -> dict[str, Any]:
        """What the page shows, formatted in the customer's language and time zone."""
        view = visit.view
        status = visit.status
        state = "due"
        if status is CaseStatus.RECOVERED:
            state = "paid"
        elif status in FINISHED or view is None:
            state = "closed"
        elif status in ON_HOLD:
            state = "paused"
        opened = visit.case.opened_at
        opened = opened if opened.tzinfo else opened.replace(tzinfo=UTC)
        earliest, latest = self._promise_range(visit)
        figures: dict[str, Any] = {
            "state": state,
            "invoice_id": visit.case.invoice_id,
            "amount_due": self._money(visit, visit.amount_due),
            "amount_paid": self._money(visit, visit.amount_recovered or visit.case.amount_due),
            "failed_on": self._date(visit, opened.astimezone(visit.zone).date()),
            "failed_on_iso": opened.astimezone(visit.zone).date().isoformat(),
            "can_act": state in ("due", "paused") and visit.amount_due > 0,
            "hosted": self.hosted,
            "needs_card": status is CaseStatus.AWAITING_PAYMENT_METHOD,
            "card_url": page_url(f"{PAGE}/card", visit.token, visit.language),
            "feedback_url": page_url(f"{PAGE}/feedback", visit.token, visit.language),
            "plans": [],
            "plan": [],
            "promised_for": None,
            "promise_min": earliest.isoformat(),
            "promise_max": latest.isoformat() if latest else None,
            "promise_max_label": self._date(visit, latest) if latest else "",
            "promise_value": (promise_value or earliest).isoformat(),
        }
        if view is not None:
            figures["plans"] = [
                {
                    "count": len(quote.installments),
                    "installments": [self._installment(visit, part) for part in quote.installments],
                }
                for quote in view.plan_offers
            ]
            figures["plan"] = [self._installment(visit, part) for part in view.plan]
            if view.promised_for is not None:
                local = view.promised_for.astimezone(visit.zone).date()
                figures["promised_for"] = self._date(visit, local)
        return figures

    def _installment(self, visit: Visit, part: Any) -> dict[str, Any]:
        local = part.due_at.astimezone(visit.zone).date()
        return {
            "amount": self._money(visit, part.amount),
            "date": self._date(visit, local),
            "paid": part.paid,
        }

    def _card_page(
        self, visit: Visit, chosen: str = "", typed: str = "", error: bool = False
    ) -> HTMLResponse:
        html = self.pages.render_page(
            "card",
            visit.language,
            token=visit.token,
            path=f"{PAGE}/card",
            action=f"{PAGE}/card",
            intro=self.pages_text(
                visit,
                "card.intro",
                invoice=visit.case.invoice_id,
                amount=self._money(visit, visit.amount_due),
            ),
            back_label=self.pages_text(visit, "card.back"),
            chosen=chosen,
            typed=typed,
            error=error,
            back_url=page_url(PAGE, visit.token, visit.language),
        )
        return HTMLResponse(html, status_code=422 if error else 200, headers=NO_STORE)

    def _done_notice(self, visit: Visit, done: str) -> dict | None:
        if done == "paid":
            if visit.status is not CaseStatus.RECOVERED and visit.amount_recovered == 0:
                return None  # a stale link: nothing to thank for
            text = self.pages_text(
                visit, "done_paid", amount=self._money(visit, visit.amount_recovered)
            )
        elif done == "promise":
            promised = self._figures(visit)["promised_for"]
            if promised is None:
                return None
            text = self.pages_text(visit, "done_promise", date=promised)
        else:
            text = self.pages_text(visit, f"done_{done}")
        return self._notice("ok", text)

    def _refused(self, visit: Visit, reason: str) -> HTMLResponse:
        notice = self._notice("problem", self.pages_text(visit, "refused", reason=reason))
        return self._page(visit, notice, status=409)

    def _back(self, visit: Visit, done: str | None = None) -> RedirectResponse:
        """303 to the page (redirect-after-POST), in the visit's language."""
        extra = {"done": done} if done else {}
        return RedirectResponse(
            page_url(PAGE, visit.token, visit.language, **extra), status_code=303
        )

    def pages_text(self, visit: Visit, key: str, **values: object) -> str:
        """A string of ``recover.toml`` (``promise.invalid`` for a nested one), filled."""
        node: Any = self.pages.strings[visit.language]["recover"]
        for part in key.split("."):
            node = node[part]
        return str(node).format_map(values)

    @staticmethod
    def _notice(kind: str, text: str) -> dict:
        return {"kind": kind, "text": text}

    def _money(self, visit: Visit, amount: int) -> str:
        return self.money(visit.language, visit.customer, amount, visit.case.currency)

    def _date(self, visit: Visit, day: date) -> str:
        return self.long_date(visit.language, day)
