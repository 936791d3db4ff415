"""The customer's account page: every open invoice of one customer, one payment for them all.

Nothing is mocked: the app runs under Starlette's TestClient over the test's time-skipping
server with a real worker and the real activities (GATEWAY=stripe: the fake Stripe API through
the official SDK), as the recovery page's tests do.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.notify.links import make_token
from activities.store import CaseStore, CustomerProfile
from tests.support.conversation import CUSTOMER as CONVERSING
from tests.support.conversation import conversation_policy, open_cases
from tests.support.fake_stripe import Decline, FakeStripe
from tests.support.harness import Dunning
from tests.support.pages import (
    by_id,
    get,
    post,
    recorded,
    redirected_query,
    running_case,
    text,
    token_for,
)
from tests.support.receiver import (
    CUSTOMER,
    SOFT_DECLINE,
    Receiver,
    accepted,
    case_handle,
    finish,
    open_case,
    page_settings,
    receiver_settings,
    stripe_event,
    temporal_is_down,
)
from webhooks.app import create_app
from workflows.models import CaseInput
from workflows.policy import Outcome

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from starlette.testclient import TestClient


def account_token(dunning: Dunning, customer_id: str = CUSTOMER, **kw: object) -> str:
    return token_for(dunning, customer_id, use="account", **kw)


async def three_cases(dunning: Dunning, payment_method: str, locale: str = "en") -> list[CaseInput]:
    """Three running cases of one customer (cus_ann), each with its store row."""
    return [await running_case(dunning, payment_method, locale=locale) for _ in range(3)]


async def finish_all(dunning: Dunning, cases: list[CaseInput]) -> list:
    return [await finish(dunning, case_handle(dunning, case.invoice_id)) for case in cases]


# What the page shows --------------------------------------------------------------------


async def test_the_page_lists_every_open_invoice_and_their_total_in_the_customers_language(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        cases = await three_cases(dunning, SOFT_DECLINE, locale="ja-JP")
        # The link a message naming several open invoices carries.
        link = dunning.activities.self_service.account_link_for(CUSTOMER, datetime.now(UTC))
        token = link.partition("token=")[2]
        page = await get(pages, "/account", token=token)
        english = await get(pages, "/account", token=token, lang="en")

    assert link.startswith("http://localhost:8000/account?token=")
    assert page.status_code == 200, page.text
    assert '<html lang="ja">' in page.text
    assert by_id(page, "heading") == "未払いの請求書"
    assert by_id(page, "total") == "￥14,940"
    for case in cases:
        assert by_id(page, f"invoice-{case.invoice_id}") == f"請求書 {case.invoice_id}"
        assert by_id(page, f"amount-{case.invoice_id}") == "￥4,980"
    assert by_id(page, "pay-all") == "合計 ￥14,940 をまとめて支払う"
    assert 'id="update-card"' in page.text and f"/account/card?token={token}" in page.text
    assert 'name="viewport"' in page.text and "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert f'href="/account?token={token}&amp;lang=zh-Hans"' in page.text
    assert by_id(english, "intro").startswith("3 invoices are waiting for payment.")
    assert by_id(english, "pay-all") == "Pay all ¥14,940 now"


async def test_with_nothing_owed_the_page_says_so_and_still_takes_a_new_card(
    pages: Receiver, dunning: Dunning
) -> None:
    # A card-expiry notice goes to a customer who owes nothing: the page takes the card.
    store = dunning.activities.store
    store.upsert_customer(CustomerProfile(customer_id="cus_clear", locale="zh-CN"))
    token = account_token(dunning, "cus_clear")
    page = await get(pages, "/account", token=token)
    form = await get(pages, "/account/card", token=token, lang="en")
    saved = await post(pages, "/account/card", token=token, card="pm_card_mastercard")
    thanked = await get(pages, "/account", token=token, lang="en", done="card_saved")

    assert page.status_code == 200
    assert by_id(page, "heading") == "您已全部付清"
    assert 'id="total"' not in page.text and 'id="pay-all"' not in page.text
    assert by_id(page, "update-card") == "更新银行卡"
    assert form.status_code == 200 and 'action="/account/card"' in form.text
    assert "Back to your account" in text(form)
    assert redirected_query(saved) == {"token": token, "lang": "zh-Hans", "done": "card_saved"}
    assert store.get_customer("cus_clear").payment_method == "pm_card_mastercard"
    assert by_id(thanked, "notice").startswith("Thanks — your new card is saved.")


# Paying them all ------------------------------------------------------------------------


async def test_pay_all_recovers_every_open_case_of_the_customer(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        cases = await three_cases(dunning, "pm_card_visa")
        token = account_token(dunning)
        paying = await post(pages, "/account/pay", token=token, lang="en")
        again = await post(pages, "/account/pay", token=token, lang="en")
        results = await finish_all(dunning, cases)
        after = await get(pages, "/account", token=token, done="paid")

    assert redirected_query(paying) == {"token": token, "lang": "en", "done": "paid"}
    assert again.status_code == 303  # nothing left to pay: back to the page
    for case, result in zip(cases, results, strict=True):
        assert result.outcome is Outcome.RECOVERED and result.amount_recovered == 4980
        assert [e.actor for e in result.timeline if e.kind == "pay_now"] == ["customer"]
        charge = dunning.activities.store.simulated_charge(f"dunning:{case.case_id}:attempt:1")
        assert charge is not None and charge.approved
    assert by_id(after, "heading") == "You're all paid up"
    assert by_id(after, "notice") == "Thank you — your payment went through."
    assert 'id="pay-all"' not in after.text and 'id="update-card"' in after.text


async def test_the_link_in_a_merged_reminder_pays_every_invoice_it_names(
    pages: Receiver, dunning: Dunning
) -> None:
    conversation_policy(dunning)
    async with dunning.worker():
        handles = await open_cases(dunning, spacing=timedelta(hours=1), count=2)
        await dunning.env.sleep(timedelta(days=1, hours=1))  # the second's reminder, merged
        store = dunning.activities.store
        merged = None
        for _ in range(200):
            rows = store.messages_with_customers(["reminder_gentle"])
            merged = next(
                (
                    m
                    for m, _ in rows
                    if m.channel == "email" and "in_three_1" in m.body and "in_three_2" in m.body
                ),
                None,
            )
            if merged is not None:
                break
            await asyncio.sleep(0.05)
        assert merged is not None, "no message named both invoices"
        token = re.search(r"/account\?token=([A-Za-z0-9_.:~-]+)", merged.body).group(1)
        profile = store.get_customer(CONVERSING)
        store.upsert_customer(profile.model_copy(update={"payment_method": "pm_card_visa"}))
        paying = await post(pages, "/account/pay", token=token, lang="en")
        results = [await handle.result() for handle in handles]

    assert redirected_query(paying)["done"] == "paid"
    assert [r.outcome for r in results] == [Outcome.RECOVERED, Outcome.RECOVERED]
    assert [r.amount_recovered for r in results] == [1000, 2000]


async def test_invoices_passed_to_collections_are_not_called_paid_up(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE)
        result = await finish(dunning, case_handle(dunning, case.invoice_id))
        page = await get(pages, "/account", token=account_token(dunning))

    assert result.outcome is Outcome.COLLECTIONS
    assert page.status_code == 200
    assert by_id(page, "heading") == "Passed to collections"
    assert by_id(page, "intro") == (
        "Your unpaid invoice (¥4,980) has been passed to our collections team, so it can no "
        "longer be paid here. To settle it, please contact support@example.com."
    )
    assert 'id="pay-all"' not in page.text


async def test_declines_are_listed_and_a_new_card_is_told_to_every_open_case(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        cases = await three_cases(dunning, SOFT_DECLINE)
        token = account_token(dunning)
        declined = await post(pages, "/account/pay", token=token, lang="en")
        wrong = await post(pages, "/account/card", token=token, card="", payment_method="4242")
        saved = await post(pages, "/account/card", token=token, card="pm_card_visa")
        results = await finish_all(dunning, cases)

    assert declined.status_code == 402
    assert by_id(declined, "notice").startswith("Not every invoice could be paid.")
    for case in cases:
        assert by_id(declined, f"result-{case.invoice_id}") == (
            f"Invoice {case.invoice_id}: your card was declined (insufficient funds)."
        )
        assert f'id="invoice-{case.invoice_id}"' in declined.text  # still open, still listed
    assert wrong.status_code == 422 and 'aria-invalid="true"' in wrong.text
    assert redirected_query(saved)["done"] == "card_saved"
    assert dunning.activities.store.get_customer(CUSTOMER).payment_method == "pm_card_visa"
    for result in results:
        assert result.outcome is Outcome.RECOVERED
        updates = [e for e in result.timeline if e.kind == "payment_method_updated"]
        assert [(e.actor, e.detail) for e in updates] == [("customer", "pm_card_visa")]


async def test_with_stripe_a_new_card_goes_through_checkout_and_reaches_every_open_case(
    stripe_pages: Receiver, stripe_api: FakeStripe, dunning: Dunning
) -> None:
    invoices = [f"in_acct{n}" for n in range(2)]
    for invoice_id in invoices:
        stripe_api.add_invoice(
            invoice_id,
            amount_due=4980,
            currency="jpy",
            customer=CUSTOMER,
            decline=Decline("insufficient_funds"),
            approves={"pm_new_card"},
        )
    async with dunning.worker():
        for invoice_id in invoices:
            await open_case(stripe_pages, dunning, invoice_id)
            await recorded(dunning, invoice_id)
        token = account_token(dunning)
        leaving = await post(stripe_pages, "/account/card", token=token, lang="en")
        (session,) = stripe_api.checkout_sessions.values()
        completed = stripe_event(
            "checkout.session.completed", stripe_api.complete_checkout(session.id, "pm_new_card")
        )
        told = await stripe_pages.stripe(completed)
        results = [await finish(dunning, case_handle(dunning, i)) for i in invoices]

    assert leaving.status_code == 303 and leaving.headers["location"] == session.url
    assert (session.customer, session.currency) == (CUSTOMER, "jpy")
    assert session.success_url == (
        f"https://pay.example.com/account?token={token}&lang=en&done=card_pending"
    )
    detail = accepted(told, "processed")["detail"]
    assert all(f"dunning-{invoice_id}" in detail for invoice_id in invoices)
    assert [r.outcome for r in results] == [Outcome.RECOVERED, Outcome.RECOVERED]
    assert sorted(c.invoice for c in stripe_api.charges) == invoices


# Links that cannot be used ---------------------------------------------------------------


async def test_expired_tampered_and_foreign_links_get_the_friendly_page(
    pages: Receiver, dunning: Dunning
) -> None:
    async with dunning.worker():
        case = await running_case(dunning, SOFT_DECLINE, locale="ja")
        good = account_token(dunning)
        expired = account_token(dunning, now=datetime.now(UTC) - timedelta(days=40))
        answers = {
            "expired": await get(pages, "/account", token=expired),
            "tampered": await get(pages, "/account", token=good[:-2] + "AA"),
            "a pay link's token": await get(pages, "/account", token=token_for(dunning, CUSTOMER)),
            "a case's pay token": await get(
                pages, "/account", token=token_for(dunning, case.case_id)
            ),
            "unknown customer": await get(pages, "/account", token=account_token(dunning, "cus_x")),
            "no token": await get(pages, "/account"),
            "garbage": await get(pages, "/account", token="%%%\x00<script>", lang="../../x"),
            "post expired": await post(pages, "/account/pay", token=expired),
            "post no token": await post(pages, "/account/pay"),
            "post card chinese": await post(pages, "/account/card", token="x", lang="zh-Hans"),
            "card form tampered": await get(pages, "/account/card", token=good[:-1] + "_"),
        }
        broken = await asyncio.to_thread(
            pages.http.post,
            "/account/pay",
            content=b"\xff\xfe" * 100,
            headers={"Content-Type": "multipart/form-data; boundary=nope"},
        )

    for name, answer in {**answers, "broken form": broken}.items():
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        assert "Traceback" not in answer.text and "<script>" not in answer.text, name
        assert "support@example.com" in answer.text, name
    assert answers["expired"].status_code == 410
    assert '<html lang="ja">' in answers["expired"].text  # told in its customer's language
    assert by_id(answers["expired"], "error-title") == "このリンクは有効期限が切れています"
    assert case.invoice_id not in answers["expired"].text
    for name in ("tampered", "a pay link's token", "a case's pay token", "no token"):
        assert answers[name].status_code == 400, name
        assert by_id(answers[name], "error-title") == "This link doesn't work", name
    assert answers["unknown customer"].status_code == 404
    assert '<html lang="zh-Hans">' in answers["post card chinese"].text


async def test_the_page_says_so_when_temporal_is_down(dunning: Dunning, tmp_path: Path) -> None:
    offline = Receiver(page_settings(dunning, tmp_path), temporal_is_down, dunning.activities.store)
    async with dunning.worker():
        await running_case(dunning, SOFT_DECLINE)
        page = await get(offline, "/account", token=account_token(dunning))

    assert page.status_code == 503
    assert by_id(page, "error-title") == "We can't show this page right now"


SECRET = "account-page-secret"
# Near misses of a real token: its parts kept, altered, cut or swapped.
REAL = make_token(CUSTOMER, SECRET, datetime.now(UTC), timedelta(days=30), use="account")
TOKENS = st.one_of(
    st.text(max_size=300),
    st.builds(lambda cut, tail: REAL[:cut] + tail, st.integers(0, len(REAL)), st.text(max_size=30)),
    st.builds(
        lambda parts: "~".join(parts),
        st.lists(st.text(alphabet="abcz09_-.:~", max_size=24), min_size=1, max_size=6),
    ),
)


def test_no_token_however_garbled_is_answered_with_a_500(tmp_path: Path) -> None:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    store.upsert_customer(CustomerProfile(customer_id=CUSTOMER, locale="ja"))
    app = create_app(
        receiver_settings(tmp_path, self_service_secret=SECRET), temporal_is_down, store
    )
    http = TestClient(app, raise_server_exceptions=False)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(token=TOKENS, lang=st.text(max_size=20), path=st.sampled_from(["", "/card", "/pay"]))
    def answered_kindly(token: str, lang: str, path: str) -> None:
        if path == "/pay":
            answer = http.post("/account/pay", data={"token": token, "lang": lang})
        else:
            answer = http.get(f"/account{path}", params={"token": token, "lang": lang})
        # The one real token opens the page: nothing is owed in the store, so it answers
        # without Temporal (200); its forms reach Temporal, which is down here (503).
        kind = (200, 503) if token == REAL else (400, 404, 410)
        assert answer.status_code in kind, (answer.status_code, token)
        assert "Traceback" not in answer.text and "support@example.com" in answer.text

    answered_kindly()
    store.engine.dispose()
