"""The values every door checks the same way: amounts, currencies, zones, numbers, instants.

A billing event, a CLI flag and a Python call all pass through these types, so a value that
passes one door passes them all, and none that passes can later break a case: a zone every
message can be timed in, a currency every message can be written in, an amount the report
can add up, a failure time the schedule can be built on.
"""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from functools import cache
from typing import Annotated

import phonenumbers
from babel import Locale
from babel.core import get_global
from babel.numbers import get_territory_currencies
from pydantic import AfterValidator, BeforeValidator, Field

LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,5}$"
"""A BCP-47 or POSIX language tag: en, ja-JP, zh-Hans, zh_Hant_TW."""

MAX_AMOUNT = 10**12
"""The largest amount in minor units: 10 billion dollars, 1 trillion yen. A million such
cases still sum within a 64-bit integer (search attributes, the report)."""

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of our clock an event may say it happened: the sender's clock may run fast."""

MAX_FAILURE_AGE = timedelta(days=45)
"""The oldest failure that still opens a case. Its schedule starts when the case opens, so a
late event brings its first reminder, never a burst of overdue steps."""


@cache
def tender_currencies() -> frozenset[str]:
    """ISO-4217 codes some territory uses as legal tender today (CLDR, through Babel)."""
    territories = get_global("territory_currencies")
    return frozenset(code for t in territories for code in get_territory_currencies(t))


@cache
def time_zone_names() -> frozenset[str]:
    """The IANA zone names this machine can convert times in."""
    return frozenset(zoneinfo.available_timezones() - {"Factory", "localtime"})


@cache
def country_codes() -> frozenset[str]:
    """ISO-3166 alpha-2 country codes."""
    return frozenset(code for code in Locale("en").territories if len(code) == 2)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _currency(code: str) -> str:
    if code not in tender_currencies():
        raise ValueError(f"{code!r} is not an ISO-4217 currency in use (e.g. USD, EUR, JPY)")
    return code


def _time_zone(name: str) -> str:
    if name not in time_zone_names():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris, Asia/Tokyo)")
    return name


def _country(code: str) -> str:
    if code not in country_codes():
        raise ValueError(f"{code!r} is not an ISO-3166 country code (e.g. US, JP)")
    return code


def _phone(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        parsed = None
    possible = phonenumbers.ValidationResult.IS_POSSIBLE
    if parsed is None or phonenumbers.is_possible_number_with_reason(parsed) != possible:
        raise ValueError("not a valid phone number in E.164 form (e.g. +14155550123)")
    return number


Currency = Annotated[
    str,
    BeforeValidator(_upper),
    Field(pattern=r"^[A-Z]{3}$", description="ISO-4217 code in use (USD, EUR, JPY)."),
    AfterValidator(_currency),
]
"""An ISO-4217 currency some country pays in today; written in upper case."""

MinorAmount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description=f"In the currency's minor units (cents, yen), 1 to {MAX_AMOUNT}.",
    ),
]
"""A positive whole amount in minor units; a string, a float or a boolean is refused."""

TimeZoneName = Annotated[
    str, Field(max_length=64, description="IANA zone, e.g. Asia/Tokyo."), AfterValidator(_time_zone)
]
"""A time zone contact hours can be computed in."""

PhoneNumber = Annotated[
    str,
    Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +14155550123."),
    AfterValidator(_phone),
]
"""A phone number in E.164 whose length fits its country code."""

CountryCode = Annotated[
    str,
    BeforeValidator(_upper),
    Field(pattern=r"^[A-Z]{2}$", description="ISO-3166 alpha-2, e.g. JP."),
    AfterValidator(_country),
]
"""A country, as ISO-3166 alpha-2 in upper case."""
