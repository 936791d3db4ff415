"""Amounts in minor units, written the way people read them (¥4,980, $49.00, 49,00 €)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision


def major_units(amount: int, currency: str) -> Decimal:
    """An amount in minor units as the currency's major units (4980 JPY: 4980; 4980 USD: 49.80)."""
    return Decimal(amount).scaleb(-get_currency_precision(currency))


def format_money(amount: int, currency: str, locale: str = "en") -> str:
    """An amount in the currency's minor units, formatted for `locale`."""
    return format_currency(major_units(amount, currency), currency, locale=locale)
