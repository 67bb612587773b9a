"""Coupon discounts: "10%" or "500 RUB" (pure: the rule language validates them too)."""

from __future__ import annotations

import re
from typing import Any

from retention.core.errors import BadRequestError

DISCOUNT_RE = re.compile(r"^\s*(\d+(?:[.,]\d{1,2})?)\s*(%|[A-Za-z]{3})\s*$")


def parse_discount(value: Any) -> str:
    """"10%" or "500 RUB" (normalized: "10%", "500 RUB")."""
    match = DISCOUNT_RE.match(str(value or ""))
    if not match:
        raise BadRequestError(f'discount must be a percentage ("10%") or an amount with its currency ("500 RUB"), '
                              f"got {value!r}")
    number, unit = match.group(1).replace(",", "."), match.group(2)
    if unit == "%":
        if not 0 < float(number) <= 100:
            raise BadRequestError(f"a percentage discount is between 0 and 100, got {value!r}")
        return f"{number}%"
    if float(number) <= 0:
        raise BadRequestError(f"an amount discount is more than zero, got {value!r}")
    return f"{number} {unit.upper()}"
