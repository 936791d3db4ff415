"""The late fee and the collections hand-off in every language: each reminder and the final
notice name a fee (in the customer's money) when the case has one and say nothing of it
otherwise; the final notice and the collections message name the agency and whom to contact
when they are set, and the company's own team and support contact when not."""

from __future__ import annotations

import pytest

from activities.notify.templates import Brand, Templates, message_variables
from config.settings import CONFIG_DIR
from tests.support.messages import BRAND, CUSTOMERS, brand_templates, render
from workflows.policy import Channel

REMINDERS = ["reminder_gentle", "reminder_firm", "card_update", "authentication_needed"]
FEE = {"en": "¥500", "ja": "￥500", "zh-Hans": "JP¥500"}
FEE_WORDS = {"en": "late fee", "ja": "延滞料金", "zh-Hans": "滞纳金"}
NEXT_INVOICE = {"en": "next invoice", "ja": "次回のご請求", "zh-Hans": "下一张发票"}
AGENCY = "Acme Recovery"
CONTACT = "+1 555 0100"


@pytest.fixture(scope="module")
def templates() -> Templates:
    return brand_templates()


@pytest.fixture(scope="module")
def agency_templates() -> Templates:
    brand = Brand(
        **{**BRAND.__dict__, "collections_agency": AGENCY, "collections_contact": CONTACT}
    )
    return Templates(CONFIG_DIR / "templates", brand=brand)


@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("name", [*REMINDERS, "final_notice"])
def test_a_fee_is_named_in_its_own_paragraph_and_absent_without_one(templates, language, name):
    with_fee = render(templates, language, name, Channel.EMAIL, late_fee=FEE[language]).text
    without = render(templates, language, name, Channel.EMAIL, late_fee="").text

    paragraph = next(p for p in with_fee.split("\n\n") if FEE[language] in p)
    assert FEE_WORDS[language] in paragraph and NEXT_INVOICE[language] in paragraph
    assert FEE_WORDS[language] not in without
    # Nothing else changes: the message without a fee is the one with it, less that paragraph.
    assert with_fee.replace(f"\n\n{paragraph}", "", 1) == without
    assert "\n\n\n" not in without and "\n\n\n" not in with_fee


@pytest.mark.parametrize("language", CUSTOMERS)
def test_the_fee_is_written_the_customers_way(language):
    locale, zone, _, _ = CUSTOMERS[language]
    common = {
        "name": "",
        "invoice_id": "in_1",
        "amount": 4980,
        "amount_paid": 0,
        "currency": "JPY",
        "deadline": None,
        "link": "https://example.com/p",
        "unsubscribe": "https://example.com/u",
        "case_id": "in_1",
        "locale": locale,
        "time_zone": zone,
    }
    assert message_variables(**common, late_fee=500)["late_fee"] == FEE[language]
    assert message_variables(**common, late_fee=None)["late_fee"] == ""


@pytest.mark.parametrize("language", CUSTOMERS)
@pytest.mark.parametrize("channel", list(Channel))
def test_collections_message_names_the_agency_the_date_and_whom_to_contact(
    templates, agency_templates, language, channel
):
    _, _, _, deadline = CUSTOMERS[language]
    named = render(agency_templates, language, "collections", channel)
    plain = render(templates, language, "collections", channel)

    assert AGENCY in named.text and CONTACT in named.text
    assert AGENCY not in plain.text and CONTACT not in plain.text
    assert BRAND.support_email in plain.text
    if channel is Channel.EMAIL:
        assert deadline in named.text and deadline in plain.text
        assert AGENCY in named.subject or language == "ja"


@pytest.mark.parametrize("language", CUSTOMERS)
def test_final_notice_names_the_agency_and_whom_to_contact_after_the_date(
    templates, agency_templates, language
):
    _, _, _, deadline = CUSTOMERS[language]
    named = render(agency_templates, language, "final_notice", Channel.EMAIL).text
    plain = render(templates, language, "final_notice", Channel.EMAIL).text

    assert deadline in named and AGENCY in named and CONTACT in named
    assert AGENCY not in plain and CONTACT not in plain
