"""The message preferences page (/preferences, and /unsubscribe for old links): what each choice
stops, in the customer's language, each with its undo, and nothing lifted that the page did
not stop."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.dunning import DunningActivities
from activities.notify.links import make_token
from activities.store import CASE_SCOPE, CaseStore, CustomerProfile
from config.settings import Settings
from webhooks.app import create_app
from workflows.models import CaseRecord, CaseStatus, DeliveryStatus, NotifyRequest
from workflows.policy import Channel

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette prefers httpx2; httpx works
    from starlette.testclient import TestClient

SECRET = "preferences-test-secret"
EMAIL = "Mei.Lin@Example.com"
PHONE = "+15555550123"


async def temporal_is_down():
    raise RuntimeError("message preferences never need Temporal")


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    store = CaseStore(f"sqlite:///{tmp_path / 'dunning.db'}")
    store.create_schema()
    customer = CustomerProfile(customer_id="cus_1", email=EMAIL, phone=PHONE, locale="ja-JP")
    store.upsert_customer(customer)
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
            opened_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    return store


@pytest.fixture
def http(tmp_path: Path, store: CaseStore) -> TestClient:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        self_service_secret=SECRET,
        company_name="Sakura Books",
        _env_file=None,
    )
    return TestClient(create_app(settings, temporal_is_down, store))


def token(case_id: str = "in_1", use: str = "unsubscribe") -> str:
    return make_token(case_id, SECRET, datetime.now(UTC), timedelta(days=365), use=use)


def choose(http: TestClient, action: str, choice: str, lang: str = "en"):
    form = {"token": token(), "lang": lang, "action": action, "choice": choice}
    return http.post("/preferences", data=form)


def stopped(store: CaseStore) -> dict[str, bool]:
    contacts = {"email": EMAIL, "sms": PHONE, "in_app": "cus_1"}
    return {channel: store.suppression(channel, c) is not None for channel, c in contacts.items()}


NONE = {"email": False, "sms": False, "in_app": False}


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        (None, ["受け取るお支払いメッセージを選ぶ", "お支払いメールを停止する", "Sakura Books"]),
        ("en", ["Stop payment emails", "Stop payment texts", "Stop all payment messages"]),
        ("zh-Hans", ["停止付款邮件", "停止付款短信", "停止所有付款消息"]),
    ],
)
def test_the_page_says_what_each_choice_stops_in_the_customers_language(
    http: TestClient, store: CaseStore, lang, words
):
    query = f"token={token()}" + (f"&lang={lang}" if lang else "")
    page = http.get(f"/preferences?{query}")

    assert page.status_code == 200
    assert f'<html lang="{lang or "ja"}">' in page.text  # the customer's locale is ja-JP
    for word in words:
        assert word in page.text
    assert "M•••@example.com" in page.text and "•••0123" in page.text  # recognisable, masked
    assert EMAIL not in page.text and PHONE not in page.text
    assert stopped(store) == NONE  # looking changes nothing


def test_the_english_page_names_exactly_what_each_choice_stops(http: TestClient):
    page = http.get(f"/preferences?token={token()}&lang=en").text

    assert "every payment reminder and payment update we email to this address" in page
    assert "every payment reminder and payment update we text to this number" in page
    assert "email, text messages and messages in your account" in page


def test_stopping_sms_stops_sms_alone_and_undo_starts_it_again(http: TestClient, store):
    done = choose(http, "stop", "sms")

    assert done.status_code == 200
    assert "Done — we won&#39;t text you about payments any more." in done.text
    assert stopped(store) == {**NONE, "sms": True}
    row = store.suppression("sms", PHONE)
    assert (row.reason, row.source) == ("unsubscribed", "link")
    assert 'id="resume-sms"' in done.text and 'id="stop-sms"' not in done.text

    undone = choose(http, "resume", "sms")

    assert "Payment texts are on again." in undone.text
    assert stopped(store) == NONE
    assert 'id="stop-sms"' in undone.text


def test_stopping_all_stops_every_channel_and_undo_starts_them_all(http: TestClient, store):
    done = choose(http, "stop", "all", lang="ja")

    assert "お支払いに関するメッセージをすべて停止しました。" in done.text
    assert stopped(store) == {"email": True, "sms": True, "in_app": True}
    assert 'id="stop-all"' not in done.text and 'id="resume-all"' in done.text

    choose(http, "resume", "all")

    assert stopped(store) == NONE


def test_undo_never_lifts_what_the_page_did_not_stop(http: TestClient, store: CaseStore):
    store.suppress("email", EMAIL, "bounced", source="sendgrid")
    page = http.get(f"/preferences?token={token()}&lang=en")

    assert 'id="email-elsewhere"' in page.text and 'id="resume-email"' not in page.text

    choose(http, "resume", "email")
    choose(http, "stop", "all")
    choose(http, "resume", "all")

    row = store.suppression("email", EMAIL)
    assert (row.reason, row.source) == ("bounced", "sendgrid")  # kept, reason and all
    assert stopped(store) == {**NONE, "email": True}


@pytest.mark.parametrize("path", ["/preferences", "/unsubscribe"])
def test_both_paths_take_a_mail_clients_one_click_post(http: TestClient, store, path):
    done = http.post(f"{path}?token={token()}", data={"List-Unsubscribe": "One-Click"})

    assert done.status_code == 200
    assert stopped(store) == {**NONE, "email": True}


def test_a_choice_the_page_does_not_offer_changes_nothing(http: TestClient, store):
    answer = choose(http, "stop", "carrier-pigeon")

    assert answer.status_code == 400
    assert stopped(store) == NONE


def test_a_recovery_page_link_cannot_change_preferences(http: TestClient, store):
    answer = http.post(f"/preferences?token={token(use='pay')}", data={"choice": "all"})

    assert answer.status_code == 400
    assert stopped(store) == NONE


def test_a_customer_without_a_phone_is_offered_no_sms(http: TestClient, store: CaseStore):
    store.upsert_customer(CustomerProfile(customer_id="cus_1", email=EMAIL, locale="en"))

    page = http.get(f"/preferences?token={token()}")
    choose(http, "stop", "all")

    assert 'id="sms-heading"' not in page.text and 'id="stop-email"' in page.text
    assert stopped(store) == {"email": True, "sms": False, "in_app": True}


def test_stopping_one_invoice_silences_only_that_case_on_every_channel(
    tmp_path: Path, store: CaseStore, http: TestClient
):
    page = http.get(f"/preferences?token={token()}&lang=en")
    assert "Only invoice in_1" in page.text and 'id="stop-case"' in page.text

    done = choose(http, "stop", "case")

    assert done.status_code == 200
    assert "any more messages about this invoice" in done.text
    assert 'id="resume-case"' in done.text and stopped(store) == NONE  # the contacts stay on
    # The notify activity sends nothing about in_1, on any channel, and in_2 as before.
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'dunning.db'}",
        self_service_secret=SECRET,
        _env_file=None,
    )
    activities = DunningActivities.from_settings(settings)
    muted = activities.notify(reminder("in_1"))
    other = activities.notify(reminder("in_2"))
    assert {d.status for d in muted.deliveries} == {DeliveryStatus.SKIPPED}
    assert all("unsubscribed (link)" in d.detail for d in muted.deliveries)
    assert {d.status for d in other.deliveries} == {DeliveryStatus.SENT}

    undone = choose(http, "resume", "case")
    assert "Messages about this invoice are on again." in undone.text
    assert store.suppression(CASE_SCOPE, "in_1") is None


def reminder(case_id: str) -> NotifyRequest:
    return NotifyRequest(
        case_id=case_id,
        invoice_id=case_id,
        customer_id="cus_1",
        step="reminder-1",
        template="reminder_gentle",
        channels=[Channel.EMAIL, Channel.SMS, Channel.IN_APP],
        amount_due=4980,
        currency="JPY",
    )
