"""The customer's pages: HTML from `webhooks/templates/`, words from `config/pages/<language>/`.

Every page extends ``base.html`` (the brand's colour and logo, the company's name, the
support contact, a language switch that keeps the link's token). Its words come from every
``*.toml`` in the language's folder, each file a namespace named after it (``recover.toml``
is ``t.recover``): a page in another file needs no change here. English is the fallback for
any string a translation lacks, so a page never renders blank or fails for a missing word.

    pages = Pages.from_settings(settings)
    html = pages.render_page("recover", "ja", token=token, path="/recover", amount="¥4,980")
"""

from __future__ import annotations

import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel import Locale, UnknownLocaleError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from activities.notify.links import ExpiredToken, InvalidToken, verify_token
from activities.notify.templates import babel_locale
from activities.store import Case, CaseStore, CustomerProfile
from config.settings import CONFIG_DIR, Settings

PAGES_DIR = CONFIG_DIR / "pages"
TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
# What the switch offers, each named in its own language.
LANGUAGES = {"en": "English", "ja": "日本語", "zh-Hans": "简体中文"}
# Text on the brand colour must reach WCAG AA for normal text.
MIN_CONTRAST = 4.5
DARK_TEXT = "#1f2328"


class PageProblem(Exception):
    """A request answered with the friendly error page: `problem` (see `PROBLEMS`) in
    `language`, with HTTP `status`."""

    def __init__(self, status: int, problem: str, language: str) -> None:
        super().__init__(problem)
        self.status, self.problem, self.language = status, problem, language


class PagesConfigError(ValueError):
    """A page's strings or templates are missing or broken; raised at start-up."""


@dataclass(frozen=True)
class Brand:
    """Who the pages speak for, and how they look."""

    company_name: str
    support_email: str
    support_phone: str | None
    colour: str
    logo_url: str | None

    @property
    def text_on_colour(self) -> str:
        """White on the brand colour when that reads well enough, else near-black."""
        return "#ffffff" if contrast(self.colour, "#ffffff") >= MIN_CONTRAST else DARK_TEXT

    @property
    def link_colour(self) -> str:
        """The brand colour for links and headings on white, unless it is too pale."""
        return self.colour if contrast(self.colour, "#ffffff") >= MIN_CONTRAST else DARK_TEXT


class Pages:
    """Renders the customer's pages in any language on file. Safe to share between requests."""

    def __init__(
        self, brand: Brand, pages_dir: Path = PAGES_DIR, templates_dir: Path = TEMPLATES_DIR
    ) -> None:
        self.brand = brand
        self.strings = _load_strings(pages_dir)
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["fill"] = fill
        try:
            self.env.get_template("base.html")
        except TemplateError as err:
            raise PagesConfigError(f"{templates_dir}/base.html: {err}") from err

    @classmethod
    def from_settings(cls, settings: Settings) -> Pages:
        """The pages with the brand `settings` name."""
        return cls(
            Brand(
                company_name=settings.company_name,
                support_email=settings.support_email,
                support_phone=settings.support_phone,
                colour=settings.brand_colour,
                logo_url=settings.logo_url,
            )
        )

    @property
    def languages(self) -> list[str]:
        """The languages with strings on file, in the switch's order."""
        return [code for code in LANGUAGES if code in self.strings]

    def language_for(self, requested: str | None = None, locale: str | None = None) -> str:
        """The page language: `requested` (the ``lang`` parameter) when offered, else the
        customer's `locale` (zh-CN → zh-Hans, ja-JP → ja), else English."""
        if requested in self.strings:
            return requested
        for tag in (requested, locale):
            language = self._offered(tag)
            if language is not None:
                return language
        return DEFAULT_LANGUAGE

    def _offered(self, tag: str | None) -> str | None:
        """The offered language a BCP-47 tag reads as; None for none (or no tag)."""
        try:
            parsed = Locale.parse((tag or "").replace("-", "_"))
        except (ValueError, TypeError, UnknownLocaleError):
            return None
        script = parsed.script or ("Hans" if parsed.language == "zh" else None)
        for candidate in (f"{parsed.language}-{script}", parsed.language):
            if candidate in self.strings:
                return candidate
        return None

    def language_from_header(self, accept_language: str | None) -> str:
        """The best offered language for an ``Accept-Language`` header (no customer known)."""
        for part in (accept_language or "").split(","):
            tag = part.split(";")[0].strip()
            language = self._offered(tag) if tag != "*" else None
            if language is not None:
                return language
        return DEFAULT_LANGUAGE

    def babel(self, language: str) -> Locale:
        """Babel's locale for a page language, for amounts and dates."""
        return babel_locale(language)

    def render_page(
        self,
        name: str,
        language: str,
        *,
        token: str | None = None,
        path: str = "/recover",
        **context: Any,
    ) -> str:
        """Template ``<name>.html`` in `language`, with the chrome every page shares.

        `token` and `path` make the language switch's links (the token is kept, so the page
        still works in the other language); `context` is the page's own variables."""
        language = language if language in self.strings else DEFAULT_LANGUAGE
        switch = [
            {
                "code": code,
                "label": LANGUAGES[code],
                "href": page_url(path, token, code),
                "current": code == language,
            }
            for code in self.languages
        ]
        return self.env.get_template(f"{name}.html").render(
            lang=language,
            t=self.strings[language],
            brand=self.brand,
            languages=switch,
            token=token,
            path=path,
            **context,
        )

    def render_error(self, language: str, problem: str, *, path: str = "/recover") -> str:
        """The friendly page for a link that cannot be used: `problem` is one of
        `PROBLEMS` (expired, invalid, used, unavailable, missing); it names no detail an
        attacker could use, and offers the support contact."""
        problem = problem if problem in PROBLEMS else "invalid"
        return self.render_page("error", language, path=path, problem=problem)


# What the error page can say (each a table in common.toml's [error]).
PROBLEMS = ("expired", "invalid", "used", "unavailable", "missing")


def fill(text: str, **values: object) -> str:
    """A page string with its ``{placeholders}`` filled (the template escapes the result)."""
    return text.format_map(values)


def page_url(path: str, token: str | None, language: str | None = None, **extra: str) -> str:
    """``path?token=...&lang=...`` (and `extra`), for links and redirects between pages."""
    query = {"token": token, "lang": language, **extra}
    given = {key: value for key, value in query.items() if value}
    return f"{path}?{urlencode(given)}" if given else path


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _load_strings(pages_dir: Path) -> dict[str, dict[str, Any]]:
    """Every language's strings, each file a namespace, English laid under the others."""
    found: dict[str, dict[str, Any]] = {}
    for folder in sorted(p for p in pages_dir.iterdir() if p.is_dir()):
        strings: dict[str, Any] = {}
        for path in sorted(folder.glob("*.toml")):
            try:
                strings[path.stem] = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                raise PagesConfigError(f"{path}: not valid TOML: {err}") from err
        if strings:
            found[folder.name] = strings
    if DEFAULT_LANGUAGE not in found:
        raise PagesConfigError(f"{pages_dir}: no strings for {DEFAULT_LANGUAGE!r}")
    base = found[DEFAULT_LANGUAGE]
    return {language: _laid_over(base, strings) for language, strings in found.items()}


def _laid_over(base: dict[str, Any], strings: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in strings.items():
        below = merged.get(key)
        merged[key] = (
            _laid_over(below, value)
            if isinstance(below, dict) and isinstance(value, dict)
            else value
        )
    return merged


async def case_of_link(
    pages: Pages,
    store: CaseStore,
    secret: str,
    token: str,
    requested: str | None,
    accept_language: str | None,
) -> tuple[Case, CustomerProfile | None, str]:
    """The case a recovery-page link ("pay" token) names, its customer, and the language to
    answer in (`requested`, else the customer's); `PageProblem` for a link that does not
    work: expired (410, in its customer's language), altered (400), an unknown case (404),
    or a store that cannot answer (503)."""
    case_id, fallback = await _verified(
        pages, token, secret, "pay", requested, accept_language, lambda i: _customer_of(store, i)
    )
    try:
        case = await run_in_threadpool(store.get_case, case_id)
        customer = await _customer_of(store, case_id) if case else None
    except SQLAlchemyError as err:
        raise PageProblem(503, "unavailable", fallback) from err
    if case is None:
        raise PageProblem(404, "missing", fallback)
    return case, customer, pages.language_for(requested, customer.locale if customer else None)


async def _customer_of(store: CaseStore, case_id: str) -> CustomerProfile | None:
    """The case's customer; None when the store has neither (or cannot say)."""

    def lookup() -> CustomerProfile | None:
        case = store.get_case(case_id)
        return store.get_customer(case.customer_id) if case else None

    try:
        return await run_in_threadpool(lookup)
    except SQLAlchemyError:
        return None


async def customer_of_link(
    pages: Pages,
    store: CaseStore,
    secret: str,
    token: str,
    requested: str | None,
    accept_language: str | None,
) -> tuple[str, CustomerProfile | None, str]:
    """The customer an account-page link ("account" token) names, their stored profile
    (None when the store has none) and the language to answer in (`requested`, else the
    customer's); `PageProblem` for a link that does not work: expired (410, in the customer's
    language), altered or for another use (400), or a store that cannot answer (503)."""
    customer_id, fallback = await _verified(
        pages, token, secret, "account", requested, accept_language, lambda i: _profile(store, i)
    )
    try:
        customer = await run_in_threadpool(store.get_customer, customer_id)
    except SQLAlchemyError as err:
        raise PageProblem(503, "unavailable", fallback) from err
    return customer_id, customer, pages.language_for(requested, customer and customer.locale)


async def _verified(
    pages: Pages,
    token: str,
    secret: str,
    use: str,
    requested: str | None,
    accept_language: str | None,
    customer_of: Callable[[str], Awaitable[CustomerProfile | None]],
) -> tuple[str, str]:
    """The id a link's token for `use` names, and the language to fall back to; an expired
    link is answered in its customer's language (`customer_of` the named id), unless the
    visitor asked for one."""
    header = pages.language_from_header(accept_language)
    fallback = pages.language_for(requested) if requested else header
    try:
        return verify_token(token, secret, datetime.now(UTC), use=use), fallback
    except ExpiredToken as err:
        customer = None if requested else await customer_of(err.case_id)
        language = pages.language_for(None, customer.locale) if customer else fallback
        raise PageProblem(410, "expired", language) from err
    except InvalidToken as err:
        raise PageProblem(400, "invalid", fallback) from err


async def _profile(store: CaseStore, customer_id: str) -> CustomerProfile | None:
    """The customer's stored profile; None when there is none (or the store cannot say)."""
    try:
        return await run_in_threadpool(store.get_customer, customer_id)
    except SQLAlchemyError:
        return None
