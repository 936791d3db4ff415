"""The one-click email unsubscribe link in every email's footer and List-Unsubscribe header:
old links keep working and now open the preferences page (tests/receiver/test_preferences.py
covers its choices)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.notify.links import SelfService, make_token
from activities.store import CaseStore, CustomerProfile, Message, MessageStatus
from config.settings import Settings
from webhooks.app import create_app
from workflows.models import CaseRecord, CaseStatus

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette prefers httpx2; httpx works
    from starlette.testclient import TestClient

SECRET = "unsubscribe-test-secret"
EMAIL = "Kenji.Sato@Example.com"


async def temporal_is_down():
    raise RuntimeError("unsubscribing never needs Temporal")


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    store.upsert_customer(CustomerProfile(customer_id="cus_1", email=EMAIL))
    opened = datetime(2026, 11, 1, tzinfo=UTC)
    store.record_case(
        CaseRecord(
            case_id="in_1",
            invoice_id="in_1",
            customer_id="cus_1",
            status=CaseStatus.ACTIVE,
            amount_due=4980,
            amount_recovered=0,
            currency="JPY",
            policy="standard",
            policy_version=1,
            opened_at=opened,
        )
    )
    return store


@pytest.fixture
def http(tmp_path: Path, store: CaseStore) -> TestClient:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        self_service_secret=SECRET,
        _env_file=None,
    )
    return TestClient(create_app(settings, temporal_is_down, store))


def link(case_id: str = "in_1") -> str:
    service = SelfService(
        url="https://pay.example.com/?token={token}",
        secret=SECRET,
        valid_for=timedelta(days=30),
        unsubscribe_url="/unsubscribe?token={token}",
    )
    return service.unsubscribe_link_for(case_id, datetime.now(UTC))


def test_opening_the_link_asks_and_changes_nothing(http: TestClient, store: CaseStore):
    page = http.get(link())

    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert 'id="stop-email"' in page.text
    assert store.suppression("email", EMAIL) is None  # a mail scanner's visit unsubscribes nobody


def test_one_click_post_suppresses_dunning_email_to_the_customer(http, store: CaseStore):
    done = http.post(link(), data={"List-Unsubscribe": "One-Click"})

    assert done.status_code == 200
    assert "we won&#39;t email you about payments any more" in done.text
    suppression = store.suppression("email", EMAIL.lower())
    assert (suppression.reason, suppression.source) == ("unsubscribed", "link")


def test_one_click_post_as_multipart_without_fields_still_suppresses_email(http, store):
    # RFC 8058 lets the mail client send its one field as multipart/form-data.
    done = http.post(link(), files={"List-Unsubscribe": (None, "One-Click")})

    assert done.status_code == 200
    assert store.suppression("email", EMAIL) is not None
    assert store.suppression("in_app", "cus_1") is None  # one-click stops email alone


def test_a_pre_dunning_notices_link_unsubscribes_its_customer(http, store: CaseStore):
    # A notice is sent before any case exists: its link names the notice, not a case.
    row = store.claim_message(
        Message(
            case_id="card-pm_1",
            customer_id="cus_1",
            step="expiry-2027-03-P7D",
            channel="email",
            template="card_expiring",
            recipient=EMAIL.lower(),
            body="...",
        )
    )
    store.mark_message(row.id, MessageStatus.SENT)

    done = http.post(link("card-pm_1"), data={"List-Unsubscribe": "One-Click"})

    assert done.status_code == 200
    assert store.suppression("email", EMAIL.lower()) is not None
    assert http.get(link("card-pm_unknown")).status_code == 404


NOT_WORKING = "This link doesn&#39;t work"


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("/unsubscribe?token=garbage", NOT_WORKING),
        ("/unsubscribe", NOT_WORKING),
        (  # a recovery-page link cannot unsubscribe
            "/unsubscribe?token="
            + make_token("in_1", SECRET, datetime.now(UTC), timedelta(days=1), use="pay"),
            NOT_WORKING,
        ),
        (
            "/unsubscribe?token="
            + make_token("in_1", "another-secret", datetime.now(UTC), timedelta(days=1)),
            NOT_WORKING,
        ),
        (
            "/unsubscribe?token="
            + make_token(
                "in_1",
                SECRET,
                datetime.now(UTC) - timedelta(days=2),
                timedelta(days=1),
                use="unsubscribe",
            ),
            "This link has expired",
        ),
    ],
    ids=["garbage", "no-token", "recovery-link", "foreign-secret", "expired"],  # xdist: stable
)
def test_a_link_that_does_not_work_says_so_kindly(http: TestClient, store: CaseStore, url, title):
    answer = http.post(url)

    assert answer.status_code == 400
    assert title in answer.text
    assert "support@example.com" in answer.text  # where to turn instead
    assert store.suppression("email", EMAIL) is None


def test_a_link_for_an_unknown_case_finds_nobody(http: TestClient):
    answer = http.post(link("in_unknown"))

    assert answer.status_code == 404
    assert "We can&#39;t find this payment" in answer.text


def signed_claims(claims: bytes) -> str:
    """A token with these raw claims, signed with the receiver's secret."""
    payload = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    mac = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "query",
    [
        "token=%C3%A9.%C3%A9",  # non-ASCII text
        "token=abc.%FF%FE",  # not UTF-8 at all
        "token=" + "a" * 5000 + ".b",
        "token=a.b&token=c.d",
        "token=" + signed_claims(b'{"case":"in_1","exp":1e400,"use":"unsubscribe"}'),
        "token=" + signed_claims(b'{"case":"in_1","exp":-1e400,"use":"unsubscribe"}'),
        "token=" + signed_claims(b'{"case":{"a":1},"exp":99999999999,"use":"unsubscribe"}'),
        "token=" + signed_claims(b'["in_1"]'),
    ],
)
def test_a_malformed_token_gets_the_refusal_page_never_a_500(
    http: TestClient, store: CaseStore, method: str, query: str
):
    answer = http.request(method, f"/unsubscribe?{query}")

    assert answer.status_code == 400
    assert NOT_WORKING in answer.text
    assert store.suppression("email", EMAIL) is None
