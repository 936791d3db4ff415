"""The customer's account page: every open invoice of one customer, one payment for them all.

    GET  /account?token=...&lang=...   the open invoices, their total; "pay all", "update card"
    POST /account/pay                  pay every open invoice, each case in turn
    GET  /account/card?token=...       the card form (simulated gateway)
    POST /account/card                 save a card and tell every open case (simulated), or go
                                       to Stripe Checkout (setup mode), whose completion tells
                                       every open case of the customer

The link is in every message that names several open invoices, and in card-expiry notices
sent before anything failed: with nothing owed the page says so and still takes a new card.
Its signed "account" token names the customer, not a case, and is the only credential: every
form carries it (no cookies, nothing to forge). The open invoices are the customer's cases that
have not finished, each read live from its workflow. Paying all asks each case for its
`pay_now` update, with the case's own attempt key, so a double click charges nothing twice; the
page then says which invoices were paid and which were declined. Links that cannot be used get
the same friendly pages as the recovery page (410 expired, 400 altered or for another use).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from activities.store import CustomerProfile
from webhooks.intake import OPENING_TYPES
from webhooks.pages import PageProblem, customer_of_link, page_url
from webhooks.self_service import (
    ACTOR,
    FINISHED,
    NO_STORE,
    ON_HOLD,
    SelfServicePage,
    card_of,
    kindly,
)
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus, CaseView, PayNow

log = logging.getLogger("dunning.webhooks")

PAGE = "/account"
DONE_NOTICES = {"paid", "card_saved", "card_pending"}


@dataclass
class Account:
    """One request's customer: who the token names, in which language, and their open cases
    as each workflow tells it now (oldest invoice first)."""

    token: str
    language: str
    customer_id: str
    customer: CustomerProfile | None
    cases: list[CaseView] = field(default_factory=list)
    handed_on: dict[str, tuple[int, str]] = field(default_factory=dict)
    """With nothing open: the invoices that went to collections (amount and currency by
    case), still owed there."""

    @property
    def payable(self) -> list[CaseView]:
        """The open cases that still have something to pay."""
        return [view for view in self.cases if view.amount_due > 0]


class AccountPage(SelfServicePage):
    """The account page's handlers; one per app."""

    path = PAGE

    # Pages ---------------------------------------------------------------------------------

    @kindly
    async def page(self, request: Request) -> Response:
        """The open invoices and what the customer can do; `done` names the notice of the
        action just carried out."""
        query = request.query_params
        account = await self._account(request, query.get("token", ""), query.get("lang"))
        done = query.get("done")
        notice = None
        if done in DONE_NOTICES:
            notice = {"kind": "ok", "text": self._text(account, f"done_{done}")}
        return self._page(account, notice)

    @kindly
    async def card_form(self, request: Request) -> Response:
        """The card form (simulated gateway); with Stripe, the page's button goes to Checkout."""
        query = request.query_params
        account = await self._account(request, query.get("token", ""), query.get("lang"))
        if not self.simulated:
            return self._back(account)
        return self._card_page(account)

    # Actions -------------------------------------------------------------------------------

    @kindly
    async def pay_all(self, request: Request) -> Response:
        """Ask every open case to charge what it is owed now, one after another; all paid:
        back to the page with thanks, else the page lists which were paid and which not."""
        account, _ = await self._posted(request)
        payable = account.payable
        if not payable:
            return self._back(account)
        results = []
        for view in payable:
            # The case charges with its own attempt key; clicks on the same page are one request.
            update_id = f"pay-now:{view.case_id}:{len(view.attempts)}"
            answer = await self.ask_case(
                view.case_id,
                account.language,
                DunningWorkflow.pay_now,
                PayNow(actor=ACTOR),
                update_id,
            )
            results.append(self._result(account, view, answer))
        if all(result["outcome"] == "paid" for result in results):
            return self._back(account, done="paid")
        account = await self._read(account.token, account.language, account.customer_id)
        notice = {"kind": "problem", "text": self._text(account, "not_all_paid")}
        return self._page(account, notice, status=402, results=results)

    @kindly
    async def card(self, request: Request) -> Response:
        """A new card: saved and told to every open case (simulated), or collected by Stripe
        Checkout in setup mode (its `checkout.session.completed` tells every open case)."""
        account, form = await self._posted(request)
        if not self.simulated:
            back = self.absolute(page_url(PAGE, account.token, account.language))
            done = self.absolute(
                page_url(PAGE, account.token, account.language, done="card_pending")
            )
            currencies = {view.currency for view in account.cases}
            url = await run_in_threadpool(
                self.stripe.setup_session_url,
                account.customer_id,
                currencies.pop() if len(currencies) == 1 else None,
                done,
                back,
                account.cases[0].case_id if len(account.cases) == 1 else None,
            )
            return RedirectResponse(url, status_code=303)
        typed, chosen, method = card_of(form)
        if method is None:
            return self._card_page(account, chosen=chosen, typed=typed, error=True)
        update = await self.save_card(account.customer_id, account.customer, method)
        await self.tell_card([view.case_id for view in account.cases], account.language, update)
        return self._back(account, done="card_saved")

    # Reading the account -------------------------------------------------------------------

    async def _posted(self, request: Request) -> tuple[Account, dict[str, str]]:
        """The account a form's token names, and the form's fields."""
        form = await self.form(request)
        account = await self._account(request, form.get("token", ""), form.get("lang"))
        return account, form

    async def _account(self, request: Request, token: str, requested: str | None) -> Account:
        """The customer the token names, with their open cases read live."""
        customer_id, customer, language = await customer_of_link(
            self.pages,
            self.store,
            self.secret,
            token,
            requested,
            request.headers.get("accept-language"),
        )
        account = await self._read(token, language, customer_id, customer)
        if customer is None and not account.cases:
            raise PageProblem(404, "missing", language)
        return account

    async def _read(
        self,
        token: str,
        language: str,
        customer_id: str,
        customer: CustomerProfile | None = None,
    ) -> Account:
        """The account with each open case's status as its workflow answers now."""
        if customer is None:
            customer = await run_in_threadpool(self.store.get_customer, customer_id)
        case_ids = await run_in_threadpool(
            lambda: self.store.open_case_ids(
                customer_id=customer_id, opened_by=tuple(OPENING_TYPES)
            )
        )
        cases, handed_on = [], {}
        for case_id in case_ids:
            view = await self.case_status(case_id, language)
            if view is not None and view.status not in FINISHED:
                cases.append(view)
            elif view is not None and view.status is CaseStatus.COLLECTIONS:
                handed_on[view.case_id] = (view.amount_due, view.currency)
        if not cases:  # the store knows the cases handed on earlier
            stored = await run_in_threadpool(
                self.store.customer_cases, customer_id, CaseStatus.COLLECTIONS.value
            )
            handed_on |= {case.case_id: (case.amount_due, case.currency) for case in stored}
        return Account(token, language, customer_id, customer, cases, handed_on)

    # Answers -------------------------------------------------------------------------------

    def _page(
        self,
        account: Account,
        notice: dict | None,
        status: int = 200,
        results: list[dict] | None = None,
    ) -> HTMLResponse:
        html = self.pages.render_page(
            "account",
            account.language,
            token=account.token,
            path=PAGE,
            page=self._figures(account),
            notice=notice,
            results=results or [],
        )
        return HTMLResponse(html, status_code=status, headers=NO_STORE)

    def _figures(self, account: Account) -> dict:
        """What the page shows, in the customer's language."""
        states = self.pages.strings[account.language]["recover"]["state"]
        totals: dict[str, int] = defaultdict(int)
        for view in account.cases:
            totals[view.currency] += view.amount_due
        handed: dict[str, int] = defaultdict(int)
        for amount, currency in account.handed_on.values():
            handed[currency] += amount
        state = "due" if account.cases else "handed" if account.handed_on else "clear"
        contact = self.settings.collections_contact or self.settings.support_email
        return {
            "state": state,
            "count": len(account.cases),
            "handed_count": len(account.handed_on),
            "handed_total": " + ".join(
                self._money(account, amount, currency) for currency, amount in handed.items()
            ),
            "contact": contact,
            "invoices": [
                {
                    "invoice_id": view.invoice_id,
                    "amount": self._money(account, view.amount_due, view.currency),
                    "state": states[view.status.value],
                    "on_hold": view.status in ON_HOLD,
                }
                for view in account.cases
            ],
            "total": " + ".join(
                self._money(account, amount, currency) for currency, amount in totals.items()
            ),
            "can_pay": bool(account.payable),
            "hosted": self.hosted,
            "card_url": page_url(f"{PAGE}/card", account.token, account.language),
        }

    def _result(self, account: Account, view: CaseView, answer: CaseView | str | None) -> dict:
        """What became of one invoice when the customer paid them all."""
        amount = self._money(account, view.amount_due, view.currency)
        values: dict = {"invoice": view.invoice_id, "amount": amount}
        if answer is None:
            outcome = "closed"  # it finished meanwhile: settled, or no longer collected
        elif isinstance(answer, str):
            outcome = "refused"
        elif answer.status is CaseStatus.RECOVERED:
            outcome = "paid"
        else:
            outcome = "declined"
            attempt = answer.attempts[-1] if answer.attempts else None
            code = attempt.decline_code if attempt and not attempt.approved else None
            values["reason"] = (code or "declined").replace("_", " ")
        return {
            "invoice_id": view.invoice_id,
            "outcome": outcome,
            "text": self._text(account, f"result_{outcome}", **values),
        }

    def _card_page(
        self, account: Account, chosen: str = "", typed: str = "", error: bool = False
    ) -> HTMLResponse:
        html = self.pages.render_page(
            "card",
            account.language,
            token=account.token,
            path=f"{PAGE}/card",
            action=f"{PAGE}/card",
            intro=self._text(account, "card_intro"),
            back_label=self._text(account, "card_back"),
            chosen=chosen,
            typed=typed,
            error=error,
            back_url=page_url(PAGE, account.token, account.language),
        )
        return HTMLResponse(html, status_code=422 if error else 200, headers=NO_STORE)

    def _back(self, account: Account, done: str | None = None) -> RedirectResponse:
        """303 to the page (redirect-after-POST), in the account's language."""
        extra = {"done": done} if done else {}
        url = page_url(PAGE, account.token, account.language, **extra)
        return RedirectResponse(url, status_code=303)

    def _text(self, account: Account, key: str, **values: object) -> str:
        """A string of ``account.toml``, filled."""
        return str(self.pages.strings[account.language]["account"][key]).format_map(values)

    def _money(self, account: Account, amount: int, currency: str) -> str:
        return self.money(account.language, account.customer, amount, currency)
