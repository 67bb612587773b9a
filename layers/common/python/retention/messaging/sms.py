"""SMS text: GSM 03.38 / UCS-2 segment arithmetic, cleanup before SNS, phone numbers in E.164.

Segment rules (what carriers bill): a GSM-7 text of up to 160 septets is one SMS, longer texts
are split into 153-septet parts (the UDH takes 7); characters of the GSM extension table
(``€ [ ] { } ^ ~ | \\`` and form feed) take two septets and an escape pair is never split across
parts. Anything outside the GSM alphabet (Cyrillic, emoji, typographic quotes) switches the
whole text to UCS-2: 70 UTF-16 code units in one SMS, 67 per part, a surrogate pair never split.
"""

from __future__ import annotations

import re
from typing import Literal

from retention.core.errors import BadRequestError

Encoding = Literal["GSM-7", "UCS-2"]

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# Typographic characters that would otherwise force UCS-2 (and cut the capacity by more than half)
# in an otherwise Latin text; applied only when the result is entirely GSM-7.
_GSM_LOOKALIKES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
    }
)

# C0/C1 controls except TAB/LF (handled as whitespace below), zero-width and bidi controls that
# render as garbage or hide content on handsets.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_HSPACE_RUN = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\n{3,}")
_NBSP = frozenset("\u00a0\u202f")


def is_gsm7(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def _split_units(units: list[int], single: int, part: int) -> int:
    """Number of parts for a text whose characters take `units` each (never split a character)."""
    total = sum(units)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > part:
            parts += 1
            used = 0
        used += size
    return parts


def sms_segments(text: str) -> tuple[Encoding, int, int]:
    """`(encoding, segments, length)`: length in septets (GSM-7) or UTF-16 code units (UCS-2).

    An empty text is 0 segments (nothing to send).
    """
    if is_gsm7(text):
        units = [2 if ch in GSM_EXTENSION else 1 for ch in text]
        return "GSM-7", _split_units(units, GSM_SINGLE, GSM_PART), sum(units)
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return "UCS-2", _split_units(units, UCS2_SINGLE, UCS2_PART), sum(units)


def _collapse_space(match: re.Match[str]) -> str:
    run = match.group(0)
    # A lone non-breaking space is intentional ("1 290 ₽", "10 %"): keep it.
    return run if len(run) == 1 and run in _NBSP else " "


def clean_sms(text: str) -> str:
    """Strip control characters, collapse whitespace (at most one empty line), trim."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _HSPACE_RUN.sub(_collapse_space, text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _NEWLINES.sub("\n\n", text)
    text = text.strip()
    if not is_gsm7(text):
        latin = text.translate(_GSM_LOOKALIKES)
        if is_gsm7(latin):
            text = latin
    return text


def prepare_sms(text: str, max_segments: int = 6) -> str:
    """The text as it goes to SNS; BadRequestError when empty or longer than `max_segments`."""
    cleaned = clean_sms(text)
    if not cleaned:
        raise BadRequestError("the SMS text is empty", code="sms_empty")
    encoding, segments, length = sms_segments(cleaned)
    if segments > max_segments:
        raise BadRequestError(
            f"the SMS text takes {segments} segments ({encoding}, {length} units); at most {max_segments} are allowed",
            code="sms_too_long",
        )
    return cleaned


_PHONE_PUNCTUATION = re.compile(r"[\s\-().\u00a0\u2010-\u2015/]")
_E164 = re.compile(r"\+[1-9]\d{7,14}")


def normalize_phone(s: str | None) -> str | None:
    """E.164 (`+79161234567`) or None when the input is not a phone number.

    Russian habits are understood: `8 (916) 123-45-67`, `79161234567`, `9161234567`; a number
    with `+` or the `00` international prefix is kept as it is. Digits without a prefix that are
    not Russian are ambiguous (which country?) and rejected.
    """
    if not isinstance(s, str):
        return None
    raw = _PHONE_PUNCTUATION.sub("", s.strip())
    if not raw:
        return None
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if raw.startswith("+"):
        number = raw
    elif not raw.isdigit():
        return None
    elif len(raw) == 11 and raw[0] in "78":
        number = "+7" + raw[1:]
    elif len(raw) == 10 and raw[0] == "9":
        number = "+7" + raw
    else:
        return None
    if not _E164.fullmatch(number) or not number[1:].isascii():
        return None
    if number.startswith("+7") and len(number) != 12:
        return None
    return number


# Calling codes of the countries a shop is likely to allow; a longer prefix wins. +7 is Russia and
# Kazakhstan (Kazakhstan: +76, +77); +1 is the North American plan (US, CA and others share it).
CALLING_CODES: dict[str, str] = {
    "7": "RU", "76": "KZ", "77": "KZ", "375": "BY", "380": "UA", "374": "AM", "994": "AZ", "995": "GE",
    "996": "KG", "992": "TJ", "993": "TM", "998": "UZ", "373": "MD", "1": "US", "44": "GB", "49": "DE",
    "33": "FR", "39": "IT", "34": "ES", "48": "PL", "420": "CZ", "90": "TR", "972": "IL", "86": "CN",
    "91": "IN", "971": "AE", "31": "NL", "46": "SE", "47": "NO", "358": "FI", "372": "EE", "371": "LV",
    "370": "LT", "43": "AT", "41": "CH", "32": "BE", "351": "PT", "30": "GR", "36": "HU", "40": "RO",
    "359": "BG", "381": "RS", "385": "HR", "353": "IE", "45": "DK", "81": "JP", "82": "KR", "55": "BR",
    "52": "MX", "61": "AU", "64": "NZ", "27": "ZA", "20": "EG", "66": "TH", "84": "VN", "62": "ID",
}
SHARED_CODES = {"US": {"US", "CA"}}


def country_of(e164: str) -> str | None:
    """The ISO country of an E.164 number by its calling code (None: not in CALLING_CODES)."""
    digits = e164.lstrip("+")
    for length in (3, 2, 1):
        country = CALLING_CODES.get(digits[:length])
        if country:
            return country
    return None


def sms_country_allowed(e164: str, allowed: set[str]) -> bool:
    country = country_of(e164)
    if country is None:
        return False
    return bool(SHARED_CODES.get(country, {country}) & allowed)
