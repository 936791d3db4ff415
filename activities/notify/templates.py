"""Message templates from `config/templates/<language>.toml`, rendered with strict Jinja2.

Every template of every language is rendered once with sample data at start-up, so a missing
template or a misspelt variable stops the worker with its file and name, never a blank
message to a customer. Amounts and dates are written the customer's way (Babel): ¥4,980,
$49.00, 49,00 €; "25 November 2026" or "2026年11月25日", in the customer's time zone.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import Environment, StrictUndefined, TemplateError, UndefinedError
from markupsafe import Markup, escape

from workflows.money import format_money
from workflows.policy import Channel

TEMPLATE_NAMES = [
    "reminder_gentle",
    "reminder_firm",
    "card_update",
    "authentication_needed",
    "final_notice",
    "recovered",
    "cancelled",
    "collections",
]
PARTS = ["subject", "email", "sms", "in_app"]
FOOTER = ("footer", "email")
SAMPLE = {
    "unsubscribe": "https://example.com/unsubscribe?token=sample",
    "name": "Sample Customer",
    "invoice_id": "in_sample",
    "amount": "$49.00",
    "deadline": "25 November 2026",
    "link": "https://example.com/pay?token=sample",
    "case_id": "in_sample",
}


class TemplateConfigError(ValueError):
    """A template is missing or broken; raised at start-up, not at send time."""


class RenderedMessage:
    """A message in one language for one channel: subject (email only), text and HTML."""

    def __init__(self, subject: str, text: str, html: str) -> None:
        self.subject, self.text, self.html = subject, text, html


def babel_locale(locale: str | None, default: str = "en") -> Locale:
    """Babel's locale for a BCP-47 or POSIX tag (en-GB, ja_JP, zh-Hans); `default` if unknown."""
    try:
        return Locale.parse((locale or default).replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return Locale.parse(default)


class Templates:
    """Every template of every language, compiled and checked once."""

    def __init__(self, templates_dir: Path, default_language: str = "en") -> None:
        self.default_language = default_language
        env = Environment(undefined=StrictUndefined, autoescape=False)
        self._compiled = {}
        for path in sorted(templates_dir.glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise TemplateConfigError(f"{path}: not valid TOML: {exc}") from exc
            for name, part in [*((n, p) for n in TEMPLATE_NAMES for p in PARTS), FOOTER]:
                source = data.get(name, {}).get(part)
                if source is None:
                    raise TemplateConfigError(f"{path}: [{name}] has no {part!r}")
                try:
                    template = env.from_string(source)
                    template.render(SAMPLE)
                    template.render({**SAMPLE, "name": "", "deadline": ""})
                except (TemplateError, UndefinedError) as exc:
                    raise TemplateConfigError(f"{path}: [{name}].{part}: {exc}") from exc
                self._compiled[path.stem, name, part] = template
        if not self.languages or default_language not in self.languages:
            raise TemplateConfigError(f"{templates_dir}: no templates for {default_language!r}")
        layout_path = templates_dir / "layout.html"
        try:
            self._layout = Environment(undefined=StrictUndefined, autoescape=True).from_string(
                layout_path.read_text(encoding="utf-8")
            )
        except (OSError, TemplateError) as exc:
            raise TemplateConfigError(f"{layout_path}: {exc}") from exc

    @property
    def languages(self) -> set[str]:
        """The template languages on file, e.g. {"en", "ja", "zh-Hans"}."""
        return {key[0] for key in self._compiled}

    def language_for(self, locale: str | None) -> str:
        """The template language for a customer's locale: zh-CN → zh-Hans, ja-JP → ja."""
        parsed = babel_locale(locale, self.default_language)
        script = parsed.script
        if parsed.language == "zh" and script is None:
            traditional = parsed.territory in {"TW", "HK", "MO"}
            script = "Hant" if traditional else "Hans"
        for candidate in (f"{parsed.language}-{script}", parsed.language):
            if candidate in self.languages:
                return candidate
        return self.default_language

    def render(
        self, language: str, name: str, channel: Channel, variables: dict[str, object]
    ) -> RenderedMessage:
        """Template `name` in `language` for `channel`."""
        text = self._compiled[language, name, channel.value].render(variables)
        if channel is not Channel.EMAIL:
            return RenderedMessage("", text, "")
        subject = self._compiled[language, name, "subject"].render(variables)
        footer = self._compiled[(language, *FOOTER)].render(variables)
        paragraphs = [_linked(p) for p in text.split("\n\n")]
        html = self._layout.render(
            lang=language,
            subject=subject,
            paragraphs=paragraphs,
            link=variables["link"],
            footer=_linked(footer),
        )
        return RenderedMessage(subject, f"{text}\n\n--\n{footer}", html)


def message_variables(
    *,
    name: str | None,
    invoice_id: str,
    amount: int,
    currency: str,
    deadline: datetime | None,
    link: str,
    unsubscribe: str,
    case_id: str,
    locale: str | None,
    time_zone: str | None,
) -> dict[str, object]:
    """The variables every template may use, formatted for the customer's locale and zone."""
    babel = babel_locale(locale)
    local_deadline = ""
    if deadline is not None:
        zone = ZoneInfo(time_zone) if time_zone else UTC
        local_deadline = format_date(deadline.astimezone(zone).date(), "long", locale=babel)
    return {
        "name": name or "",
        "invoice_id": invoice_id,
        "amount": format_money(amount, currency, str(babel)),
        "deadline": local_deadline,
        "link": link,
        "unsubscribe": unsubscribe,
        "case_id": case_id,
    }


def _linked(paragraph: str) -> Markup:
    """A paragraph for HTML: escaped, lines kept, every URL made a link."""
    lines = []
    for line in paragraph.splitlines():
        parts = _URL.split(line)  # odd positions are URLs
        lines.append(
            Markup("").join(
                Markup('<a href="{0}">{0}</a>').format(part) if i % 2 else escape(part)
                for i, part in enumerate(parts)
            )
        )
    return Markup("<br>").join(lines)


_URL = re.compile(r"(https?://[^\s<>\"'()（）,，]+)")
