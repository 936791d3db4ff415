"""What the self-service pages' tests share: signed links, requests in a thread beside the
worker, reading a page's words and elements, and a running case whose row the page reads."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx

from activities.notify.links import make_token
from activities.store import CustomerProfile
from tests.support.harness import Dunning
from tests.support.receiver import Receiver
from workflows.models import CaseInput


def token_for(dunning: Dunning, case_id: str, **kw: object) -> str:
    now = kw.pop("now", datetime.now(UTC))
    valid_for = kw.pop("valid_for", timedelta(days=30))
    return make_token(case_id, dunning.activities.self_service.secret, now, valid_for, **kw)


async def get(receiver: Receiver, path: str, **params: str) -> httpx.Response:
    # In a thread, so the worker keeps running on this loop while the app answers.
    return await asyncio.to_thread(receiver.http.get, path, params=params, follow_redirects=False)


async def post(receiver: Receiver, path: str, **form: str) -> httpx.Response:
    return await asyncio.to_thread(receiver.http.post, path, data=form, follow_redirects=False)


def text(response: httpx.Response) -> str:
    """The page's visible words, tags dropped."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def by_id(response: httpx.Response, element_id: str) -> str:
    match = re.search(rf'<[^>]* id="{element_id}"[^>]*>(.*?)</', response.text, re.S)
    assert match, f"no #{element_id} in {response.text}"
    return unescape(match.group(1)).strip()


def redirected_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {key: values[0] for key, values in query.items()}


async def running_case(
    dunning: Dunning,
    payment_method: str | None,
    locale: str = "en",
    decline_code: str = "insufficient_funds",
) -> CaseInput:
    """A running case whose store row is written (the page reads it)."""
    case = await dunning.open_case(payment_method, decline_code=decline_code)
    dunning.activities.store.upsert_customer(
        CustomerProfile(
            customer_id=case.customer_id,
            email="ann@example.com",
            locale=locale,
            time_zone="Asia/Tokyo",
            payment_method=payment_method,
        )
    )
    await dunning.start(case)
    await recorded(dunning, case.case_id)
    return case


async def recorded(dunning: Dunning, case_id: str) -> None:
    """Wait for the case's store row, which the page reads."""
    for _ in range(300):
        if dunning.activities.store.get_case(case_id) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"case {case_id} was never recorded")
