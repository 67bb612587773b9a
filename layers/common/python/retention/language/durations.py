"""The one duration grammar of rules, conditions and settings.

A duration is one or more `<number><unit>` parts: `30m`, `4h`, `1d12h`, `2w`, `6mo` (30 days: a wait
needs a fixed length, not a calendar), `1y` (365 days), `45s`, `1.5d`. Case and blanks are ignored
(` 4H `, `1d 12h`); a part's number may carry a fraction. Rules need a duration longer than zero (a wait
of no length is a mistake in a journey); conditions may compare with zero.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

UNIT_SECONDS: dict[str, int] = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}
_PART = r"(\d+(?:\.\d+)?)(mo|y|w|d|h|m|s)"
_DURATION_RE = re.compile(rf"^(?:{_PART})+$")
_PART_RE = re.compile(_PART)
HINT = "use a number and a unit: 30m, 4h, 1d, 2w, 6mo (30 days), 1y (365 days), or combined: 1d12h"


def parse_duration(value: Any, *, positive: bool = True) -> timedelta:
    """`30m`, `4h`, `1d`, `2w`, `6mo`, `1y`, `45s`, `1.5d`, combined `1d12h` → timedelta.

    ValueError names the problem: not a string, no unit, an unknown spelling ("invalid duration …"), or
    (with `positive`, the default) a duration of zero or less ("… must be longer than zero")."""
    if isinstance(value, timedelta):
        if positive and value <= timedelta(0):
            raise ValueError(f"duration {format_duration(value)!r} must be longer than zero")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"duration must be a string such as 4h, got {value!r}; {HINT}")
    if not isinstance(value, str):
        if value <= 0 and positive:
            raise ValueError(f"duration {value!r} must be longer than zero")
        raise ValueError(f"duration {value!r} has no unit; {HINT}")
    text = value.strip().lower()
    negative = text.startswith("-")
    body = text.lstrip("+-").replace(" ", "")
    if not body or not _DURATION_RE.match(body):
        raise ValueError(f"invalid duration {value!r}; {HINT}")
    seconds = sum(Decimal(n) * UNIT_SECONDS[unit] for n, unit in _PART_RE.findall(body))
    if positive and (negative or seconds == 0):
        raise ValueError(f"duration {value!r} must be longer than zero")
    if negative:
        raise ValueError(f"invalid duration {value!r}: a duration is not negative; {HINT}")
    return timedelta(seconds=float(seconds))


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 14 days → `2w`, 36 hours → `36h` (parse_duration reads it back)."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return f"{seconds}s"
    for unit in ("w", "d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
