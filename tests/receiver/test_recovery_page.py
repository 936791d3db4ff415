"""The recovery page: the reminder's link shows what is owed and settles the case.

Nothing is mocked: the app runs under Starlette's TestClient over the test's time-skipping
server with a real worker and the real activities; with GATEWAY=stripe it talks to the fake
Stripe API through the official SDK, and Stripe's events are delivered signed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.support.fake_stripe import Decline, FakeStripe
from tests.support.harness import Dunning, status_when
from tests.support.pages import (
    by_id,
    get,
    post,
    recorded,
    redirected_query,
    running_case,
    token_for,
)
from tests.support.receiver import (
    CUSTOMER,
    SOFT_DECLINE,
    Receiver,
    accepted,
    case_handle,
    finish,
    kinds,
    new_invoice_id,
    open_case,
    page_settings,
    stripe_event,
)
from workflows.models import CaseStatus
from workflows.policy import Outcome

# What the page shows --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "lang", "amount", "heading"),
    [
        ("en", "en", "¥4,980", "Your payment didn't go through"),
        ("ja-JP", "ja", "￥4,980", "お支払いが完了していません"),
        ("zh-CN", "zh-Hans", "JP¥4,980", "您的付款未能成功"),
    ],
)
async def test_the_reminders_link_shows_what_is_owed_in_the_customers_language(
    pages: Receiver, dunning: Dunning, locale: str, lang: str, amount: str, heading: str
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE, locale=locale)
        # The link every reminder carries (PUBLIC_BASE_URL defaults to the receiver's port).
        link = dunning.activities.self_service.link_for(case.case_id, datetime.now(UTC))
        assert link.startswith("http://localhost:8000/recover?token=")
        token = parse_qs(urlsplit(link).query)["token"][0]
        page = await get(pages, "/recover", token=token)
        # `lang` overrides the customer's locale.
        english = await get(pages, "/recover", token=token, lang="en")

    assert page.status_code == 200, page.text
    assert f'<html lang="{lang}">' in page.text
    assert by_id(page, "heading") == heading
    assert by_id(page, "amount-due") == amount
    assert by_id(page, "invoice") == case.invoice_id
    assert case.invoice_id in by_id(page, "intro")
    assert 'name="viewport"' in page.text and "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    # The buttons, the plans the standard policy offers, the promise and "tell us why".
    assert amount in by_id(page, "pay-now")
    assert 'id="update-card"' in page.text and 'id="plan-2"' in page.text
    assert 'id="pay-on"' in page.text and '<label for="pay-on">' in page.text
    assert f"/recover/feedback?token={token}" in page.text
    # The footer names the support contact; the language switch keeps the token.
    assert "support@example.com" in page.text and "+1 555 0100" in page.text
    assert f'href="/recover?token={token}&amp;lang=ja"' in page.text
    assert by_id(english, "heading") == "Your payment didn't go through"
    assert '<html lang="en">' in english.text


# Paying now ------------------------------------------------------------------------------


async def test_pay_now_recovers_the_case_once_even_when_posted_twice(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, "pm_card_visa")
        token = token_for(dunning, case.case_id)
        first = await post(pages, "/recover/pay", token=token, lang="en")
        second = await post(pages, "/recover/pay", token=token, lang="en")
        result = await finish(dunning, case_handle(dunning, case.invoice_id))
        after = await get(pages, "/recover", token=token)
        thanked = await get(pages, "/recover", token=token, done="paid")

    assert redirected_query(first) == {"token": token, "lang": "en", "done": "paid"}
    assert second.status_code == 303  # the case is paid: back to its page, nothing charged
    assert result.outcome is Outcome.RECOVERED and result.amount_recovered == 4980
    assert result.reason == "paid by the customer on the recovery page"
    # The case charged once, through its own step and attempt key, asked by the customer.
    asked = [e for e in result.timeline if e.kind == "pay_now"]
    assert [e.actor for e in asked] == ["customer"] and result.charge_attempts == 1
    charge = dunning.activities.store.simulated_charge(f"dunning:{case.case_id}:attempt:1")
    assert charge is not None and charge.approved
    # The link still works, and says the invoice is paid: no button to pay again.
    assert after.status_code == 200
    assert by_id(after, "heading") == "Paid — thank you!"
    assert by_id(after, "amount-paid") == "¥4,980"
    assert 'id="pay-now"' not in after.text and 'id="update-card"' not in after.text
    assert by_id(thanked, "notice") == "Thank you — your payment of ¥4,980 went through."


async def test_a_declined_card_is_explained_and_a_new_card_recovers_the_case(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE)
        token = token_for(dunning, case.case_id)
        declined = await post(pages, "/recover/pay", token=token)
        form = await get(pages, "/recover/card", token=token)
        wrong = await post(pages, "/recover/card", token=token, card="", payment_method="4242")
        tampered = await post(pages, "/recover/card", token=token, card="<script>")
        saved = await post(pages, "/recover/card", token=token, card="pm_card_visa")
        handle = case_handle(dunning, case.invoice_id)
        result = await finish(dunning, handle)

    assert declined.status_code == 402
    assert by_id(declined, "notice") == (
        "Your card was declined (insufficient funds). Please try another card."
    )
    assert form.status_code == 200
    assert '<label for="card">' in form.text and '<label for="payment-method">' in form.text
    for refused in (wrong, tampered):
        assert refused.status_code == 422
        assert 'aria-invalid="true"' in refused.text
        assert "isn't a card we can use" in by_id(refused, "payment-method-error")
        assert "<script>" not in refused.text
    assert redirected_query(saved)["done"] == "card_saved"
    assert dunning.activities.store.get_customer(case.customer_id).payment_method == "pm_card_visa"
    # The case charged the new card soon after and recovered.
    assert result.outcome is Outcome.RECOVERED
    updates = [e for e in result.timeline if e.kind == "payment_method_updated"]
    assert [(e.actor, e.detail) for e in updates] == [("customer", "pm_card_visa")]
    assert kinds(result).count("payment_received") == 0  # recovered by the case's own charge


async def test_a_new_card_on_one_invoices_page_reaches_the_customers_other_cases(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        first = await running_case(dunning, SOFT_DECLINE)
        second = await running_case(dunning, SOFT_DECLINE)  # the same customer's
        token = token_for(dunning, first.case_id)
        saved = await post(pages, "/recover/card", token=token, card="pm_card_visa")
        results = [
            await finish(dunning, case_handle(dunning, case.invoice_id)) for case in (first, second)
        ]

    assert redirected_query(saved)["done"] == "card_saved"
    for result in results:
        assert result.outcome is Outcome.RECOVERED
        updates = [e for e in result.timeline if e.kind == "payment_method_updated"]
        assert [(e.actor, e.detail) for e in updates] == [("customer", "pm_card_visa")]


async def test_after_a_hard_decline_a_new_card_leads(pages: Receiver, dunning: Dunning) -> None:
    async with dunning.worker():
        case = await running_case(
            dunning, "pm_card_chargeDeclinedLostCard", decline_code="lost_card"
        )
        handle = case_handle(dunning, case.invoice_id)
        await status_when(
            handle, lambda v: v.status is CaseStatus.AWAITING_PAYMENT_METHOD, "awaiting a card"
        )
        page = await get(pages, "/recover", token=token_for(dunning, case.case_id))

    actions = page.text[page.text.index('<div class="actions" id="card">') :]
    assert actions.index('id="update-card"') < actions.index('id="pay-now"')
    assert 'class="button" id="update-card"' in actions and 'class="secondary"' in actions


# Plans and promises ----------------------------------------------------------------------


async def test_choosing_a_plan_and_a_refused_promise_are_told_to_the_case(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE)
        token = token_for(dunning, case.case_id)
        not_offered = await post(pages, "/recover/plan", token=token, installments="7")
        chosen = await post(pages, "/recover/plan", token=token, installments="2")
        view = await status_when(
            case_handle(dunning, case.invoice_id), lambda v: v.plan, "the plan"
        )
        page = await get(pages, "/recover", token=token, done="plan")
        # With a plan running, the case refuses a promise: the page says why, kindly.
        in_two_days = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        promise = await post(pages, "/recover/promise", token=token, pay_on=in_two_days)
        promise_ja = await post(
            pages, "/recover/promise", token=token, pay_on=in_two_days, lang="ja"
        )
        garbage = await post(pages, "/recover/plan", token=token, installments="many")

    # The case's own validator refused the plan it does not offer, before anything was written.
    assert not_offered.status_code == 409
    assert by_id(not_offered, "notice") == (
        "We couldn't do that just now: no plan of 7 installments is offered for this invoice"
    )
    assert redirected_query(chosen)["done"] == "plan"
    assert [part.amount for part in view.plan] == [2490, 2490]
    assert ("plan_chosen", "customer") in [(e.kind, e.actor) for e in view.timeline]
    assert by_id(page, "notice") == "Your payment plan is set up."
    assert "¥2,490" in by_id(page, "current-plan")
    assert 'id="pay-on"' not in page.text and 'id="plan-2"' not in page.text
    assert promise.status_code == 409
    assert by_id(promise, "notice") == (
        "We couldn't do that just now: a payment plan is already running"
    )
    # In Japanese the case's English reason stays out: a kind line, and where to ask.
    assert promise_ja.status_code == 409
    assert by_id(promise_ja, "notice").startswith("ただいまこの操作を行えませんでした。")
    assert "already running" not in promise_ja.text
    assert garbage.status_code == 409


async def test_a_promise_to_pay_holds_the_case_until_that_morning(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE, locale="ja")
        token = token_for(dunning, case.case_id)
        page = await get(pages, "/recover", token=token)
        earliest = re.search(r'id="pay-on"[^>]* min="([\d-]+)" max="([\d-]+)"', page.text)
        too_late = await post(pages, "/recover/promise", token=token, pay_on="2999-01-01")
        garbage = await post(pages, "/recover/promise", token=token, pay_on="tomorrow")
        day = earliest.group(1)
        promised = await post(pages, "/recover/promise", token=token, pay_on=day)
        view = await status_when(
            case_handle(dunning, case.invoice_id), lambda v: v.promised_for, "the promise"
        )
        after = await get(pages, "/recover", token=token, done="promise")

    for refused in (too_late, garbage):
        assert refused.status_code == 422
        assert "までの日付を選んでください" in by_id(refused, "pay-on-error")
    assert redirected_query(promised) == {"token": token, "lang": "ja", "done": "promise"}
    local = view.promised_for.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.date().isoformat(), local.hour, local.minute) == (day, 10, 0)
    assert "お支払いを処理します" in by_id(after, "notice")
    assert 'id="promised"' in after.text


# Stripe ----------------------------------------------------------------------------------


async def test_with_stripe_pay_now_goes_to_the_invoices_hosted_page(
    stripe_pages: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(invoice_id, amount_due=4980, currency="jpy", customer=CUSTOMER)
    async with dunning.worker():
        await open_case(stripe_pages, dunning, invoice_id)
        await recorded(dunning, invoice_id)
        token = token_for(dunning, invoice_id)
        page = await get(stripe_pages, "/recover", token=token)
        paying = await post(stripe_pages, "/recover/pay", token=token)

    assert page.status_code == 200 and by_id(page, "amount-due") == "¥4,980"
    assert by_id(page, "pay-now") == "Pay ¥4,980 securely"
    assert paying.status_code == 303
    assert paying.headers["location"] == f"https://invoice.stripe.com/i/acct_fake/{invoice_id}"
    assert stripe_api.charges == []  # Stripe's page takes the money; invoice.paid tells us


async def test_with_stripe_a_new_card_goes_through_checkout_and_is_charged(
    stripe_pages: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoice_id = new_invoice_id()
    stripe_api.add_invoice(
        invoice_id,
        amount_due=4980,
        currency="jpy",
        customer=CUSTOMER,
        decline=Decline("insufficient_funds"),
        approves={"pm_new_card"},
    )
    async with dunning.worker():
        await open_case(stripe_pages, dunning, invoice_id)
        await recorded(dunning, invoice_id)
        token = token_for(dunning, invoice_id)
        page = await get(stripe_pages, "/recover", token=token, lang="ja")
        leaving = await post(stripe_pages, "/recover/card", token=token, lang="ja")
        (session,) = stripe_api.checkout_sessions.values()
        completed = stripe_event(
            "checkout.session.completed", stripe_api.complete_checkout(session.id, "pm_new_card")
        )
        told = await stripe_pages.stripe(completed)
        again = await stripe_pages.stripe(completed)
        result = await finish(dunning, case_handle(dunning, invoice_id))

    assert '<form method="post" action="/recover/card"' in page.text  # a button, not a link
    assert leaving.status_code == 303 and leaving.headers["location"] == session.url
    assert (session.customer, session.currency) == (CUSTOMER, "jpy")
    assert session.success_url == (
        f"https://pay.example.com/recover?token={token}&lang=ja&done=card_pending"
    )
    assert session.cancel_url == f"https://pay.example.com/recover?token={token}&lang=ja"
    body = accepted(told, "processed")
    assert body["detail"] == f"sent payment_method_updated to dunning-{invoice_id}"
    assert accepted(again, "duplicate")
    # The card became the customer's default at Stripe and in the store...
    assert stripe_api.customers[CUSTOMER]["default_payment_method"] == "pm_new_card"
    assert stripe_pages.store.get_customer(CUSTOMER).payment_method == "pm_new_card"
    row = stripe_pages.stored(completed)
    assert row.payload["data"]["object"]["setup_intent"]["payment_method"] == "pm_new_card"
    # ... and the case charged it, once, and recovered.
    assert result.outcome is Outcome.RECOVERED
    assert [(c.invoice, c.payment_method) for c in stripe_api.charges] == [
        (invoice_id, "pm_new_card")
    ]
    updates = [e for e in result.timeline if e.kind == "payment_method_updated"]
    assert [(e.actor, e.detail) for e in updates] == [("customer", "pm_new_card")]


async def test_a_payment_mode_checkout_session_is_ignored(
    stripe_pages: Receiver, dunning: Dunning
) -> None:
    session = {"id": "cs_test_pay", "object": "checkout.session", "mode": "payment"}
    event = stripe_event("checkout.session.completed", {**session, "customer": CUSTOMER})
    accepted(await stripe_pages.stripe(event), "ignored")


# Links that cannot be used ---------------------------------------------------------------


async def test_expired_tampered_and_foreign_links_get_the_friendly_page(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE, locale="ja")
        good = token_for(dunning, case.case_id)
        expired = token_for(dunning, case.case_id, now=datetime.now(UTC) - timedelta(days=40))
        answers = {
            "expired": await get(pages, "/recover", token=expired),
            "tampered": await get(pages, "/recover", token=good[:-2] + "AA"),
            "unsubscribe": await get(
                pages, "/recover", token=token_for(dunning, case.case_id, use="unsubscribe")
            ),
            "unknown case": await get(pages, "/recover", token=token_for(dunning, "in_nobody")),
            "no token": await get(pages, "/recover"),
            "garbage": await get(pages, "/recover", token="%%%\x00<script>", lang="../../x"),
            "huge": await get(pages, "/recover", token="a." * 3000),
            "post expired": await post(pages, "/recover/pay", token=expired),
            "post no token": await post(pages, "/recover/pay"),
            "post chinese": await post(pages, "/recover/plan", token="x", lang="zh-Hans"),
        }
        body = await asyncio.to_thread(
            pages.http.post,
            "/recover/pay",
            content=b"\xff\xfe" * 100,
            headers={"Content-Type": "multipart/form-data; boundary=nope"},
        )

    for name, answer in {**answers, "broken form": body}.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        assert "Traceback" not in answer.text and "<script>" not in answer.text, name
        assert "support@example.com" in answer.text, name
    # An expired link is told in its customer's language; it names nothing about the case.
    assert answers["expired"].status_code == 410
    assert '<html lang="ja">' in answers["expired"].text
    assert by_id(answers["expired"], "error-title") == "このリンクは有効期限が切れています"
    assert case.invoice_id not in answers["expired"].text
    assert by_id(answers["tampered"], "error-title") == "This link doesn't work"
    assert answers["unknown case"].status_code == 404
    assert '<html lang="zh-Hans">' in answers["post chinese"].text


async def test_the_page_says_so_when_temporal_is_down(dunning: Dunning, tmp_path: Path) -> None:
    async def down():
        raise RuntimeError("Failed client connect: connection refused")

    store = dunning.activities.store
    offline = Receiver(page_settings(dunning, tmp_path), down, store)
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE)
        page = await get(offline, "/recover", token=token_for(dunning, case.case_id))

    assert page.status_code == 503
    assert by_id(page, "error-title") == "We can't show this page right now"


async def test_a_finished_cases_page_needs_no_temporal(dunning: Dunning, tmp_path: Path) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE)
        handle = case_handle(dunning, case.invoice_id)
        await handle.signal("cancel", {"reason": "subscription ended", "actor": "support"})
        await status_when(handle, lambda v: v.status is CaseStatus.CANCELLED, "cancelled")
        await finish(dunning, handle)

    async def down():
        raise RuntimeError("Failed client connect: connection refused")

    offline = Receiver(page_settings(dunning, tmp_path), down, dunning.activities.store)
    token = token_for(dunning, case.case_id)
    page = await get(offline, "/recover", token=token)
    paying = await post(offline, "/recover/pay", token=token)
    assert page.status_code == 200 and by_id(page, "heading") == "This payment is closed"
    assert 'id="pay-now"' not in page.text
    assert paying.status_code == 303
