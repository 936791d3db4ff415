"""The account page as a customer uses it: three open invoices of one customer, the link a
merged message carries opened in Chromium in English, Japanese and Simplified Chinese on a
phone; "pay all" reaches every case in Temporal, and a new card given from the page reaches
them all too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.browser import (
    check_widths,
    money,
    open_case_in,
    recorded,
    result_of,
)
from tests.support.harness import Dunning
from workflows.policy import Outcome

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
HEADING = {"en": "Your open invoices", "ja": "未払いの請求書", "zh-Hans": "您的未付发票"}


async def open_account(page, dunning: Dunning, customer_id: str, language: str) -> None:
    link = dunning.activities.self_service.account_link_for(customer_id, datetime.now(UTC))
    response = await page.goto(link)
    assert response is not None and response.status == 200, await page.content()
    assert await page.get_attribute("html", "lang") == language


async def test_paying_all_recovers_every_open_invoice(
    dunning: Dunning, site: str, page, language: str
):
    cases = [await open_case_in(dunning, language, "pm_card_visa") for _ in range(3)]
    async with dunning.worker():
        handles = [await dunning.start(case) for case in cases]
        for case in cases:
            await recorded(dunning.activities.store, case.case_id)
        await open_account(page, dunning, cases[0].customer_id, language)

        assert (await page.text_content("#heading")).strip() == HEADING[language]
        total = money(sum(c.amount_due for c in cases), cases[0].currency, language)
        assert (await page.text_content("#total")).strip() == total
        for case in cases:
            shown = await page.text_content(f"#amount-{case.invoice_id}")
            assert shown.strip() == money(case.amount_due, case.currency, language)
        assert total in await page.text_content("#pay-all")
        await check_widths(page, f"account-{language}")

        await page.click("#pay-all")
        await page.wait_for_url("**done=paid**")

        assert await page.locator("#pay-all").count() == 0
        assert await page.locator("#update-card").count() == 1  # a card for next time
        await check_widths(page, f"account-paid-{language}")
        results = [await result_of(handle) for handle in handles]

    assert [r.outcome for r in results] == [Outcome.RECOVERED] * 3


async def test_a_new_card_from_the_account_page_reaches_every_open_invoice(
    dunning: Dunning, site: str, page, language: str
):
    cases = [await open_case_in(dunning, language, SOFT_DECLINE) for _ in range(2)]
    async with dunning.worker():
        handles = [await dunning.start(case) for case in cases]
        for case in cases:
            await recorded(dunning.activities.store, case.case_id)
        await open_account(page, dunning, cases[0].customer_id, language)

        await page.click("#update-card")
        await page.wait_for_url("**/account/card?**")
        await check_widths(page, f"account-card-{language}")
        await page.select_option("#card", "pm_card_mastercard")
        await page.click("#save-card")
        await page.wait_for_url("**done=card_saved**")
        await check_widths(page, f"account-card-saved-{language}")
        results = [await result_of(handle) for handle in handles]

    assert [r.outcome for r in results] == [Outcome.RECOVERED] * 2
