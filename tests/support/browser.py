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
from pathlib import Path

import uvicorn
from playwright.async_api import Page

from activities.store import CaseStore
from config.settings import Settings
from webhooks.app import create_app
from webhooks.cases import ClientProvider

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


def links(store: CaseStore, case_id: str, path: str, channel: str | None = None) -> list[str]:
    """Every link to `path` (e.g. ``/recover``) in the case's outbox messages, oldest first."""
    found: list[str] = []
    for message in store.messages(case_id):
        if channel is not None and message.channel != channel:
            continue
        for url in _URL.findall(message.body):
            url = url.replace("&amp;", "&").rstrip(".,;")
            if re.match(rf"https?://[^/]+{re.escape(path)}(\?|$)", url) and url not in found:
                found.append(url)
    return found


async def link_when(
    store: CaseStore, case_id: str, path: str, channel: str | None = None, within: float = 15
) -> str:
    """The first link to `path` once a message carrying one is in the outbox."""
    for _ in range(int(within / 0.05)):
        found = await asyncio.to_thread(links, store, case_id, path, channel)
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    bodies = [m.body for m in store.messages(case_id)]
    raise AssertionError(f"no link to {path} in the outbox of {case_id}: {bodies}")


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


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    """A full-page screenshot in `folder`, named after `name` (a test id)."""
    folder.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{width}px.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
