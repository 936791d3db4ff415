"""'Tell us why' as a customer uses it: from the recovery page of a real reminder, in each
language; the answer is stored (the words in the store only), the case hears the reason, and
the customer is taken where the reason leads."""

from __future__ import annotations

from tests.support.browser import check_widths, open_case_in, open_from_email
from tests.support.harness import Dunning, status_when
from workflows.models import FeedbackReason

WORDS = "Paid late this month, salary comes on the 25th."


async def test_cannot_afford_is_stored_and_leads_to_the_plans(
    dunning: Dunning, site: str, page, language: str
):
    case = await open_case_in(dunning, language, "pm_card_chargeDeclinedInsufficientFunds")
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, language)

        await page.click("#feedback")
        await page.wait_for_url("**/recover/feedback?**")
        assert await page.get_attribute("html", "lang") == language
        await check_widths(page, f"feedback-{language}")
        await page.check("#reason-cannot_afford")
        await page.fill("#text", WORDS)
        await page.click("#send")
        await page.wait_for_url("**/recover?**")

        assert await page.locator("#plan-form").is_visible()
        await check_widths(page, f"feedback-plans-{language}")
        (stored,) = dunning.activities.store.feedback_for(case.case_id)
        assert (stored.reason, stored.text) == (FeedbackReason.CANNOT_AFFORD, WORDS)
        view = await status_when(
            handle,
            lambda v: any(e.kind == "feedback" for e in v.timeline),
            "the case to hear the reason",
        )
        (heard,) = [e for e in view.timeline if e.kind == "feedback"]
        assert WORDS not in str(heard)  # the words stay in the store
        await handle.terminate()
