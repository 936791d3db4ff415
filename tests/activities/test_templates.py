"""Message templates in every language, amounts and dates the customer's way, signed links."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.notify.links import InvalidToken, SelfService, make_token, verify_token
from activities.notify.templates import (
    TEMPLATE_NAMES,
    TemplateConfigError,
    Templates,
    message_variables,
)
from config.settings import CONFIG_DIR, Settings
from workflows.policy import Channel

TEMPLATES_DIR = CONFIG_DIR / "templates"
DEADLINE = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 05:00 on the 26th in Tokyo
LINK = "https://billing.example.com/update-payment-method?token=abc.def"
UNSUBSCRIBE = "https://dunning.example.com/unsubscribe?token=u.v"
LANGUAGES = ["en", "ja", "zh-Hans"]


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(TEMPLATES_DIR)


def variables(locale: str, time_zone: str, deadline: datetime | None = DEADLINE) -> dict:
    return message_variables(
        name="Aiko Tanaka",
        invoice_id="in_1MtE3k2eZvKYlo2C",
        amount=4980,
        amount_paid=0,
        currency="JPY",
        deadline=deadline,
        link=LINK,
        unsubscribe=UNSUBSCRIBE,
        case_id="in_1MtE3k2eZvKYlo2C",
        locale=locale,
        time_zone=time_zone,
    )


def test_the_shipped_languages_are_english_japanese_and_simplified_chinese(templates):
    assert templates.languages == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("with_deadline", [True, False])
def test_every_template_renders_in_every_language_on_every_channel(
    templates, language, name, channel, with_deadline
):
    values = variables(language, "Asia/Tokyo", DEADLINE if with_deadline else None)

    message = templates.render(language, name, channel, values)

    assert message.text.strip()
    # What the message is about: the invoice, its amount, or (a short text) the link to act on.
    assert any(v in message.text for v in ("in_1MtE3k2eZvKYlo2C", values["amount"], LINK))
    assert not re.search(r"{{|}}|{%|%}|None", message.subject + message.text + message.html)
    if channel is Channel.EMAIL:
        assert "in_1MtE3k2eZvKYlo2C" in message.subject
        assert "Aiko Tanaka" in message.text
        assert f'<html lang="{language}">' in message.html
        # Every email carries its opt-out, in the text and the HTML.
        assert message.text.endswith(UNSUBSCRIBE)
        assert f'<a href="{UNSUBSCRIBE}">' in message.html
    else:
        assert (message.subject, message.html) == ("", "")
    if channel is Channel.SMS:
        assert "STOP" in message.text  # every text message carries its opt-out
    if name in {"reminder_gentle", "reminder_firm", "card_update", "final_notice"} and (
        channel is not Channel.IN_APP
    ):
        assert LINK in message.text  # the self-service link where the customer can act


@pytest.mark.parametrize(
    ("locale", "zone", "amount", "deadline"),
    [
        ("en", "America/Los_Angeles", "¥4,980", "November 25, 2026"),
        ("ja-JP", "Asia/Tokyo", "￥4,980", "2026年11月26日"),
        ("zh-CN", "Asia/Shanghai", "JP¥4,980", "2026年11月26日"),
    ],
)
def test_amounts_and_dates_are_written_the_customers_way(locale, zone, amount, deadline):
    values = variables(locale, zone)

    assert values["amount"] == amount
    assert values["deadline"] == deadline  # the customer's own calendar day


def test_final_notice_in_japanese_names_the_amount_and_the_date(templates):
    message = templates.render(
        "ja", "final_notice", Channel.EMAIL, variables("ja-JP", "Asia/Tokyo")
    )

    assert message.subject == "【重要】お支払いに関する最終のご案内（請求書 in_1MtE3k2eZvKYlo2C）"
    assert message.text.startswith("Aiko Tanaka 様")
    assert "￥4,980" in message.text
    assert "2026年11月26日までに" in message.text


def test_chinese_greeting_without_a_name_is_still_polite(templates):
    values = {**variables("zh-CN", "Asia/Shanghai"), "name": ""}

    message = templates.render("zh-Hans", "card_update", Channel.EMAIL, values)

    assert message.text.startswith("您好：")


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("en", "en"),
        ("en-GB", "en"),
        ("ja", "ja"),
        ("ja_JP", "ja"),
        ("zh", "zh-Hans"),
        ("zh-CN", "zh-Hans"),
        ("zh-Hans-SG", "zh-Hans"),
        ("zh-TW", "en"),  # Traditional script: no templates yet, English rather than simplified
        ("fr-CA", "en"),
        ("xx", "en"),
        (None, "en"),
    ],
)
def test_a_customers_locale_picks_the_template_language(templates, locale, language):
    assert templates.language_for(locale) == language


def test_html_escapes_what_it_quotes_and_shows_the_link_as_a_labelled_button(templates):
    values = {**variables("en", "UTC"), "name": "<b>Mallory</b>"}

    message = templates.render("en", "reminder_gentle", Channel.EMAIL, values)

    assert "<b>Mallory</b>" not in message.html
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in message.html
    assert re.search(f'<a href="{re.escape(LINK)}"[^>]*>Pay or update your card</a>', message.html)
    assert f">{LINK}<" not in message.html  # never the raw URL as the link's text
    assert LINK in message.text  # the plain-text part keeps it, on its own line


def test_messages_speak_for_the_company_the_settings_name():
    settings = Settings(
        _env_file=None,
        company_name="Northwind Music",
        support_email="help@northwind.example",
        support_phone="+1 415 555 0100",
        brand_colour="#8a1538",
    )

    message = Templates.from_settings(settings).render(
        "en", "collections", Channel.EMAIL, variables("en", "UTC")
    )

    assert message.text.rstrip().count("Northwind Music") >= 1
    assert "help@northwind.example" in message.text
    assert "+1 415 555 0100" in message.text
    assert "#8a1538" in message.html


def _copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder)
    return folder


def test_a_misspelt_variable_stops_start_up_not_a_send(tmp_path):
    folder = _copy_templates(tmp_path)
    japanese = (folder / "ja.toml").read_text(encoding="utf-8")
    (folder / "ja.toml").write_text(
        japanese.replace("{{ amount }}", "{{ amont }}", 1), encoding="utf-8"
    )

    with pytest.raises(TemplateConfigError, match=r"ja\.toml: \[reminder_gentle\]\..*amont"):
        Templates(folder)


def test_a_missing_template_stops_start_up(tmp_path):
    folder = _copy_templates(tmp_path)
    chinese = (folder / "zh-Hans.toml").read_text(encoding="utf-8")
    (folder / "zh-Hans.toml").write_text(chinese.split("[collections]")[0], encoding="utf-8")

    with pytest.raises(TemplateConfigError, match=r"\[collections\] has no 'subject'"):
        Templates(folder)


@pytest.mark.parametrize(
    ("name", "old", "new", "problem"),
    [
        ("en", "here:\n\n{{ link }}", "here: {{ link }}", "on its own line"),
        ("en", 'button = "Update your card"\n', "", "has a button"),
        (
            "ja",
            "これ以上のお手続きは必要ありません。",
            "これ以上のお手続きは必要ありません。\n\n{{ link }}",
            r"\[recovered\] is an outcome message",
        ),
    ],
)
def test_a_link_the_html_cannot_show_as_a_button_stops_start_up(tmp_path, name, old, new, problem):
    folder = _copy_templates(tmp_path)
    path = folder / f"{name}.toml"
    source = path.read_text(encoding="utf-8")
    assert old in source
    path.write_text(source.replace(old, new, 1), encoding="utf-8")

    with pytest.raises(TemplateConfigError, match=problem):
        Templates(folder)


def test_a_missing_html_layout_stops_start_up(tmp_path):
    folder = _copy_templates(tmp_path)
    (folder / "layout.html").unlink()

    with pytest.raises(TemplateConfigError, match="layout.html"):
        Templates(folder)


def test_a_folder_without_the_default_language_stops_start_up(tmp_path):
    with pytest.raises(TemplateConfigError, match="no templates for 'en'"):
        Templates(tmp_path)


# Self-service links ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_a_self_service_link_names_its_case_until_it_expires():
    service = SelfService(
        url="https://pay.example.com/fix?token={token}",
        secret="s3cret",
        valid_for=timedelta(days=30),
    )

    link = service.link_for("in_42", NOW)
    token = link.removeprefix("https://pay.example.com/fix?token=")

    assert verify_token(token, "s3cret", NOW + timedelta(days=29)) == "in_42"
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, "s3cret", NOW + timedelta(days=30))


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (  # another case's claims under this one's signature
            lambda t: (
                make_token("in_43", "s3cret", NOW, timedelta(1)).rpartition("~")[0]
                + t[t.rindex("~") :]
            ),
            "bad signature",
        ),
        (lambda t: t.rpartition("~")[0], "malformed"),  # no signature
        (lambda t: "not-a-token", "malformed"),
    ],
)
def test_a_tampered_or_malformed_token_is_refused(mangle, reason):
    token = make_token("in_42", "s3cret", NOW, timedelta(days=1))

    with pytest.raises(InvalidToken, match=reason):
        verify_token(mangle(token), "s3cret", NOW)


def test_a_token_signed_with_another_secret_is_refused():
    token = make_token("in_42", "other", NOW, timedelta(days=1))

    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token(token, "s3cret", NOW)
