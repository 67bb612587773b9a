"""Money as a template shows it (`1 290 ₽`, `$12.90`): used by the template filters
(retention.language.templates) and the product blocks (retention.language.blocks), which import it from here
so that neither imports the other back."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jinja2

CURRENCY_SYMBOLS = {
    "RUB": "₽",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "KZT": "₸",
    "UAH": "₴",
    "BYN": "Br",
    "CNY": "¥",
    "JPY": "¥",
    "TRY": "₺",
    "INR": "₹",
}
NARROW_NBSP = "\u202f"
NBSP = "\u00a0"


def language_of(locale: str | None) -> str:
    return (locale or "ru").replace("_", "-").split("-", 1)[0].lower()


def fail_if_undefined(value: Any) -> None:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises the "is undefined" error here


def format_money(amount: Any, currency: str | None = "RUB", locale: str | None = "ru") -> str:
    """`1 290 ₽` (ru: narrow no-break space groups, symbol after), `$12.90` (en: symbol before).

    Whole amounts drop the fraction (`1 290 ₽`, `$1,290`); others keep two digits.
    """
    fail_if_undefined(amount)
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"money: {amount!r} is not a number") from exc
    code = (currency or "RUB").upper()
    symbol = CURRENCY_SYMBOLS.get(code, code)
    negative = value < 0
    value = abs(value)
    whole, cents = divmod(value, 1)
    digits = f"{int(whole):,}"
    fraction = "" if cents == 0 else f"{int(cents * 100):02d}"
    sign = "-" if negative else ""
    if language_of(locale) == "ru":
        number = digits.replace(",", NARROW_NBSP) + ("," + fraction if fraction else "")
        return f"{sign}{number}{NBSP}{symbol}"
    number = digits + ("." + fraction if fraction else "")
    if len(symbol) > 1 and symbol.isalpha():
        return f"{sign}{symbol}{NBSP}{number}"
    return f"{sign}{symbol}{number}"
