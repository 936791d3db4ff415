"""Every email in every language, opened as a phone and a laptop open it: Chromium renders
the HTML part at 390 px and 1280 px; nothing scrolls sideways, the column never passes 600 px,
and an email that links to the recovery page shows a button, never a raw URL."""

from __future__ import annotations

import pytest

from activities.notify.templates import OUTCOMES, TEMPLATE_NAMES
from tests.support.browser import DESKTOP, LOCALES, PHONE, VIEWPORTS, horizontal_overflow
from tests.support.messages import (
    ACCOUNT_LINK,
    LINK,
    OPEN_INVOICES,
    brand_templates,
    render,
    render_open_invoices,
)
from workflows.policy import Channel

TEMPLATES = brand_templates()
_WIDEST_TEXT = """() => Math.max(0, ...[...document.body.querySelectorAll('*')]
    .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
    .map(e => e.getBoundingClientRect().width))"""


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize("language", LOCALES)
async def test_an_email_fits_a_phone_and_a_desktop_column(page, language: str, name: str):
    message = render(TEMPLATES, language, name, Channel.EMAIL)
    await page.set_content(message.html)

    for width in (PHONE, DESKTOP):
        await page.set_viewport_size(VIEWPORTS[width])
        assert await horizontal_overflow(page) == 0, f"{language} {name} at {width}px"
        # What is read (any element holding text) stays in the column; a full-width
        # background around it is fine.
        widest = await page.evaluate(_WIDEST_TEXT)
        assert widest <= min(width, 600) + 1, f"{language} {name}: {widest}px at {width}px"

    buttons = await page.locator(f'a[href="{LINK}"]').all_inner_texts()
    visible = await page.evaluate("() => document.body.innerText")
    if name in OUTCOMES:
        assert buttons == []
    else:
        assert len(buttons) == 1 and buttons[0].strip() and "http" not in buttons[0]
    assert LINK not in visible  # the link is behind the button's label, never shown raw


@pytest.mark.parametrize(
    "name",
    ["reminder_gentle", "reminder_firm", "card_update", "authentication_needed", "final_notice"],
)
@pytest.mark.parametrize("language", LOCALES)
async def test_an_email_naming_three_invoices_fits_a_phone_with_one_line_each(
    page, language: str, name: str
):
    message = render_open_invoices(TEMPLATES, language, name, Channel.EMAIL)
    await page.set_content(message.html)
    await page.set_viewport_size(VIEWPORTS[PHONE])

    assert await horizontal_overflow(page) == 0, f"{language} {name}"
    visible = await page.evaluate("() => document.body.innerText")
    lines = [line for line in visible.splitlines() if line.startswith("in_")]
    assert [line.split()[0] for line in lines] == [i.invoice_id for i in OPEN_INVOICES]
    buttons = await page.locator(f'a[href="{ACCOUNT_LINK}"]').all_inner_texts()
    assert len(buttons) == 1 and "http" not in buttons[0] and ACCOUNT_LINK not in visible
