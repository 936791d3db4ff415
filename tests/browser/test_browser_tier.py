"""The browser tier itself: a real email from a running case, its link opened in Chromium on
the receiver served over HTTP."""

from __future__ import annotations

from tests.support.browser import check_page, link_when
from tests.support.harness import Dunning, status_when

SOFT_DECLINE = "pm_card_chargeDeclinedInsufficientFunds"


async def test_an_emails_link_opens_the_served_receiver(dunning: Dunning, site: str, page):
    case = await dunning.open_case(SOFT_DECLINE)
    async with dunning.worker():
        handle = await dunning.start(case)
        await status_when(handle, lambda view: True, "the case to start")
        link = await link_when(dunning.activities.store, case.case_id, "/unsubscribe", "email")

        assert link.startswith(site)
        response = await page.goto(link)

        assert response is not None and response.ok
        await check_page(page, "unsubscribe")
        await handle.terminate()
