"""The browser tier: one headless Chromium for the run, a fresh context per test, and the
receiver served over real HTTP so the links in the outbox open in it.

Without a Chromium the tests are skipped with one line saying how to get one, except under
CI=true, where they fail: CI must never pass with pages nobody looked at.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from activities.dunning import DunningActivities
from config.settings import Settings
from tests.support.browser import (
    LOCALES,
    NO_CHROMIUM,
    PHONE,
    VIEWPORTS,
    base_url,
    chromium,
    listening_socket,
    must_run_everything,
    screenshot,
    served,
)
from tests.support.harness import Dunning
from tests.support.receiver import client_of, receiver_settings

# Links in messages are signed with it; the served receiver checks them with it.
SECRET = "browser-tests-self-service-secret-7c1d"


def _unavailable(reason: str) -> None:
    if must_run_everything():
        pytest.fail(f"{reason} (CI=true: browser tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[object]:
    """One headless Chromium (Debian's) for the whole run."""
    executable = chromium()
    if executable is None:
        _unavailable(NO_CHROMIUM)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("no Playwright: make setup (the test extra)")
    playwright = await async_playwright().start()
    try:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()
    finally:
        await playwright.stop()


@pytest.fixture
def viewport() -> int:
    """The window's width: a phone unless the test is parametrised with another."""
    return PHONE


@pytest.fixture
def locale() -> str:
    """The browser's language: English, so a page in Japanese or Chinese proves it followed
    the customer's locale on file (or the page's switch), not the browser."""
    return "en"


@pytest.fixture(params=LOCALES)
def language(request: pytest.FixtureRequest) -> str:
    """The customer's language (their locale on file): their messages and pages use it."""
    return request.param


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def page(
    browser, viewport: int, locale: str, request: pytest.FixtureRequest, tmp_path_factory
) -> AsyncIterator[object]:
    """A page in a fresh context (no cookies, storage or cache from another test); a
    screenshot of it is kept when the test fails."""
    context = await browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
    # A form that asks a case (choosing a plan charges its first installment and continues the
    # case as new) answers once the workflow has: on a loaded machine a workflow task that
    # timed out is retried after 10 s, so allow for one such retry before calling it stuck.
    context.set_default_timeout(30_000)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        if request.node.stash.get(_FAILED, False) and not opened.is_closed():
            folder = tmp_path_factory.getbasetemp() / "screenshots"
            path = await screenshot(opened, folder, request.node.name)
            print(f"screenshot of the failed page: {path}", file=sys.stderr)
        await context.close()


@pytest.fixture
def site_socket() -> Iterator[socket.socket]:
    """The receiver's socket, bound first so the worker's links can name its address."""
    sock = listening_socket()
    yield sock
    sock.close()


@pytest.fixture
def site_settings(tmp_path: Path, task_queue: str, site_socket: socket.socket) -> Settings:
    """Settings shared by the worker and the served receiver: one store, one signing secret,
    and PUBLIC_BASE_URL at the served receiver so every link in a message opens it."""
    return receiver_settings(
        tmp_path,
        task_queue,
        public_base_url=base_url(site_socket),
        self_service_secret=SECRET,
    )


@pytest.fixture
def activities(site_settings: Settings) -> DunningActivities:
    """The real activities, signing links to the served receiver (overrides the suite's)."""
    return DunningActivities.from_settings(site_settings)


@pytest.fixture
def site(dunning: Dunning, site_settings: Settings, site_socket: socket.socket) -> Iterator[str]:
    """The real receiver app over real HTTP, on the test's time-skipping server and store;
    its base URL."""
    with served(site_settings, client_of(dunning), dunning.activities.store, site_socket) as url:
        yield url
