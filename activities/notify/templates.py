"""Message templates from `config/templates/<locale>.toml`, rendered with strict Jinja2."""

from __future__ import annotations

import tomllib
from pathlib import Path

from jinja2 import Environment, StrictUndefined, TemplateError

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


class TemplateConfigError(ValueError):
    """A template is missing or does not compile; raised at start-up, not at send time."""


class Templates:
    """Every template of every locale, compiled once."""

    def __init__(self, templates_dir: Path, default_locale: str = "en") -> None:
        self.default_locale = default_locale
        env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self._compiled = {}
        for path in sorted(templates_dir.glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise TemplateConfigError(f"{path}: not valid TOML: {exc}") from exc
            for name in TEMPLATE_NAMES:
                for part in PARTS:
                    source = data.get(name, {}).get(part)
                    if source is None:
                        raise TemplateConfigError(f"{path}: [{name}] has no {part!r}")
                    try:
                        self._compiled[path.stem, name, part] = env.from_string(source)
                    except TemplateError as exc:
                        raise TemplateConfigError(f"{path}: [{name}].{part}: {exc}") from exc
        if not any(key[0] == default_locale for key in self._compiled):
            raise TemplateConfigError(f"{templates_dir}: no templates for {default_locale!r}")

    def render(
        self, locale: str, name: str, channel: Channel, variables: dict[str, object]
    ) -> tuple[str, str]:
        """(subject, body) of template `name` for `channel`, in `locale` or the default."""
        locale = locale.replace("-", "_")  # BCP-47 tags (fr-CA) find their language too
        language = locale if (locale, name, "subject") in self._compiled else locale.split("_")[0]
        if (language, name, "subject") not in self._compiled:
            language = self.default_locale
        subject = self._compiled[language, name, "subject"].render(variables)
        body = self._compiled[language, name, channel.value].render(variables)
        return (subject if channel is Channel.EMAIL else ""), body
