"""Every message in every language, read the way its customer reads it.

Each template is rendered through the real renderer, signed by a company with a support
contact, with a realistic self-service link: the right amount (what is due, or
for a receipt what was paid), no link once the case is over, the company and how to reach it,
CJK punctuation in Japanese and Chinese, at most two SMS segments, and an HTML part that fits
a 390 px phone and a 600 px desktop column.
"""

from __future__ import annotations

import re

import pytest

from activities.notify.templates import (
    OUTCOMES,
    TEMPLATE_NAMES,
    Brand,
    Templates,
)
from config.settings import CONFIG_DIR
from tests.support.messages import (
    ACCOUNT_LINK,
    BRAND,
    CUSTOMERS,
    GSM_BASIC,
    GSM_EXTENSION,
    INVOICE,
    LINK,
    MESSAGES,
    NEXT,
    OPEN_INVOICES,
    TOTAL,
    UNSUBSCRIBE,
    ZERO,
    ascii_punctuation_by_cjk,
    brand_templates,
    render,
    render_open_invoices,
    sms_segments,
)
from workflows.models import OpenInvoice
from workflows.policy import Channel


@pytest.fixture(scope="module")
def templates() -> Templates:
    return brand_templates()


def carries_link(language: str, name: str, channel: Channel) -> bool:
    return name not in OUTCOMES and channel is not Channel.IN_APP


def short_of_room(language: str, name: str, channel: Channel) -> bool:
    """A Japanese or Chinese SMS with the link: two UCS-2 segments (134 characters) less a
    95-character link leave room for the amount in one short sentence and the opt-out, not
    for the company's name too."""
    return channel is Channel.SMS and language != "en" and carries_link(language, name, channel)


# Amounts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "name", "channel"),
    [(*m, c) for m in MESSAGES for c in Channel],
)
def test_every_message_names_the_amount_due_or_for_a_receipt_the_amount_paid(
    templates, language, name, channel
):
    message = render(templates, language, name, channel)
    words = message.subject + message.text

    assert CUSTOMERS[language][2] in words
    assert not re.search(re.escape(ZERO[language]) + r"(?![\d,.])", words + message.html)


@pytest.mark.parametrize("language", CUSTOMERS)
def test_a_receipt_thanks_for_what_was_paid_never_zero(templates, language):
    for channel in Channel:
        message = render(templates, language, "recovered", channel)

        assert CUSTOMERS[language][2] in message.text  # ¥4,980, ￥4,980, JP¥4,980
        assert ZERO[language] not in message.text


# Links and next steps --------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_an_outcome_message_has_no_pay_link_or_button(templates, language, name, channel):
    message = render(templates, language, name, channel)

    assert "recover?token" not in message.text + message.html
    assert "<a " not in message.html.replace(f'<a href="{UNSUBSCRIBE}">', "").replace(
        f'<a href="mailto:{BRAND.support_email}">', ""
    )


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS])
@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", [n for n in TEMPLATE_NAMES if n not in OUTCOMES])
def test_a_reminder_carries_the_link_to_act_on(templates, language, name, channel):
    message = render(templates, language, name, channel)

    assert LINK in message.text
    if channel is Channel.EMAIL:
        assert re.search(f'<a href="{re.escape(LINK)}"[^>]*>[^<]+</a>', message.html)


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.IN_APP])
@pytest.mark.parametrize("language", CUSTOMERS)
def test_the_final_notice_names_the_date_and_what_happens_next(templates, language, channel):
    message = render(templates, language, "final_notice", channel)

    assert CUSTOMERS[language][3] in message.text
    assert NEXT[language] in message.text


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("language", CUSTOMERS)
def test_the_collections_message_says_whom_to_contact(templates, language, channel):
    message = render(templates, language, "collections", channel)

    assert BRAND.support_email in message.text
    assert BRAND.support_phone in message.text
    without_phone = Templates(
        CONFIG_DIR / "templates", brand=Brand(company="N", support_email="a@b.example")
    )
    text = render(without_phone, language, "collections", channel).text
    assert "a@b.example" in text
    assert not re.search(r"or call|or on\b|または|或致电|None", text)


# Who is writing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "name"), MESSAGES)
def test_every_email_is_signed_by_the_company_with_its_support_contact(templates, language, name):
    message = render(templates, language, name, Channel.EMAIL)

    for part in (message.text, message.html):
        assert BRAND.company in part
        assert BRAND.support_email in part
        assert BRAND.support_phone in part


@pytest.mark.parametrize(("language", "name"), MESSAGES)
def test_every_text_message_names_the_company_where_it_fits(templates, language, name):
    message = render(templates, language, name, Channel.SMS)

    if short_of_room(language, name, Channel.SMS):
        assert BRAND.company not in message.text  # the link leaves no room
    else:
        assert message.text.startswith((f"{BRAND.company}: ", f"【{BRAND.company}】"))


# CJK punctuation -------------------------------------------------------------------------------


def test_the_punctuation_checker_finds_ascii_beside_cjk_and_spares_urls_and_amounts():
    assert ascii_punctuation_by_cjk("請求書(￥4,980)のお支払い: 完了") == ["書(", ")の", "い:"]
    assert ascii_punctuation_by_cjk("请访问：https://a.example/x?token=a.b。回复STOP退订") == []
    assert ascii_punctuation_by_cjk("JP¥4,980。help@northwind.example。") == []


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize(("language", "name"), [m for m in MESSAGES if m[0] != "en"])
def test_japanese_and_chinese_use_full_width_punctuation(templates, language, name, channel):
    message = render(templates, language, name, channel)
    visible = re.sub(r"<[^>]+>", "", message.html.split("<body", 1)[-1])

    assert ascii_punctuation_by_cjk(message.subject + "\n" + message.text + "\n" + visible) == []


@pytest.mark.parametrize("language", ["ja", "zh-Hans"])
def test_gentle_steps_use_no_alarming_words(templates, language):
    alarming = ["督促", "最終警告", "警告", "催收", "債権回収", "最终"]
    for name in ["reminder_gentle", "reminder_firm", "card_update", "authentication_needed"]:
        for channel in Channel:
            message = render(templates, language, name, channel)
            assert not [w for w in alarming if w in message.subject + message.text]


def test_japanese_is_written_politely(templates):
    for name in TEMPLATE_NAMES:
        text = render(templates, "ja", name, Channel.EMAIL).text
        assert re.search("(ます|です|ください|ました|ません)。", text), name


# SMS segments ----------------------------------------------------------------------------------


def test_segments_are_counted_as_a_carrier_counts_them():
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_segments("€" * 80) == 1
    assert sms_segments("€" * 81) == 2
    assert sms_segments("a" * 306) == 2
    assert sms_segments("a" * 307) == 3
    assert sms_segments("あ" * 70) == 1
    assert sms_segments("あ" * 71) == 2
    assert sms_segments("a" * 133 + "’") == 2  # one curly quote turns it all into UCS-2
    assert sms_segments("a" * 134 + "’") == 3


@pytest.mark.parametrize(("language", "name"), MESSAGES)
def test_every_text_message_fits_two_segments_with_a_realistic_link(templates, language, name):
    assert len(LINK) == 95
    message = render(templates, language, name, Channel.SMS)

    assert sms_segments(message.text) <= 2, (sms_segments(message.text), message.text)
    assert "STOP" in message.text
    if language == "en":  # GSM-7: one curly quote or dash would halve the room
        assert set(message.text) <= GSM_BASIC | GSM_EXTENSION


# HTML ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "name"), MESSAGES)
def test_the_html_fits_a_phone_and_a_600px_column(templates, language, name):
    message = render(templates, language, name, Channel.EMAIL)
    html = message.html

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "max-width:600px" in html
    widths = re.findall(r'\bwidth="(\d+)"', html) + re.findall(r"\bwidth:\s*(\d+)px", html)
    widths += re.findall(r"min-width:\s*(\d+)px", html)
    assert all(int(w) <= 600 for w in widths), widths
    body = html.split("<body", 1)[1]
    visible = re.sub(r"<[^>]+>", " ", re.sub(r"<!--.*?-->", "", body, flags=re.S))
    assert "http" not in visible  # links are labelled: never a raw URL to read
    assert f'<a href="{UNSUBSCRIBE}">' in html  # the unsubscribe link stays
    # The plain-text part says the same, without markup.
    assert message.text.strip() and "<" not in message.text
    assert INVOICE in message.text and BRAND.company in message.text


def test_a_logo_is_never_wider_than_the_screen():
    branded = Templates(
        CONFIG_DIR / "templates",
        brand=Brand(company="N", support_email="a@b.example", logo_url="https://n.example/l.png"),
    )
    html = render(branded, "en", "reminder_gentle", Channel.EMAIL).html

    image = re.search(r"<img [^>]*>", html).group(0)
    assert 'src="https://n.example/l.png"' in image and "max-width:100%" in image


@pytest.mark.parametrize(
    ("language", "installment", "day"),
    [
        ("en", "¥2,490", "December 2, 2026"),
        ("ja", "￥2,490", "2026年12月2日"),
        ("zh-Hans", "JP¥2,490", "2026年12月2日"),
    ],
)
def test_a_plan_confirmation_lists_each_installment_and_its_date(
    templates, language, installment, day
):
    message = render(templates, language, "plan_confirmed", Channel.EMAIL)

    schedule = [line for line in message.text.splitlines() if line[:2] in ("1.", "2.")]
    assert len(schedule) == 2 and all(installment in line for line in schedule), schedule
    assert day in schedule[1]


@pytest.mark.parametrize("language", ["en", "ja", "zh-Hans"])
def test_a_promise_confirmation_names_the_promised_day(templates, language):
    message = render(templates, language, "promise_confirmed", Channel.EMAIL)

    assert CUSTOMERS[language][3] in message.subject + message.text  # its day where they live


# Messages of the customer's conversation: every open invoice ----------------------------------

REMINDERS = [
    "reminder_gentle",
    "reminder_firm",
    "card_update",
    "authentication_needed",
    "final_notice",
]
# How each language counts three invoices.
THREE = {"en": "3 invoices", "ja": "3件", "zh-Hans": "3 张"}


@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", REMINDERS)
def test_an_email_about_several_invoices_lists_each_with_the_total_and_one_link(
    templates, language, name
):
    message = render_open_invoices(templates, language, name, Channel.EMAIL)

    lines = [line for line in message.text.splitlines() if line.startswith("in_")]
    assert [line.split()[0] for line in lines] == [i.invoice_id for i in OPEN_INVOICES]
    assert ["4,980" in lines[0], "2,490" in lines[1], "12,000" in lines[2]] == [True] * 3
    assert CUSTOMERS[language][3] in lines[1]  # the deadline its final notice set
    assert TOTAL[language] in message.text
    assert THREE[language].replace(" ", "") in message.subject.replace(" ", "")
    assert ACCOUNT_LINK in message.text and LINK not in message.text
    assert re.search(f'<a href="{re.escape(ACCOUNT_LINK)}"[^>]*>[^<]+</a>', message.html)
    assert "<br>in_1MtF9q2eZvKYlo2D" in message.html  # one line each in the HTML part too


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.IN_APP])
@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", REMINDERS)
def test_a_short_message_about_several_invoices_names_their_count_and_total(
    templates, language, name, channel
):
    message = render_open_invoices(templates, language, name, channel)

    assert THREE[language].replace(" ", "") in message.text.replace(" ", "")
    assert TOTAL[language] in message.text
    assert not [i.invoice_id for i in OPEN_INVOICES if i.invoice_id in message.text]
    assert (ACCOUNT_LINK in message.text) is (channel is Channel.SMS)


@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", REMINDERS)
def test_a_text_about_several_invoices_fits_two_segments(templates, language, name):
    assert len(ACCOUNT_LINK) == 94
    message = render_open_invoices(templates, language, name, Channel.SMS)

    assert sms_segments(message.text) <= 2, (sms_segments(message.text), message.text)
    assert "STOP" in message.text
    if language == "en":
        assert set(message.text) <= GSM_BASIC | GSM_EXTENSION


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("language", ["ja", "zh-Hans"])
@pytest.mark.parametrize("name", REMINDERS)
def test_several_invoices_in_japanese_and_chinese_keep_full_width_punctuation(
    templates, language, name, channel
):
    message = render_open_invoices(templates, language, name, channel)
    visible = re.sub(r"<[^>]+>", "", message.html.split("<body", 1)[-1])

    assert ascii_punctuation_by_cjk(message.subject + "\n" + message.text + "\n" + visible) == []


@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", REMINDERS)
def test_one_open_invoice_reads_as_the_message_about_that_invoice(
    templates, language, name, channel
):
    alone = render_open_invoices(templates, language, name, channel, OPEN_INVOICES[:1])
    plain = render(templates, language, name, channel, link=ACCOUNT_LINK)

    assert alone.text == plain.text and alone.subject == plain.subject
    assert not re.search(r"\b1 invoices|1件|1 张", alone.subject + alone.text)


@pytest.mark.parametrize("language", CUSTOMERS)
def test_invoices_in_different_currencies_are_listed_each_in_its_own_with_no_total(
    templates, language
):
    mixed = [
        *OPEN_INVOICES[:2],
        OpenInvoice(case_id="in_usd", invoice_id="in_usd", amount_due=4900, currency="USD"),
    ]
    for name in REMINDERS:
        for channel in Channel:
            message = render_open_invoices(templates, language, name, channel, mixed)

            assert "19,470" not in message.text and "7,470" not in message.text
            assert "None" not in message.text and "()" not in message.text
            assert "（）" not in message.text and "合计" not in message.text
            if channel is Channel.EMAIL:
                assert re.search(r"in_usd  (US)?\$49\.00", message.text), message.text
