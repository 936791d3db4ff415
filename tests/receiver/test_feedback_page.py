"""The "tell us why" page (/recover/feedback): the customer's words go to the store alone, the
case hears the reason, and the answer leads to plans, the card, a cancellation, a dispute or a
thank-you; double submits count once and a refusal is a kind page, never a 500.

The case's side runs on a real worker over the test's time-skipping server; what is answered
before any case (the form, a bad link, a bad answer) runs with Temporal down."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activities.notify.links import make_token
from activities.store import CaseStore, CustomerProfile
from tests.support.harness import Dunning, status_when
from tests.support.receiver import (
    Receiver,
    case_handle,
    client_of,
    finish,
    history_text,
    kinds,
    receiver_settings,
    temporal_is_down,
)
from workflows.models import CaseRecord, CaseStatus, Outcome

SECRET = "feedback-test-secret-5c1d"
SUPPORT = {"support_email": "help@sakura.example", "support_phone": "+81 3 1234 5678"}
PRIVATE = "My hours were cut and my landlord raised the rent"
SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"


def token(case_id: str, use: str = "pay", valid_for: timedelta = timedelta(days=30)) -> str:
    return make_token(case_id, SECRET, datetime.now(UTC), valid_for, use=use)


def answer(case_id: str, reason: str, submission: str = "submission-1", **fields: str) -> dict:
    return {"token": token(case_id), "reason": reason, "submission": submission, **fields}


# The case's side: a real worker -------------------------------------------------------------


@pytest.fixture
def site(dunning: Dunning, tmp_path: Path) -> Receiver:
    """The receiver over the test's server and the worker's store, signing with SECRET."""
    settings = receiver_settings(
        tmp_path, dunning.task_queue, self_service_secret=SECRET, **SUPPORT
    )
    return Receiver(settings, client_of(dunning), dunning.activities.store)


async def running_case(dunning: Dunning) -> str:
    """A case started and stored (the page reads the store's row)."""
    case = await dunning.open_case(SOFT_DECLINE)
    await dunning.start(case)
    await status_when(case_handle(dunning, case.case_id), lambda v: True, "the case to start")
    for _ in range(300):
        if dunning.activities.store.get_case(case.case_id) is not None:
            return case.case_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"case {case.case_id} was never stored")


async def post(site: Receiver, form: dict) -> httpx.Response:
    # In a thread, so the worker keeps running on this loop while the app asks the case.
    return await asyncio.to_thread(
        site.http.post, "/recover/feedback", data=form, follow_redirects=False
    )


async def test_other_keeps_the_words_in_the_store_and_tells_the_case_the_reason_once(
    dunning: Dunning, site: Receiver
):
    async with dunning.worker():
        case_id = await running_case(dunning)
        handle = case_handle(dunning, case_id)

        first = await post(site, answer(case_id, "other", text=PRIVATE))
        again = await post(site, answer(case_id, "other", text=PRIVATE))  # a double click

        for page in (first, again):
            assert page.status_code == 200, page.text
            assert "Thank you for telling us" in page.text
        rows = site.store.feedback_for(case_id)
        assert [(r.reason, r.text, r.submission) for r in rows] == [
            ("other", PRIVATE, "submission-1")
        ]
        view = await status_when(handle, lambda v: "feedback" in kinds(v), "the feedback")
        feedback = [e for e in view.timeline if e.kind == "feedback"]
        assert [(e.actor, e.detail) for e in feedback] == [("customer", "other")]
        assert PRIVATE not in await history_text(handle)  # the words never reach Temporal
        assert view.status is CaseStatus.ACTIVE


async def test_cannot_afford_leads_to_the_plans_and_a_changed_card_to_the_card_form(
    dunning: Dunning, site: Receiver
):
    async with dunning.worker():
        case_id = await running_case(dunning)

        asked = answer(case_id, "cannot_afford", "submission-1", lang="ja")
        plans = await post(site, asked)
        card = await post(site, {**asked, "reason": "card_changed", "submission": "submission-2"})

        assert plans.status_code == card.status_code == 303
        link = f"/recover?token={asked['token']}&lang=ja"  # back with the link they came by
        assert plans.headers["location"] == f"{link}#plan"
        assert card.headers["location"] == f"{link}#card"
        view = await status_when(
            case_handle(dunning, case_id),
            lambda v: kinds(v).count("feedback") == 2,
            "both answers",
        )
        details = [e.detail for e in view.timeline if e.kind == "feedback"]
        assert details == ["cannot_afford", "card_changed"]
        assert [r.reason for r in site.store.feedback_for(case_id)] == details


async def test_want_to_cancel_asks_first_then_cancels_the_case(dunning: Dunning, site: Receiver):
    async with dunning.worker():
        case_id = await running_case(dunning)
        handle = case_handle(dunning, case_id)

        confirm = await post(site, answer(case_id, "want_to_cancel"))

        assert confirm.status_code == 200
        assert 'id="confirm-cancel"' in confirm.text and 'name="confirm"' in confirm.text
        view = await status_when(handle, lambda v: "feedback" in kinds(v), "the feedback")
        assert view.status is CaseStatus.ACTIVE  # nothing cancelled before the customer confirms

        form = {"token": token(case_id), "submission": "submission-1", "confirm": "cancel"}
        cancelled = await post(site, form)

        assert cancelled.status_code == 200, cancelled.text
        assert '<h1 id="heading">Cancelled</h1>' in cancelled.text
        result = await finish(dunning, handle)
        assert result.outcome is Outcome.CANCELLED
        cancel = next(e for e in result.timeline if e.kind == "cancel")
        assert (cancel.actor, cancel.detail) == ("customer", "the customer asked to cancel")

        again = await post(site, form)  # the case has ended: a kind page, never a 500

        assert again.status_code == 200
        assert "Cancelled" in again.text or "nothing more to do" in again.text


async def test_disputing_opens_a_dispute_and_a_second_one_is_refused_kindly(
    dunning: Dunning, site: Receiver
):
    async with dunning.worker():
        case_id = await running_case(dunning)
        handle = case_handle(dunning, case_id)

        page = await post(site, answer(case_id, "disputing", lang="zh-Hans"))

        assert page.status_code == 200, page.text
        assert "客服团队会与您联系" in page.text
        assert "help@sakura.example" in page.text and "+81 3 1234 5678" in page.text
        view = await status_when(
            handle, lambda v: v.status is CaseStatus.DISPUTED, "the dispute to open"
        )
        assert view.dispute_reason == "the customer disputes the charge"
        dispute = next(e for e in view.timeline if e.kind == "dispute_opened")
        assert dispute.actor == "customer"

        again = await post(site, answer(case_id, "disputing", "submission-2"))

        assert again.status_code == 409
        assert "We couldn&#39;t do that just now" in again.text
        assert re.search(r"What we were told: case \S+ is already disputed", again.text)
        assert "help@sakura.example" in again.text
        assert len(site.store.feedback_for(case_id)) == 2  # the answer is kept all the same


# Answered before any case: Temporal down ----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    store = CaseStore(f"sqlite:///{tmp_path / 'offline.db'}")
    store.create_schema()
    store.upsert_customer(CustomerProfile(customer_id="cus_1", email="a@b.example", locale="ja"))
    for case_id, status in [("in_1", CaseStatus.ACTIVE), ("in_paid", CaseStatus.RECOVERED)]:
        store.record_case(
            CaseRecord(
                case_id=case_id,
                invoice_id=case_id,
                customer_id="cus_1",
                status=status,
                amount_due=4980,
                amount_recovered=0,
                currency="JPY",
                policy="standard",
                policy_version=1,
                opened_at=datetime(2026, 11, 1, tzinfo=UTC),
            )
        )
    return store


@pytest.fixture
def offline(tmp_path: Path, store: CaseStore) -> Receiver:
    settings = receiver_settings(tmp_path, self_service_secret=SECRET, **SUPPORT)
    return Receiver(settings, temporal_is_down, store)


def test_the_form_asks_in_the_customers_language_with_every_reason_labelled(offline: Receiver):
    page = offline.http.get(f"/recover/feedback?token={token('in_1')}")

    assert page.status_code == 200
    assert '<html lang="ja">' in page.text
    assert "今お支払いが難しい理由をお聞かせください" in page.text
    for reason in ["cannot_afford", "card_changed", "disputing", "want_to_cancel", "other"]:
        assert f'<label class="choice" for="reason-{reason}">' in page.text
        assert f'id="reason-{reason}" value="{reason}"' in page.text
    assert '<label for="text">' in page.text and 'maxlength="1000"' in page.text
    assert re.search(r'name="submission" value="[A-Za-z0-9_-]{22}"', page.text)


def test_an_answer_without_a_reason_or_with_too_many_words_is_asked_again(offline: Receiver):
    none = offline.http.post("/recover/feedback", data=answer("in_1", "", lang="en"))
    long = offline.http.post(
        "/recover/feedback", data=answer("in_1", "other", text="x" * 1001, lang="en")
    )

    assert none.status_code == long.status_code == 400
    assert "Please choose one of the answers." in none.text
    assert "Please shorten your note to 1000 characters or fewer." in long.text
    assert 'id="reason-other" value="other" required checked' in long.text  # kept for them
    assert offline.store.feedback_for("in_1") == []


@pytest.mark.parametrize(
    ("url", "status", "title"),
    [
        ("/recover/feedback?token=garbage", 400, "This link doesn&#39;t work"),
        (f"/recover/feedback?token={token('in_1', use='unsubscribe')}", 400, "doesn&#39;t work"),
        (
            # 410 as the recovery page answers it (unasked, in the customer's own language)
            f"/recover/feedback?token={token('in_1', valid_for=timedelta(seconds=-1))}&lang=en",
            410,
            "This link has expired",
        ),
        (f"/recover/feedback?token={token('in_unknown')}", 404, "We can&#39;t find this payment"),
    ],
    # Named, not numbered by their time-stamped tokens: pytest-xdist's workers must collect
    # the same test ids.
    ids=["garbage", "another-use", "expired", "unknown-case"],
)
def test_a_link_that_cannot_be_used_gets_a_friendly_page(offline: Receiver, url, status, title):
    for page in (offline.http.get(url), offline.http.post(url, data={"reason": "other"})):
        assert page.status_code == status
        assert title in page.text and "help@sakura.example" in page.text


def test_a_finished_case_has_nothing_to_ask(offline: Receiver):
    page = offline.http.post("/recover/feedback", data=answer("in_paid", "disputing", lang="en"))

    assert page.status_code == 200
    assert "There&#39;s nothing more to do here" in page.text
    assert offline.store.feedback_for("in_paid") == []


def test_with_temporal_down_the_answer_is_kept_once_and_the_page_says_try_again(
    offline: Receiver,
):
    for _ in range(2):
        page = offline.http.post("/recover/feedback", data=answer("in_1", "other", lang="en"))

        assert page.status_code == 503
        assert "We can&#39;t show this page right now" in page.text
    assert [r.reason for r in offline.store.feedback_for("in_1")] == ["other"]
