"""Message templates from `config/templates/<language>.toml`, rendered with strict Jinja2.

Every template of every language is rendered once with sample data at start-up, so a missing
template or a misspelt variable stops the worker with its file and name, never a blank
message to a customer. Amounts and dates are written the customer's way (Babel): ¥4,980,
$49.00, 49,00 €; "25 November 2026" or "2026年11月25日", in the customer's time zone.

Every message speaks for the company (`Brand`): every email ends with the language's
signature (the company and how to reach support) and an unsubscribe footer. The HTML part
fits a phone: a fluid column at most 600 px wide, the self-service link a labelled button.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton
from jinja2 import Environment, StrictUndefined, Template, TemplateError, UndefinedError
from markupsafe import Markup, escape

from config.settings import CONFIG_DIR, Settings
from workflows.models import Installment, OpenInvoice
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
    "plan_confirmed",
    "promise_confirmed",
]
# Pre-dunning notices: before any payment failed, so no invoice and no amount; their link is
# the customer's account page.
NOTICE_TEMPLATE_NAMES = ["card_expiring", "renewal_upcoming"]
# Outcome messages: the case is over, so they carry no link and no button.
OUTCOMES = {"recovered", "cancelled", "collections"}
PARTS = ["subject", "email", "sms", "in_app"]
BUTTON = "button"  # the label of an email's self-service button, in the message's language
SIGNATURE = ("signature", "email")
FOOTER = ("footer", "email")
FOOTER_LINK = ("footer", "unsubscribe")
# One line of a message's list of open invoices: `invoice_id`, `amount`, `deadline` (or "").
INVOICE_LINE = ("invoices", "line")
SAMPLE = {
    "unsubscribe": "https://example.com/unsubscribe?token=sample",
    "name": "Sample Customer",
    "invoice_id": "in_sample",
    "amount": "$49.00",
    "amount_paid": "$49.00",
    "deadline": "25 November 2026",
    "link": "https://example.com/pay?token=sample",
    "case_id": "in_sample",
    "company": "Sample Co",
    "support_email": "help@example.com",
    "support_phone": "+1 555 0100",
    "schedule": "1. $24.50 on 25 November 2026\n2. $24.50 on 25 December 2026",
    "installment_count": 2,
    "promised_date": "25 November 2026",
    "card_brand": "Visa",
    "card_last4": "4242",
    "expiry_month": "November 2026",
    "renewal_date": "25 November 2026",
    "late_fee": "$5.00",
    "collections_agency": "Sample Recovery Ltd",
    "collections_contact": "collections@example.com",
    "invoices": "in_sample  $49.00",
    "invoice_count": 1,
    "total": "$49.00",
}
# A message of the customer's conversation: three open invoices, one link that pays them all.
SAMPLE_INVOICES = {
    "invoices": "in_sample  $49.00\nin_second  $49.00 (25 November 2026)\nin_third  $49.00",
    "invoice_count": 3,
    "total": "$147.00",
    "link": "https://example.com/account?token=sample",
}


class TemplateConfigError(ValueError):
    """A template is missing or broken; raised at start-up, not at send time."""


class RenderedMessage:
    """A message in one language for one channel: subject (email only), text and HTML."""

    def __init__(self, subject: str, text: str, html: str) -> None:
        self.subject, self.text, self.html = subject, text, html


def _default(field: str) -> str | None:
    return Settings.model_fields[field].default


@dataclass(frozen=True)
class Brand:
    """Who the messages speak for: named in every message, with how to reach support."""

    company: str = _default("company_name")
    support_email: str = _default("support_email")
    support_phone: str | None = _default("support_phone")
    colour: str = _default("brand_colour")
    logo_url: str | None = _default("logo_url")
    collections_agency: str | None = _default("collections_agency_name")
    collections_contact: str | None = _default("collections_contact")

    @classmethod
    def from_settings(cls, settings: Settings) -> Brand:
        """The brand the settings name (COMPANY_NAME, SUPPORT_EMAIL, ...)."""
        return cls(
            company=settings.company_name,
            support_email=settings.support_email,
            support_phone=settings.support_phone,
            colour=settings.brand_colour,
            logo_url=settings.logo_url,
            collections_agency=settings.collections_agency_name,
            collections_contact=settings.collections_contact,
        )

    def variables(self) -> dict[str, object]:
        """What the templates may say about the company: company, support_email, support_phone,
        and whom a debt in collections concerns: collections_agency, collections_contact
        (empty when unset: the company's own team, its support contact)."""
        return {
            "company": self.company,
            "support_email": self.support_email,
            "support_phone": self.support_phone or "",
            "collections_agency": self.collections_agency or "",
            "collections_contact": self.collections_contact or "",
        }


def babel_locale(locale: str | None, default: str = "en") -> Locale:
    """Babel's locale for a BCP-47 or POSIX tag (en-GB, ja_JP, zh-Hans); `default` if unknown."""
    try:
        return Locale.parse((locale or default).replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return Locale.parse(default)


class Templates:
    """Every template of every language, compiled and checked once."""

    def __init__(
        self, templates_dir: Path, default_language: str = "en", brand: Brand | None = None
    ) -> None:
        self.default_language = default_language
        self.brand = brand or Brand()
        env = Environment(undefined=StrictUndefined, autoescape=False)
        self._compiled: dict[tuple[str, str, str], Template] = {}
        for path in sorted(templates_dir.glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise TemplateConfigError(f"{path}: not valid TOML: {exc}") from exc
            names = [*TEMPLATE_NAMES, *NOTICE_TEMPLATE_NAMES]
            required = [(n, p) for n in names for p in PARTS]
            buttons = [(n, BUTTON) for n in names if BUTTON in data.get(n, {})]
            parts = [*required, SIGNATURE, FOOTER, FOOTER_LINK, INVOICE_LINE, *buttons]
            for name, part in parts:
                source = data.get(name, {}).get(part)
                if source is None:
                    raise TemplateConfigError(f"{path}: [{name}] has no {part!r}")
                try:
                    template = env.from_string(source)
                    for sample in _samples():
                        template.render(sample)
                except (TemplateError, UndefinedError) as exc:
                    raise TemplateConfigError(f"{path}: [{name}].{part}: {exc}") from exc
                self._compiled[path.stem, name, part] = template
            for name in names:
                _check_link(path, name, self._compiled, path.stem)
        if not self.languages or default_language not in self.languages:
            raise TemplateConfigError(f"{templates_dir}: no templates for {default_language!r}")
        layout_path = templates_dir / "layout.html"
        try:
            self._layout = Environment(undefined=StrictUndefined, autoescape=True).from_string(
                layout_path.read_text(encoding="utf-8")
            )
        except (OSError, TemplateError) as exc:
            raise TemplateConfigError(f"{layout_path}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> Templates:
        """The shipped templates, speaking for the company the settings name."""
        return cls(CONFIG_DIR / "templates", brand=Brand.from_settings(settings))

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
        """Template `name` in `language` for `channel`, signed by the brand.

        An email has a plain-text part (body, signature, unsubscribe footer) and an HTML part
        in which the self-service link is a button labelled in the message's language."""
        variables = {**self.brand.variables(), **variables}
        if isinstance(variables.get("invoices"), list):
            variables["invoices"] = self.invoice_list(language, variables["invoices"])
        text = self._compiled[language, name, channel.value].render(variables)
        if channel is not Channel.EMAIL:
            return RenderedMessage("", text, "")
        subject = self._compiled[language, name, "subject"].render(variables)
        signature = self._compiled[(language, *SIGNATURE)].render(variables)
        footer = self._compiled[(language, *FOOTER)].render(variables)
        button = self._compiled.get((language, name, BUTTON))
        link = str(variables["link"])
        blocks = [
            {"button": paragraph.strip() == link, "html": self._linked(paragraph)}
            for paragraph in f"{text}\n\n{signature}".split("\n\n")
        ]
        html = self._layout.render(
            lang=language,
            subject=subject,
            blocks=blocks,
            link=link,
            button=button.render(variables) if button else "",
            unsubscribe=variables["unsubscribe"],
            unsubscribe_label=self._compiled[(language, *FOOTER_LINK)].render(variables),
            **asdict(self.brand),
        )
        return RenderedMessage(subject, f"{text}\n\n{signature}\n\n--\n{footer}", html)

    def invoice_list(self, language: str, invoices: list[dict[str, str]]) -> str:
        """The open invoices `message_variables` gives, one per line in the language's words
        (`[invoices].line`): what `render` makes of a list, and a provider's own template
        (SendGrid's dynamic data) reads as text."""
        line = self._compiled[(language, *INVOICE_LINE)]
        return "\n".join(line.render(invoice) for invoice in invoices)

    def _linked(self, paragraph: str) -> Markup:
        """A paragraph for HTML: escaped, lines kept, URLs and the support address linked."""
        email = self.brand.support_email
        lines = []
        for line in paragraph.strip().splitlines():
            parts = _URL.split(line)  # odd positions are URLs
            html = Markup("").join(
                Markup('<a href="{0}">{0}</a>').format(part) if i % 2 else escape(part)
                for i, part in enumerate(parts)
            )
            if email:
                mailto = Markup('<a href="mailto:{0}">{0}</a>').format(email)
                html = Markup(html.replace(escape(email), mailto))
            lines.append(html)
        return Markup("<br>").join(lines)


def _samples() -> list[dict[str, object]]:
    """Sample variables a template must render with: all set, and the optional ones empty."""
    unset = ("name", "deadline", "support_phone", "late_fee", "collections_agency")
    unset += ("card_brand", "card_last4")
    return [
        SAMPLE,
        {**SAMPLE, **dict.fromkeys(unset, ""), "collections_contact": ""},
        {**SAMPLE, **SAMPLE_INVOICES},
        {**SAMPLE, **SAMPLE_INVOICES, "total": "", "deadline": ""},
    ]


def _check_link(path: Path, name: str, compiled: dict, language: str) -> None:
    """An email shows the self-service link as a button: the link stands alone in its
    paragraph and the template names the button; an outcome message has no link at all.
    Checked for one invoice and for several (a message of the customer's conversation)."""
    has_button = (language, name, BUTTON) in compiled
    for sample in (SAMPLE, {**SAMPLE, **SAMPLE_INVOICES}):
        link = sample["link"]
        email = compiled[language, name, "email"].render(sample)
        paragraphs = [p.strip() for p in email.split("\n\n")]
        if name in OUTCOMES and (link in email or has_button):
            raise TemplateConfigError(f"{path}: [{name}] is an outcome message: no link, no button")
        if any(link in p and p != link for p in paragraphs):
            raise TemplateConfigError(f"{path}: [{name}].email: put {{{{ link }}}} on its own line")
        if (link in paragraphs) != has_button:
            raise TemplateConfigError(
                f"{path}: [{name}]: an email with {{{{ link }}}} has a button"
            )


def message_variables(
    *,
    name: str | None,
    invoice_id: str,
    amount: int,
    amount_paid: int,
    currency: str,
    deadline: datetime | None,
    link: str,
    unsubscribe: str,
    case_id: str,
    locale: str | None,
    time_zone: str | None,
    installments: list[Installment] | None = None,
    promised_for: datetime | None = None,
    open_invoices: list[OpenInvoice] | None = None,
    late_fee: int | None = None,
) -> dict[str, object]:
    """The variables every template may use, formatted for the customer's locale and zone:
    `amount` is what is still due, `amount_paid` what has been paid (a receipt's figure),
    `schedule` a payment plan's installments one per line, `promised_date` a promise's day,
    `late_fee` the case's late fee (empty when it has none).

    `invoices` lists the customer's open invoices (more than one in `open_invoices`: a
    message of their conversation; else this invoice alone), each its id, amount and
    deadline (`Templates.render` writes them one per line); `invoice_count` counts them and
    `total` is their sum, or empty when their currencies differ (each line has its own)."""
    babel = babel_locale(locale)
    zone = ZoneInfo(time_zone) if time_zone else UTC

    def local_date(moment: datetime | None) -> str:
        return format_date(moment.astimezone(zone).date(), "long", locale=babel) if moment else ""

    schedule = "\n".join(
        f"{i.number}. {format_money(i.amount, currency, str(babel))}  {local_date(i.due_at)}"
        for i in installments or []
    )
    listed = open_invoices if open_invoices and len(open_invoices) > 1 else []
    if not listed:
        own = OpenInvoice(
            case_id=case_id,
            invoice_id=invoice_id,
            amount_due=amount,
            currency=currency,
            deadline=deadline,
        )
        listed = [own]
    currencies = {invoice.currency for invoice in listed}
    total = sum(invoice.amount_due for invoice in listed)
    return {
        "invoices": [
            {
                "invoice_id": invoice.invoice_id,
                "amount": format_money(invoice.amount_due, invoice.currency, str(babel)),
                "deadline": local_date(invoice.deadline),
            }
            for invoice in listed
        ],
        "invoice_count": len(listed),
        "total": format_money(total, currencies.pop(), str(babel)) if len(currencies) == 1 else "",
        "schedule": schedule,
        "installment_count": len(installments or []),
        "promised_date": local_date(promised_for),
        "name": name or "",
        "invoice_id": invoice_id,
        "amount": format_money(amount, currency, str(babel)),
        "amount_paid": format_money(amount_paid, currency, str(babel)),
        "deadline": local_date(deadline),
        "link": link,
        "unsubscribe": unsubscribe,
        "case_id": case_id,
        "late_fee": format_money(late_fee, currency, str(babel)) if late_fee else "",
    }


_URL = re.compile(r"(https?://[^\s<>\"'()（）,，、。]+)")


CARD_BRANDS = {
    "amex": "American Express",
    "diners": "Diners Club",
    "discover": "Discover",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}
"""How a card brand is written (Stripe's `card.brand` codes); any other as given."""


def notice_variables(
    *,
    name: str | None,
    link: str,
    unsubscribe: str,
    notice_id: str,
    card_brand: str | None,
    card_last4: str | None,
    event_at: datetime,
    locale: str | None,
    time_zone: str | None,
) -> dict[str, object]:
    """The variables of a pre-dunning notice: the card's brand and last 4 digits (empty when
    unknown; never more of the number), `expiry_month` (the month a card expiring at
    `event_at` is marked with: "March 2027", "2027年3月") and `renewal_date` (`event_at`'s day
    in the customer's time zone)."""
    babel = babel_locale(locale)
    zone = ZoneInfo(time_zone) if time_zone else UTC
    marked = (event_at.astimezone(UTC) - timedelta(days=1)).date()  # expires at the month's end
    brand = (card_brand or "").lower()
    return {
        "name": name or "",
        "link": link,
        "unsubscribe": unsubscribe,
        "case_id": notice_id,
        "card_brand": CARD_BRANDS.get(brand, card_brand or ""),
        "card_last4": card_last4 or "",
        "expiry_month": format_skeleton("yMMMM", marked, locale=babel),
        "renewal_date": format_date(event_at.astimezone(zone).date(), "long", locale=babel),
    }
