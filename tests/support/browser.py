"""The customer's pages in a real browser: Debian's Chromium driven by Playwright, the receiver
served over real HTTP, the links read from the outbox, and what every page must get right.

Nothing is downloaded at run time: Playwright drives the Chromium on the machine
(`apt-get install chromium`; `.ci/run` installs it), never one of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from temporalio.client import WorkflowHandle

from activities.notify.templates import babel_locale
from activities.store import CaseStore
from config.policies import find_policy
from config.settings import Settings
from tests.support.harness import Dunning
from webhooks.app import create_app
from webhooks.cases import ClientProvider
from workflows.contact_hours import ContactHours
from workflows.models import CaseInput, CaseResult
from workflows.money import format_money
from workflows.policy import PlanOffer, Policy

if TYPE_CHECKING:  # Playwright is imported by the fixture, which skips when it is missing
    from playwright.async_api import Page

# One line, so a skipped browser test says what to do.
NO_CHROMIUM = "no Chromium: apt-get install chromium"
# The widths every page is checked at: a phone and a laptop.
PHONE, DESKTOP = 390, 1280
VIEWPORTS = {PHONE: {"width": PHONE, "height": 844}, DESKTOP: {"width": DESKTOP, "height": 800}}
LOCALES = ["en", "ja", "zh-Hans"]
# Set to a folder to keep a screenshot of every page checked (failures are always kept).
SCREENSHOTS_ENV = "BROWSER_SCREENSHOTS"


def chromium() -> str | None:
    """The system's Chromium, if installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def must_run_everything() -> bool:
    """In CI a browser test that cannot run fails: a green run means every page was seen."""
    return os.environ.get("CI", "").lower() == "true"


# Each language's customer owes in a currency of their own, so each page formats differently.
AMOUNTS = {"en": ("USD", 4900), "ja": ("JPY", 4980), "zh-Hans": ("CNY", 12800)}
ZONES = {"en": "America/New_York", "ja": "Asia/Tokyo", "zh-Hans": "Asia/Shanghai"}
POLICY = "browser"


def browser_policy(policies: list[Policy]) -> Policy:
    """The standard policy at any hour (a reminder goes out as the case opens, whatever the
    time), offering plans of 2 and 3 installments and a promise within 14 days."""
    standard = find_policy(policies, "standard", 1)
    return standard.model_copy(
        update={
            "name": POLICY,
            "contact_hours": ContactHours(enabled=False),
            "payment_plans": [PlanOffer(installments=2), PlanOffer(installments=3)],
            "promise_within": timedelta(days=14),
        }
    )


async def open_case_in(
    dunning: Dunning,
    language: str,
    payment_method: str,
    decline_code: str = "insufficient_funds",
) -> CaseInput:
    """A case on the browser policy for a customer who reads `language`, in their currency."""
    if not any(policy.name == POLICY for policy in dunning.activities.policies):
        dunning.activities.policies.append(browser_policy(dunning.activities.policies))
    currency, amount = AMOUNTS[language]
    case = await dunning.open_case(payment_method, decline_code, amount, currency)
    store = dunning.activities.store
    profile = store.get_customer(case.customer_id)
    update = {"locale": language, "time_zone": ZONES[language]}
    store.upsert_customer(profile.model_copy(update=update))
    return case.model_copy(update={"policy_name": POLICY})


def money(amount: int, currency: str, language: str) -> str:
    """An amount as a page in `language` must show it."""
    return format_money(amount, currency, str(babel_locale(language)))


# The receiver over real HTTP ---------------------------------------------------------------


def listening_socket() -> socket.socket:
    """A socket on a free local port, bound before the app is built so links can name it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def base_url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def served(
    settings: Settings, provider: ClientProvider, store: CaseStore, sock: socket.socket
) -> Iterator[str]:
    """The real receiver app, served by uvicorn in a thread on `sock`, for as long as the block
    runs; yields its base URL."""
    config = uvicorn.Config(
        create_app(settings, provider, store), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            if not thread.is_alive():
                raise AssertionError("the receiver stopped while starting")
            threading.Event().wait(0.01)
        else:
            raise AssertionError("the receiver never started")
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# Links in the outbox -----------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s\"'<>)]+")


def links(
    store: CaseStore, case_id: str, path: str | tuple[str, ...], channel: str | None = None
) -> list[str]:
    """Every link to `path` (e.g. ``/recover``; or any of several) in the case's outbox
    messages, oldest first."""
    paths = "|".join(re.escape(p) for p in ((path,) if isinstance(path, str) else path))
    found: list[str] = []
    for message in store.messages(case_id):
        if channel is not None and message.channel != channel:
            continue
        for url in _URL.findall(message.body):
            url = url.replace("&amp;", "&").rstrip(".,;")
            if re.match(rf"https?://[^/]+({paths})(\?|$)", url) and url not in found:
                found.append(url)
    return found


async def link_when(
    store: CaseStore,
    case_id: str,
    path: str | tuple[str, ...],
    channel: str | None = None,
    within: float = 15,
) -> str:
    """The first link to `path` once a message carrying one is in the outbox."""
    for _ in range(int(within / 0.05)):
        found = await asyncio.to_thread(links, store, case_id, path, channel)
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    bodies = [m.body for m in store.messages(case_id)]
    raise AssertionError(f"no link to {path} in the outbox of {case_id}: {bodies}")


async def recorded(store: CaseStore, case_id: str, within: float = 15) -> None:
    """Wait for the case's row: its first message may go out before the row is written, and
    a person who clicks at once would see "not found" (a test is quicker than any person)."""
    for _ in range(int(within / 0.05)):
        if await asyncio.to_thread(store.get_case, case_id) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"case {case_id} was never recorded in the store")


async def result_of(handle: WorkflowHandle) -> CaseResult:
    """The case's result, virtual time running meanwhile (the SDK unlocks time skipping for a
    handle it started; unlocking once more would let time jump past a task in flight)."""
    return await asyncio.wait_for(handle.result(), timeout=60)


# What every page must get right -------------------------------------------------------------

_UNLABELLED = """() => {
  const named = (el) => {
    if ((el.getAttribute('aria-label') || '').trim()) return true;
    const ids = (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean);
    if (ids.some((id) => (document.getElementById(id)?.textContent || '').trim())) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    if (el.tagName === 'BUTTON') return el.textContent.trim() !== '';
    if (el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type))
      return (el.value || '').trim() !== '';
    return (el.getAttribute('title') || '').trim() !== '';
  };
  const controls = document.querySelectorAll('input, select, textarea, button');
  return [...controls]
    .filter((el) => el.type !== 'hidden' && !el.closest('[hidden]'))
    .filter((el) => !named(el))
    .map((el) => el.outerHTML.slice(0, 120));
}"""


async def unlabelled_controls(page: Page) -> list[str]:
    """The form controls a screen reader could not name (no label, aria name or text)."""
    return await page.evaluate(_UNLABELLED)


async def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return await page.evaluate(
        "() => Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"
    )


async def check_page(page: Page, name: str = "") -> None:
    """What every customer page must get right: no sideways scrolling on a phone, and a name
    for every form control. Keeps a screenshot when BROWSER_SCREENSHOTS names a folder."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        await screenshot(page, Path(folder), name or "page")
    overflow = await horizontal_overflow(page)
    assert overflow == 0, f"{page.url}: scrolls sideways by {overflow}px"
    unlabelled = await unlabelled_controls(page)
    assert not unlabelled, f"{page.url}: form controls without a label: {unlabelled}"


async def check_widths(page: Page, name: str = "") -> None:
    """`check_page` on a phone and on a laptop, then back to the width the test had."""
    before = page.viewport_size
    for width in (PHONE, DESKTOP):
        await page.set_viewport_size(VIEWPORTS[width])
        await check_page(page, name)
    if before is not None:
        await page.set_viewport_size(before)


async def open_from_email(
    page: Page,
    dunning: Dunning,
    case: CaseInput,
    language: str,
    path: str | tuple[str, ...] = "/recover",
) -> None:
    """Open the link to `path` in the case's first email (once the case is recorded), as the
    customer would, and check it opened in their language."""
    store = dunning.activities.store
    link = await link_when(store, case.case_id, path, "email")
    await recorded(store, case.case_id)
    response = await page.goto(link)
    assert response is not None and response.status == 200, await page.content()
    assert await page.get_attribute("html", "lang") == language
    if path == "/recover":
        await check_recovery_page(page, case, language, "recover")


async def check_recovery_page(page: Page, case: CaseInput, language: str, name: str) -> None:
    """The amount due as the language writes it, and what every page must get right."""
    expected = money(case.amount_due, case.currency, language)
    assert (await page.text_content("#amount-due")).strip() == expected
    await check_widths(page, f"{name}-{language}")


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    """A full-page screenshot in `folder`, named after `name` (a test id)."""
    folder.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{width}px.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
