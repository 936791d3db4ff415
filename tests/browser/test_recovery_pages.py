"""The recovery page as a customer uses it: the link in a real reminder from a running case,
opened in Chromium, in English, Japanese and Simplified Chinese, on a phone and a laptop; what
they do there reaches the case in Temporal.

Each customer owes in a currency of their own (USD, JPY, CNY), so every page shows its amount
formatted for its language; every page is checked for sideways scrolling at 390 px and for
form controls without a label. The actions are taken on a phone, the language switch on a
laptop.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date

from activities.notify.templates import babel_locale
from tests.support.browser import (
    DESKTOP,
    check_recovery_page,
    check_widths,
    money,
    open_case_in,
    open_from_email,
    result_of,
)
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus
from workflows.policy import Outcome

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
STOLEN = "pm_card_chargeDeclinedStolenCard"


async def test_paying_now_recovers_the_case(dunning: Dunning, site: str, page, language: str):
    case = await open_case_in(dunning, language, "pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, language)

        await page.click("#pay-now")
        await page.wait_for_url("**done=paid**")

        assert await page.locator("#pay-now").count() == 0
        paid = money(case.amount_due, case.currency, language)
        assert (await page.text_content("#amount-paid")).strip() == paid
        assert paid in await page.text_content("#notice")
        await check_widths(page, f"paid-{language}")
        await status_when(handle, lambda v: v.status is CaseStatus.RECOVERED, "recovered")
        result = await result_of(handle)

    assert result.outcome is Outcome.RECOVERED
    assert result.amount_recovered == case.amount_due


async def test_a_new_card_is_charged_and_recovers_the_case(
    dunning: Dunning, site: str, page, language: str
):
    case = await open_case_in(dunning, language, STOLEN, decline_code="stolen_card")
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, language)

        await page.click("#update-card")
        await page.wait_for_url("**/recover/card?**")
        assert money(case.amount_due, case.currency, language) in await page.inner_text("main")
        await check_widths(page, f"card-{language}")
        await page.select_option("#card", "pm_card_mastercard")
        await page.click("#save-card")
        await page.wait_for_url("**done=card_saved**")
        await check_recovery_page(page, case, language, "card-saved")
        result = await result_of(handle)
        view = await handle.query(DunningWorkflow.status)
        await page.reload()  # the customer looks again once the new card was charged

        assert await page.locator("#pay-now").count() == 0
        paid = money(case.amount_due, case.currency, language)
        assert (await page.text_content("#amount-paid")).strip() == paid
        await check_widths(page, f"card-charged-{language}")

    assert result.outcome is Outcome.RECOVERED
    assert [a.payment_method for a in view.attempts if a.approved] == ["pm_card_mastercard"]


async def test_a_payment_plan_is_set_up_and_shown(dunning: Dunning, site: str, page, language: str):
    case = await open_case_in(dunning, language, "pm_card_visa")
    async with dunning.worker():
        started = await dunning.start(case)
        # The paid first installment continues the case as new: follow its latest run.
        handle = dunning.env.client.get_workflow_handle_for(DunningWorkflow.run, started.id)
        await open_from_email(page, dunning, case, language)

        await page.check("#plan-3")
        await page.click("#choose-plan")
        await page.wait_for_url("**done=plan**")

        view = await status_when(handle, lambda v: len(v.plan) == 3, "the plan to be set up")
        assert sum(part.amount for part in view.plan) == case.amount_due
        shown = await page.locator("#current-plan li").all_inner_texts()
        assert len(shown) == 3
        for part, text in zip(view.plan, shown, strict=True):
            assert money(part.amount, case.currency, language) in text
        await check_widths(page, f"plan-{language}")
        await handle.terminate()


async def test_a_promise_to_pay_is_shown(dunning: Dunning, site: str, page, language: str):
    case = await open_case_in(dunning, language, SOFT_DECLINE)
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, language)

        day = date.fromisoformat(await page.get_attribute("#pay-on", "max"))
        await page.fill("#pay-on", day.isoformat())
        await page.click("#promise")
        await page.wait_for_url("**done=promise**")

        view = await status_when(handle, lambda v: v.promised_for is not None, "the promise")
        customer = dunning.activities.store.get_customer(case.customer_id)
        local = view.promised_for.astimezone(ZoneInfo(customer.time_zone)).date()
        assert local == day
        written = format_date(day, "long", locale=babel_locale(language))
        assert written in await page.text_content("#promised")
        await check_recovery_page(page, case, language, "promised")
        await handle.terminate()


@pytest.mark.parametrize("viewport", [DESKTOP])
async def test_the_language_switch_keeps_the_case(dunning: Dunning, site: str, page):
    case = await open_case_in(dunning, "en", "pm_card_visa")
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, "en")

        for language in ("ja", "zh-Hans"):
            await page.click(f"#lang-{language}")
            await page.wait_for_url(f"**lang={language}**")
            assert await page.get_attribute("html", "lang") == language
            await check_recovery_page(page, case, language, "switched")
        await page.click("#pay-now")
        await page.wait_for_url("**done=paid**")

        assert await page.get_attribute("html", "lang") == "zh-Hans"
        assert await page.locator("#pay-now").count() == 0
        result = await result_of(handle)

    assert result.outcome is Outcome.RECOVERED
