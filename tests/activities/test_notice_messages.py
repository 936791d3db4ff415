"""Every pre-dunning notice in every language, read the way its customer reads it: the card's
brand and last 4 digits (never more) or plain words when unknown, the expiry month or the
renewal day written the customer's way, the account link as the email's button and in the
text message, the company's signature and opt-out, full-width punctuation in Japanese and
Chinese, and at most two SMS segments."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from activities.notify.links import make_token
from activities.notify.templates import NOTICE_TEMPLATE_NAMES, notice_variables
from tests.support.messages import (
    BRAND,
    CUSTOMERS,
    GSM_BASIC,
    GSM_EXTENSION,
    UNSUBSCRIBE,
    ascii_punctuation_by_cjk,
    brand_templates,
    sms_segments,
)
from workflows.policy import Channel

# The account page's link as a customer gets it: a customer id of Stripe's length.
ACCOUNT_LINK = "https://pay.northwind.example/account?token=" + make_token(
    "cus_NffrFeUfNV2Hib", "secret", datetime(2026, 11, 1, tzinfo=UTC), timedelta(days=30), "account"
)
EXPIRES = datetime(2026, 12, 1, tzinfo=UTC)  # a card marked 11/26
RENEWS = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
# language: (the expiry month, the renewal day in the customer's zone)
WRITTEN = {
    "en": ("November 2026", "November 25, 2026"),
    "ja": ("2026年11月", "2026年11月26日"),
    "zh-Hans": ("2026年11月", "2026年11月26日"),
}
NOTICES = [(language, name) for language in CUSTOMERS for name in NOTICE_TEMPLATE_NAMES]


@pytest.fixture(scope="module")
def templates():
    return brand_templates()


def render(templates, language: str, name: str, channel: Channel, last4: str | None = "4242"):
    locale, zone, _, _ = CUSTOMERS[language]
    values = notice_variables(
        name="Aiko Tanaka",
        link=ACCOUNT_LINK,
        unsubscribe=UNSUBSCRIBE,
        notice_id="card-pm_1",
        card_brand="visa" if last4 else None,
        card_last4=last4,
        event_at=EXPIRES if name == "card_expiring" else RENEWS,
        locale=locale,
        time_zone=zone,
    )
    return templates.render(language, name, channel, values)


@pytest.mark.parametrize("last4", ["4242", None])
@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(("language", "name"), NOTICES)
def test_every_notice_renders_in_every_language_on_every_channel(
    templates, language, name, channel, last4
):
    message = render(templates, language, name, channel, last4)
    words = message.subject + message.text
    month, day = WRITTEN[language]

    assert not re.search(r"{{|}}|{%|%}|None|  ", words)
    assert (month if name == "card_expiring" else day) in message.text
    if channel is Channel.EMAIL or (channel is Channel.IN_APP and name == "card_expiring"):
        assert ("4242" in words) == (last4 is not None)
        assert ("Visa" in words) == (last4 is not None)
    if channel is not Channel.IN_APP:
        assert ACCOUNT_LINK in message.text  # where the customer updates the card
    if channel is Channel.EMAIL:
        assert "Aiko Tanaka" in message.text
        assert BRAND.support_email in message.text
        assert message.text.endswith(UNSUBSCRIBE)
        assert f'href="{ACCOUNT_LINK}"' in message.html  # the button
    if channel is Channel.SMS:
        assert "STOP" in message.text
        assert sms_segments(message.text) <= 2, message.text
        if language == "en":
            assert set(message.text) <= GSM_BASIC | GSM_EXTENSION


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(("language", "name"), [n for n in NOTICES if n[0] != "en"])
def test_japanese_and_chinese_notices_use_full_width_punctuation(
    templates, language, name, channel
):
    message = render(templates, language, name, channel)

    assert ascii_punctuation_by_cjk(message.subject + "\n" + message.text) == []


def test_a_notice_never_shows_more_of_the_card_than_its_last_four_digits(templates):
    message = render(templates, "en", "card_expiring", Channel.EMAIL)

    assert message.subject == "Your Visa ending in 4242 expires at the end of November 2026"
    assert not re.search(r"\d{5,}", message.text.replace(ACCOUNT_LINK, ""))
