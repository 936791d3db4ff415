"""Amounts in minor units, written the way people read them (¥4,980, $49.00, 49,00 €)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision


def format_money(amount: int, currency: str, locale: str = "en") -> str:
    """An amount in the currency's minor units, formatted for `locale`."""
    major = Decimal(amount).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=locale)
