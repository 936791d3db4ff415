"""Message preferences as a customer uses them: the footer link of a real reminder, in each
language; stopping email suppresses the customer's address, and undo lifts it again."""

from __future__ import annotations

from tests.support.browser import check_widths, open_case_in, open_from_email
from tests.support.harness import Dunning

FOOTER = ("/preferences", "/unsubscribe")


async def test_email_is_stopped_and_undone(dunning: Dunning, site: str, page, language: str):
    case = await open_case_in(dunning, language, "pm_card_chargeDeclinedInsufficientFunds")
    store = dunning.activities.store
    email = store.get_customer(case.customer_id).email
    async with dunning.worker():
        handle = await dunning.start(case)
        await open_from_email(page, dunning, case, language, FOOTER)
        await check_widths(page, f"preferences-{language}")
        assert store.suppression("email", email) is None  # opening the link stops nothing

        await page.click("#stop-email")
        await page.wait_for_selector("#notice")

        assert store.suppression("email", email) is not None
        assert await page.locator("#resume-email").is_visible()
        assert await page.get_attribute("html", "lang") == language
        await check_widths(page, f"preferences-stopped-{language}")

        await page.click("#resume-email")
        await page.wait_for_selector("#stop-email")

        assert store.suppression("email", email) is None
        await check_widths(page, f"preferences-resumed-{language}")
        await handle.terminate()
