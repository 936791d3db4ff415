"""Self-service tokens: bound to one case and one purpose, expiring, and refused with
`InvalidToken` (never another error) whatever text arrives."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from activities.notify.links import InvalidToken, make_token, verify_token

SECRET = "token-test-secret-7c41e9"
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def signed(payload: bytes, secret: str = SECRET) -> str:
    """A token whose payload is `payload` (any bytes), correctly signed: what only a holder of
    the secret, or a bug of ours, could make."""
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_a_token_names_its_case_for_its_purpose_until_it_expires():
    token = make_token("in_1", SECRET, NOW, timedelta(days=30), use="unsubscribe")

    assert verify_token(token, SECRET, NOW + timedelta(days=29), use="unsubscribe") == "in_1"
    with pytest.raises(InvalidToken, match="not a token to pay"):
        verify_token(token, SECRET, NOW, use="pay")
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, SECRET, NOW + timedelta(days=30), use="unsubscribe")
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token(token, "another-secret-entirely", NOW, use="unsubscribe")


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "garbage",
        "abc.é",  # hmac.compare_digest refuses non-ASCII text with TypeError
        "é.abc",
        "abc.\udcff",
        "ab\x00c.def",
        "a" * 5000 + ".b",
        "!!!!.????",
        "a.b.c",
    ],
)
def test_malformed_tokens_are_invalid(token: str):
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET, NOW)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"case":"in_1","exp":1e400}',
        b'{"case":"in_1","exp":-1e400}',
        b'{"case":"in_1","exp":NaN}',
        b'{"case":"in_1","exp":' + b"9" * 5000 + b"}",  # past int()'s digit limit
        b'{"case":"in_1","exp":99999999999,"pad":"' + b"x" * 3000 + b'"}',  # too long
        b'{"case":"in_1","exp":true}',
        b'{"case":"in_1","exp":"99999999999"}',
        b'{"case":"in_1","exp":99999999999.5}',
        b'{"case":"in_1","exp":null}',
        b'{"case":"in_1"}',
        b'{"case":["in_1"],"exp":99999999999}',
        b'{"case":"","exp":99999999999}',
        b'{"case":"in_1","exp":99999999999,"use":["pay"]}',
        b'["in_1",99999999999]',
        b'"in_1"',
        b"99999999999",
        b"null",
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json.loads
        b"[" * 700 + b"]" * 700,
        b"\xff\xfe not UTF-8",
        b"",
    ],
)
def test_signed_tokens_with_odd_claims_are_invalid(payload: bytes):
    token = signed(payload)
    with pytest.raises(InvalidToken):
        verify_token(token, SECRET, NOW)


def test_a_huge_but_valid_expiry_is_honoured():
    token = signed(b'{"case":"in_1","exp":' + b"9" * 100 + b"}")

    assert verify_token(token, SECRET, NOW) == "in_1"


def test_a_token_is_short_enough_for_a_text_message_link():
    token = make_token("in_1MtE3k2eZvKYlo2C", SECRET, NOW, timedelta(days=365))

    # Two UCS-2 segments hold 134 characters; the link must leave room for a sentence.
    assert len(token) <= 60 and token.startswith("in_1MtE3k2eZvKYlo2C~")
    assert verify_token(token, SECRET, NOW) == "in_1MtE3k2eZvKYlo2C"


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("in_1~", "in_2~"),  # another case
        lambda t: t.replace("~p~", "~u~"),  # another use
        lambda t: t[: t.index("~") + 1] + "zzzzzz" + t[t.index("~", t.index("~") + 1) :],  # later
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # another signature
    ],
)
def test_a_changed_token_is_refused(change):
    token = make_token("in_1", SECRET, NOW, timedelta(days=30))

    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token(change(token), SECRET, NOW)


def test_links_sent_in_the_first_format_keep_working_until_they_expire():
    expires = int((NOW + timedelta(days=30)).timestamp())
    first_format = signed(f'{{"case":"in_1","exp":{expires},"use":"pay"}}'.encode())

    assert verify_token(first_format, SECRET, NOW) == "in_1"
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(first_format, SECRET, NOW + timedelta(days=31))


def test_a_case_id_a_link_cannot_carry_is_refused_when_signing():
    with pytest.raises(ValueError, match="not a case id"):
        make_token("in 1/..", SECRET, NOW, timedelta(days=1))
