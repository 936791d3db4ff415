"""The "tell us why" page: GET/POST /recover/feedback?token=... (a "pay" token).

The customer picks why they have not paid and may add a few words. Their words go to the
store only; the case hears the reason alone (`give_feedback`), then the page takes them where
the reason leads:

    cannot_afford   the recovery page's payment plans (/recover?token=...#plan)
    card_changed    the recovery page's card update (/recover?token=...#card)
    want_to_cancel  a confirm step, then `cancel_case` and a page saying it is cancelled
    disputing       `open_dispute` and a page saying support will contact them
    other           a thank-you page

Every step is idempotent: the form carries a random submission key, which keys the stored row
and every update's id, so a double click or a reload stores once and asks the case once. A
case that refuses (its validator's reason) or has finished gets a kind page, never a 500.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from activities.store import FEEDBACK_TEXT_LIMIT, Case, CaseStore
from webhooks.cases import CaseClosed, CaseDesk, CaseRefused, TemporalUnavailable
from webhooks.pages import PageProblem, Pages, case_of_link, page_url
from webhooks.preferences import UnreadableForm, posted_form
from workflows.dunning import DunningWorkflow
from workflows.models import CancelRequest, CaseStatus, DisputeOpened, FeedbackGiven, FeedbackReason

log = logging.getLogger("dunning.webhooks")

PATH = "/recover/feedback"
RECOVER = "/recover"
FINISHED = {CaseStatus.RECOVERED, CaseStatus.CANCELLED, CaseStatus.COLLECTIONS}
CANCEL_REASON = "the customer asked to cancel"
DISPUTE_REASON = "the customer disputes the charge"
# A submission key as the form makes it (token_urlsafe); anything else gets a fresh one.
_SUBMISSION = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True)
class Visit:
    """Who is on the page: their case, its row, and the language to answer in."""

    token: str
    case: Case
    language: str


class FeedbackPage:
    """Shows the "tell us why" form and carries out what the answer asks. Safe to share
    between requests."""

    def __init__(self, store: CaseStore, desk: CaseDesk, pages: Pages, secret: str) -> None:
        self.store = store
        self.desk = desk
        self.pages = pages
        self.secret = secret

    async def handle(self, request: Request) -> Response:
        """GET shows the form; POST stores the answer and follows it (or, with
        ``confirm=cancel``, cancels the case the customer asked to cancel)."""
        try:
            form = await posted_form(request)
        except UnreadableForm as err:
            log.info("feedback page: %s", err)
            header = self.pages.language_from_header(request.headers.get("accept-language"))
            return self._error(header, "invalid", 400)
        token = form.get("token") or request.query_params.get("token", "")
        requested = form.get("lang") or request.query_params.get("lang") or None
        try:
            visit = await self._visit(request, token, requested)
        except _Refusal as refusal:
            return refusal.response
        try:
            if request.method == "GET":
                return self._form(visit)
            submission = _submission(form.get("submission"))
            if form.get("confirm") == "cancel":
                return await self._cancel(visit, submission)
            return await self._answer(visit, form, submission)
        except CaseClosed:
            return self._done(visit, "closed")
        except (TemporalUnavailable, OperationalError) as err:
            log.warning("feedback for case %s not carried out: %s", visit.case.case_id, err)
            return self._error(visit.language, "unavailable", 503)

    async def _visit(self, request: Request, token: str, requested: str | None) -> Visit:
        """The case a valid token names, in the customer's language; `_Refusal` otherwise."""
        try:
            case, _, language = await case_of_link(
                self.pages,
                self.store,
                self.secret,
                token,
                requested,
                request.headers.get("accept-language"),
            )
        except PageProblem as problem:
            raise _Refusal(self._error(problem.language, problem.problem, problem.status)) from None
        return Visit(token=token, case=case, language=language)

    # Steps ---------------------------------------------------------------------------------

    def _form(self, visit: Visit, **problem: str) -> HTMLResponse:
        if visit.case.status in FINISHED:
            return self._done(visit, "closed")
        html = self.pages.render_page(
            "feedback",
            visit.language,
            token=visit.token,
            path=PATH,
            reasons=list(FeedbackReason),
            submission=secrets.token_urlsafe(16),
            limit=FEEDBACK_TEXT_LIMIT,
            back=page_url(RECOVER, visit.token, visit.language),
            chosen=problem.get("chosen"),
            text=problem.get("text", ""),
            error=problem.get("error"),
        )
        return HTMLResponse(html, status_code=400 if problem.get("error") else 200)

    async def _answer(self, visit: Visit, form: dict[str, str], submission: str) -> Response:
        """Store the answer, tell the case the reason, and go where the reason leads."""
        text = form.get("text", "")
        try:
            reason = FeedbackReason(form.get("reason", ""))
        except ValueError:
            return self._form(visit, error="choose", text=text)
        if len(text.strip()) > FEEDBACK_TEXT_LIMIT:
            return self._form(visit, error="too_long", chosen=reason.value, text=text)
        if visit.case.status in FINISHED:
            return self._done(visit, "closed")
        case = visit.case
        await run_in_threadpool(
            self.store.record_feedback, case.case_id, case.customer_id, reason, text, submission
        )
        refusal = await self._update(
            case.case_id,
            DunningWorkflow.give_feedback,
            FeedbackGiven(reason=reason),
            f"feedback-{submission}",
        )
        if refusal is not None:
            return self._done(visit, "refused", refusal=refusal)
        log.info("case %s: the customer gave feedback (%s)", case.case_id, reason.value)
        match reason:
            case FeedbackReason.CANNOT_AFFORD:
                return self._recovery_page(visit, "plan")
            case FeedbackReason.CARD_CHANGED:
                return self._recovery_page(visit, "card")
            case FeedbackReason.WANT_TO_CANCEL:
                return self._confirm_cancel(visit, submission)
            case FeedbackReason.DISPUTING:
                dispute = DisputeOpened(reason=DISPUTE_REASON, actor="customer")
                refusal = await self._update(
                    case.case_id, DunningWorkflow.open_dispute, dispute, f"dispute-{submission}"
                )
                if refusal is not None:
                    return self._done(visit, "refused", refusal=refusal)
                return self._done(visit, "dispute")
            case _:
                return self._done(visit, "thanks")

    def _confirm_cancel(self, visit: Visit, submission: str) -> HTMLResponse:
        html = self.pages.render_page(
            "feedback_cancel",
            visit.language,
            token=visit.token,
            path=PATH,
            submission=submission,
            invoice=visit.case.invoice_id,
            back=page_url(RECOVER, visit.token, visit.language),
        )
        return HTMLResponse(html)

    async def _cancel(self, visit: Visit, submission: str) -> Response:
        if visit.case.status == CaseStatus.CANCELLED:
            return self._done(visit, "cancelled")  # a second click, after the case ended
        request = CancelRequest(reason=CANCEL_REASON, actor="customer")
        refusal = await self._update(
            visit.case.case_id, DunningWorkflow.cancel_case, request, f"cancel-{submission}"
        )
        if refusal is not None:
            return self._done(visit, "refused", refusal=refusal)
        log.info("case %s: cancelled at the customer's request", visit.case.case_id)
        return self._done(visit, "cancelled")

    # Answers -------------------------------------------------------------------------------

    def _recovery_page(self, visit: Visit, section: str) -> RedirectResponse:
        url = f"{page_url(RECOVER, visit.token, visit.language)}#{section}"
        return RedirectResponse(url, status_code=303)

    def _done(self, visit: Visit, outcome: str, refusal: str = "") -> HTMLResponse:
        html = self.pages.render_page(
            "feedback_done",
            visit.language,
            token=visit.token,
            path=PATH,
            outcome=outcome,
            refusal=refusal,
            invoice=visit.case.invoice_id,
            back=page_url(RECOVER, visit.token, visit.language),
        )
        return HTMLResponse(html, status_code=409 if outcome == "refused" else 200)

    def _error(self, language: str, problem: str, status: int) -> HTMLResponse:
        return HTMLResponse(self.pages.render_error(language, problem, path=PATH), status)

    async def _update(self, case_id: str, update, payload: object, update_id: str) -> str | None:
        """Ask the case; None when it agreed, else the reason it refused. The update id makes
        a repeated request the same request. `CaseClosed` when the case has finished."""
        try:
            await self.desk.ask(case_id, update, payload, update_id)
        except CaseRefused as refusal:
            return str(refusal)
        return None


class _Refusal(Exception):
    """A visit that ends before the page: the response says why."""

    def __init__(self, response: HTMLResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def _submission(given: object) -> str:
    """The form's submission key, or a fresh one for a form that lacks a usable key."""
    if isinstance(given, str) and _SUBMISSION.fullmatch(given):
        return given
    return secrets.token_urlsafe(16)
