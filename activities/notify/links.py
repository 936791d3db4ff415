"""Self-service links: a URL carrying a signed, expiring token that names the case.

A token is ``<case>~<expiry>~<use>~<signature>``: the case id, the expiry in unix seconds in
base 36, one letter for its use (p: the recovery page, u: the preferences page, a: the
customer's account page, whose token names the customer) and the first
22 characters (128 bits) of the base64url HMAC-SHA256 of what precedes it under the configured
secret. Compact, so a Japanese or Chinese text message with its link fits two segments.
Tokens of the first format, ``<base64url JSON claims>.<43-character HMAC>``, keep verifying
until they expire. The pages behind the URLs verify them with `verify_token`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from config.settings import Settings

# Ours are a few hundred characters at most; a longer one is refused unread.
MAX_TOKEN_LENGTH = 2048


# A token wherever it stands (a query, a path), in either format.
_TOKEN = re.compile(
    r"[A-Za-z0-9_.:-]{1,100}~[0-9a-z]{1,13}~[a-z]~[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])"
    r"|[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)
_COMPACT = re.compile(r"([A-Za-z0-9_.:-]{1,100})~([0-9a-z]{1,13})~([a-z])~([A-Za-z0-9_-]{22})")
_USE_LETTERS = {"pay": "p", "unsubscribe": "u", "account": "a"}
_SIGNATURE_LENGTH = 22
# Any value of a token= parameter, a token or not.
_TOKEN_PARAMETER = re.compile(r"(?i)(\btoken=)[^&\s\"'<>()]+")


def redact_tokens(text: str) -> str:
    """`text` with every token, and every ``token=`` value, replaced by ``<redacted>``: a
    token in a log line is a working link for whoever reads the log."""
    return _TOKEN_PARAMETER.sub(r"\1<redacted>", _TOKEN.sub("<redacted>", text))


class InvalidToken(ValueError):
    """A token that is malformed, tampered with or expired."""


class ExpiredToken(InvalidToken):
    """An authentic token past its expiry: `case_id` may still choose the page's language,
    never grant anything."""

    def __init__(self, case_id: str) -> None:
        super().__init__("expired token")
        self.case_id = case_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def make_token(
    case_id: str, secret: str, now: datetime, valid_for: timedelta, use: str = "pay"
) -> str:
    """A token naming `case_id` (the customer's id for `account`) for one `use`, valid until
    `now + valid_for`."""
    expires = int((now + valid_for).timestamp())
    payload = f"{case_id}~{_base36(expires)}~{_USE_LETTERS[use]}"
    token = f"{payload}~{_sign(payload, secret)[:_SIGNATURE_LENGTH]}"
    if not _COMPACT.fullmatch(token):
        raise ValueError(f"not a case id a link can carry: {case_id!r}")
    return token


def verify_token(token: str, secret: str, now: datetime, use: str = "pay") -> str:
    """The case a valid token for `use` names; `InvalidToken` says why any other is refused.
    Whatever text arrives (a query string is anybody's), nothing else is raised."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed token")
    if compact := _COMPACT.fullmatch(token):
        case_id, expiry, letter, signature = compact.groups()
        expected = _sign(token.rpartition("~")[0], secret)[:_SIGNATURE_LENGTH]
        purpose = next((u for u, code in _USE_LETTERS.items() if code == letter), letter)
        expires = int(expiry, 36)
    else:
        payload, _, signature = token.partition(".")
        if not payload or not signature:
            raise InvalidToken("malformed token")
        expected = _sign(payload, secret)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise InvalidToken("bad signature")
    if not compact:
        case_id, expires, purpose = _claims(payload)
    if purpose != use:
        raise InvalidToken(f"not a token to {use}")
    if now.timestamp() >= expires:
        raise ExpiredToken(case_id)
    return case_id


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if number == 0:
            return text


def _claims(payload: str) -> tuple[str, int, object]:
    """The case, expiry and use a first-format payload states; `InvalidToken` unless it is a JSON
    object with a non-empty string case and an integer expiry (a bug of ours, or a leaked
    secret, must not turn into a crash)."""
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, RecursionError) as err:  # base64, UTF-8, JSON, int() digit limit
        raise InvalidToken("malformed token") from err
    if not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    case_id, expires = claims.get("case"), claims.get("exp")
    if not isinstance(case_id, str) or not case_id or type(expires) is not int:
        raise InvalidToken("malformed token")
    return case_id, expires, claims.get("use", "pay")


@dataclass(frozen=True)
class SelfService:
    """Where customers fix their payment, and how their links are signed."""

    url: str
    secret: str
    valid_for: timedelta

    unsubscribe_url: str = ""
    account_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> SelfService:
        """The links the settings configure, signed with SELF_SERVICE_SECRET."""
        return cls(
            url=settings.self_service_url,
            secret=settings.self_service_secret.get_secret_value(),
            valid_for=timedelta(days=settings.self_service_valid_days),
            unsubscribe_url=settings.unsubscribe_link,
            account_url=settings.account_link,
        )

    def link_for(self, case_id: str, now: datetime) -> str:
        """The case's self-service URL, with a token valid for `valid_for` from `now`."""
        return self.url.replace("{token}", make_token(case_id, self.secret, now, self.valid_for))

    def unsubscribe_link_for(self, case_id: str, now: datetime) -> str:
        """The one-click link that stops dunning email to the case's customer."""
        token = make_token(case_id, self.secret, now, UNSUBSCRIBE_VALID_FOR, use="unsubscribe")
        return self.unsubscribe_url.replace("{token}", token)

    def account_link_for(self, customer_id: str, now: datetime) -> str:
        """The customer's own page, over all their open invoices (one link pays them all, or
        updates the card before it fails): a token naming the customer, not a case."""
        token = make_token(customer_id, self.secret, now, self.valid_for, use="account")
        return self.account_url.replace("{token}", token)


# An unsubscribe link must keep working long after the message: a year.
UNSUBSCRIBE_VALID_FOR = timedelta(days=365)
