"""Every message as its customer gets it: the real renderer over a company with a support
contact, a customer per language, a realistic link and a plan; shared by the tests that read
the messages (tests/activities) and those that open them in a browser (tests/browser)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from activities.notify.links import make_token
from activities.notify.templates import (
    TEMPLATE_NAMES,
    Brand,
    RenderedMessage,
    Templates,
    message_variables,
)
from config.settings import CONFIG_DIR
from workflows.models import Installment, OpenInvoice
from workflows.policy import Channel

BRAND = Brand(
    company="Northwind Music",
    support_email="help@northwind.example",
    support_phone="+81 3-1234-5678",
    colour="#8a1538",
)
INVOICE = "in_1MtE3k2eZvKYlo2C"
# A real link: the page on a public host, with a year-long token for a Stripe-length invoice id.
LINK = "https://pay.northwind.example/recover?token=" + make_token(
    INVOICE, "secret", datetime(2026, 11, 1, tzinfo=UTC), timedelta(days=365)
)
UNSUBSCRIBE = "https://pay.northwind.example/unsubscribe?token=u.v"
DEADLINE = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
# A plan for the 4,980 due: its confirmation lists each installment, the customer's way.
PLAN = [
    Installment(number=1, amount=2490, due_at=datetime(2026, 11, 2, 9, tzinfo=UTC)),
    Installment(number=2, amount=2490, due_at=datetime(2026, 12, 2, 9, tzinfo=UTC)),
]
# language: (the customer's locale, time zone, 4980 JPY written their way, the deadline there)
CUSTOMERS = {
    "en": ("en-US", "America/New_York", "¥4,980", "November 25, 2026"),
    "ja": ("ja-JP", "Asia/Tokyo", "￥4,980", "2026年11月26日"),
    "zh-Hans": ("zh-CN", "Asia/Shanghai", "JP¥4,980", "2026年11月26日"),
}
ZERO = {"en": "¥0", "ja": "￥0", "zh-Hans": "JP¥0"}
# What the final notice says happens next.
NEXT = {"en": "collections team", "ja": "回収", "zh-Hans": "催收部门"}
MESSAGES = [(lang, name) for lang in CUSTOMERS for name in TEMPLATE_NAMES]


def render(
    templates: Templates, language: str, name: str, channel: Channel, **overrides: object
) -> RenderedMessage:
    locale, zone, _, _ = CUSTOMERS[language]
    recovered = name == "recovered"
    values = message_variables(
        name="Aiko Tanaka",
        invoice_id=INVOICE,
        amount=0 if recovered else 4980,  # a paid invoice has nothing left due
        amount_paid=4980 if recovered else 0,
        currency="JPY",
        deadline=DEADLINE,
        link=LINK,
        unsubscribe=UNSUBSCRIBE,
        case_id=INVOICE,
        locale=locale,
        time_zone=zone,
        installments=PLAN if name == "plan_confirmed" else None,
        promised_for=DEADLINE if name == "promise_confirmed" else None,
    )
    return templates.render(language, name, channel, {**values, **overrides})


def brand_templates() -> Templates:
    """The shipped templates, signed by `BRAND`."""
    return Templates(CONFIG_DIR / "templates", brand=BRAND)


CUSTOMER = "cus_NffrFeUfNV2Hib"
# The customer's account page, where a message naming several open invoices points.
ACCOUNT_LINK = "https://pay.northwind.example/account?token=" + make_token(
    CUSTOMER, "secret", datetime(2026, 11, 1, tzinfo=UTC), timedelta(days=365), use="account"
)
# Three open invoices of one customer (4,980 + 2,490 + 12,000 = 19,470); the second has a
# deadline set by its final notice.
OPEN_INVOICES = [
    OpenInvoice(case_id=INVOICE, invoice_id=INVOICE, amount_due=4980, currency="JPY"),
    OpenInvoice(
        case_id="in_1MtF9q2eZvKYlo2D",
        invoice_id="in_1MtF9q2eZvKYlo2D",
        amount_due=2490,
        currency="JPY",
        deadline=DEADLINE,
    ),
    OpenInvoice(
        case_id="in_1MtG7w2eZvKYlo2E",
        invoice_id="in_1MtG7w2eZvKYlo2E",
        amount_due=12000,
        currency="JPY",
    ),
]
# The total of OPEN_INVOICES, written each customer's way.
TOTAL = {"en": "¥19,470", "ja": "￥19,470", "zh-Hans": "JP¥19,470"}


def render_open_invoices(
    templates: Templates,
    language: str,
    name: str,
    channel: Channel,
    invoices: list[OpenInvoice] = OPEN_INVOICES,
) -> RenderedMessage:
    """`name` as a message of the customer's conversation, naming every open invoice, with
    the account page's link."""
    locale, zone, _, _ = CUSTOMERS[language]
    values = message_variables(
        name="Aiko Tanaka",
        invoice_id=INVOICE,
        amount=4980,
        amount_paid=0,
        currency="JPY",
        deadline=DEADLINE,
        link=ACCOUNT_LINK,
        unsubscribe=UNSUBSCRIBE,
        case_id=INVOICE,
        locale=locale,
        time_zone=zone,
        open_invoices=invoices,
    )
    return templates.render(language, name, channel, values)


# CJK punctuation and SMS segments: what a message is checked for, in any test.

# Kana, CJK ideographs, CJK symbols and full-width forms.
CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
ASCII_BY_CJK = re.compile(f"[{CJK}][,.:()!?]|[,.:()!?][{CJK}]")
# Not prose: URLs, e-mail addresses, amounts and phone numbers keep their ASCII punctuation.
NOT_PROSE = re.compile(
    r"https?://\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|[A-Z]{0,3}[¥￥$€][\d.,]*\d|\+[\d -]+"
)


def ascii_punctuation_by_cjk(text: str) -> list[str]:
    """Each place `text` puts ASCII punctuation beside a CJK character: the pair, e.g. "書("."""
    return ASCII_BY_CJK.findall(NOT_PROSE.sub(" ", text))


GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = set("\f^{}\\[~]|€")  # an escape and the character: two septets each


def sms_segments(text: str) -> int:
    """How many segments a carrier bills for `text`: GSM-7 when every character is in the
    GSM 03.38 alphabet (160 septets, or 153 per part), otherwise UCS-2 (70 UTF-16 units, or 67
    per part)."""
    if set(text) <= GSM_BASIC | GSM_EXTENSION:
        units = len(text) + sum(c in GSM_EXTENSION for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)
