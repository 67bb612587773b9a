"""Raw RFC 5322 / MIME email for SES `SendEmail` (Raw), and a parser for the local outbox and tests.

Why the message is assembled here rather than with `email.message.EmailMessage`: the stdlib
folder (3.11/3.12) drops the space between two RFC 2047 encoded words of a long Cyrillic subject
("товара в" arrives as "товарав"), RFC 2047-encodes a long `List-Unsubscribe` (mailbox providers
then cannot read the URL) and costs about 1.5 ms per message, the whole CPU budget of a send.
The format written here is small and fixed, so it is spelled out:

- headers: ASCII values as they are (folded at spaces past 78 characters), anything non-ASCII
  as RFC 2047 `=?utf-8?B?…?=` words of whole characters, each at most 75 characters, one per
  folded line (decoders join adjacent encoded words, so spaces stay inside the words);
- every header value loses CR, LF and every other control or line-separator character, so no
  value can start a new header; addresses are validated and never cleaned silently;
- bodies: UTF-8, quoted-printable when mostly ASCII, base64 otherwise (Cyrillic is three times
  larger in quoted-printable); lines never exceed 76 characters in bodies, 998 in headers;
- `multipart/alternative`, plain text first, HTML last (the preferred part is the last).
Parsing stays with the stdlib (`email.message_from_bytes`), imported only by `parse_email`.
"""

from __future__ import annotations

import base64
import binascii
import html as _html
import os
import re
from datetime import UTC, datetime
from typing import Any

from retention.core import clock
from retention.core.errors import BadRequestError

MAX_HEADER_LINE = 998
_FOLD_AT = 78
_EW_MAX_BYTES = 45  # 45 bytes -> 60 base64 characters -> 72-character encoded word

# C0 controls, DEL, C1 controls and the characters `str.splitlines` (and so the stdlib parser)
# treats as line breaks.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Runs of ordinary spaces only: a no-break space between "1 290" and "₽" is meant to be there.
_SPACES = re.compile(r" {2,}")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- ]+")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9\-]{2,63}")
_NAME_ADDR = re.compile(r"(.*?)<([^<>]*)>\s*", re.S)
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.I)
_URL_UNSAFE = re.compile(r"[\s<>\"\x00-\x1f\x7f]")

# Headers this module writes itself; a caller's `headers` may not replace them.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clean_header_value(value: str) -> str:
    """One line of text: control characters become spaces, runs of whitespace one space."""
    return _SPACES.sub(" ", _HEADER_UNSAFE.sub(" ", value)).strip()


def _fold_ascii(name: str, value: str) -> str:
    """`Name: value`, folded at spaces so lines stay within 78 characters where possible."""
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line
    lines: list[str] = []
    current = first = f"{name}:"
    for word in value.split(" "):
        if current != first and len(current) + 1 + len(word) > _FOLD_AT:
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines)


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-encoded words of whole characters, each ≤ 75 characters."""
    words: list[str] = []
    chunk = bytearray()
    for ch in text:
        data = ch.encode()
        if len(chunk) + len(data) > _EW_MAX_BYTES:
            words.append(f"=?utf-8?B?{base64.b64encode(bytes(chunk)).decode()}?=")
            chunk.clear()
        chunk += data
    if chunk:
        words.append(f"=?utf-8?B?{base64.b64encode(bytes(chunk)).decode()}?=")
    return words


def _needs_encoding(text: str) -> bool:
    # "=?" in a plain value would be decoded by the reader as if it were an encoded word.
    return not text.isascii() or "=?" in text


def _header(name: str, value: str) -> str:
    if not _needs_encoding(value) and len(max(value.split(" "), key=len)) + len(name) + 2 <= MAX_HEADER_LINE:
        return _fold_ascii(name, value)
    return f"{name}: " + "\r\n ".join(_encoded_words(value))


def _phrase(display_name: str) -> str:
    """A display name as an RFC 5322 phrase: atoms, a quoted string, or encoded words."""
    if _needs_encoding(display_name):
        return "\r\n ".join(_encoded_words(display_name))
    if _ATEXT_PHRASE.fullmatch(display_name):
        return display_name
    escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def validate_address(address: str, *, field: str = "address") -> str:
    """`local@domain` checked strictly (ASCII local part, IDN domain to punycode); BadRequestError."""
    if not isinstance(address, str) or _HEADER_UNSAFE.search(address):
        raise BadRequestError(f"{field}: an email address cannot contain line breaks or control characters")
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise BadRequestError(f"{field}: {address!r} is not an email address (no @)")
    if len(address) > 254 or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise BadRequestError(f"{field}: {address!r} is not a valid email address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadRequestError(f"{field}: {address!r} has an invalid domain") from exc
    if not _DOMAIN.fullmatch(domain):
        raise BadRequestError(f"{field}: {address!r} has an invalid domain")
    return f"{local}@{domain.lower()}"


def _mailbox(value: str, *, field: str, strict: bool) -> str:
    """`Name <addr>` or `addr` rendered as a header value.

    `strict` (the recipient) refuses any control character; otherwise (the sender, from
    configuration) the display name is cleaned and only the address is validated.
    """
    if strict and _HEADER_UNSAFE.search(value):
        raise BadRequestError(f"{field}: an email address cannot contain line breaks or control characters")
    match = _NAME_ADDR.fullmatch(value)
    if match:
        name, address = clean_header_value(match.group(1)).strip('"').strip(), match.group(2)
    else:
        name, address = "", value
    address = validate_address(address, field=field)
    return f"{_phrase(name)} <{address}>" if name else address


def with_display_name(sender: str, name: str | None) -> str:
    """The configured sender with the shop's name as display name, unless the sender already has one."""
    if not name or _NAME_ADDR.fullmatch(sender.strip()):
        return sender
    return f"{clean_header_value(name)} <{sender.strip()}>"


def _clean_url(url: str, *, field: str) -> str:
    url = _HEADER_UNSAFE.sub("", url).strip()
    if not url or _URL_UNSAFE.search(url) or len(url) > 900:
        raise BadRequestError(f"{field}: {url[:80]!r} is not a usable URL")
    return url


def _list_unsubscribe(entries: list[str]) -> str:
    line = "List-Unsubscribe: " + ", ".join(entries)
    return line if len(line) <= MAX_HEADER_LINE else "List-Unsubscribe: " + ",\r\n ".join(entries)


def format_date(value: datetime) -> str:
    """RFC 5322 date (`Tue, 24 Nov 2026 10:00:00 +0000`), locale-independent."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return (
        f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year}"
        f" {value.hour:02d}:{value.minute:02d}:{value.second:02d} +0000"
    )


def _encode_body(content: str) -> tuple[str, bytes]:
    """(transfer encoding, CRLF body lines): the smaller of quoted-printable and base64."""
    data = content.replace("\r\n", "\n").replace("\r", "\n").encode()
    high = len(data.translate(None, bytes(range(128))))
    if high * 6 <= len(data):
        encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
        return "quoted-printable", encoded.replace(b"\n", b"\r\n")
    return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")


def _part(subtype: str, content: str) -> bytes:
    cte, body = _encode_body(content)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return head.encode() + body


def with_preheader(html: str, preheader: str) -> str:
    """The preview text as the first, hidden element of the body (what inboxes show next to the subject)."""
    # Hidden by display:none alone: 1 px fonts, zero opacity and padding runs are what spam filters look
    # for (SpamAssassin's FONT_INVIS_* rules), and inboxes read the preview from display:none text too.
    hidden = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">' + _html.escape(preheader) + "</div>"
    match = _BODY_TAG.search(html)
    if match:
        return html[: match.end()] + hidden + html[match.end() :]
    return hidden + html


def build_email(
    *,
    sender: str,
    to: str,
    subject: str,
    html: str | None,
    text: str | None,
    preheader: str | None,
    unsubscribe_url: str,
    unsubscribe_mailto: str | None,
    message_id_domain: str,
    headers: dict[str, str] | None = None,
    now: datetime | None = None,
    reply_to: str | None = None,
) -> bytes:
    """The raw message (CRLF line ends) for SESv2 `SendEmail(Content={"Raw": …})`."""
    if not html and not text:
        raise BadRequestError("an email needs an HTML or a text body")
    clean_subject = clean_header_value(subject or "")
    if not clean_subject:
        raise BadRequestError("an email needs a subject")
    domain = clean_header_value(message_id_domain).lower()
    if not _DOMAIN.fullmatch(domain):
        raise BadRequestError(f"message_id_domain: {message_id_domain!r} is not a domain name")
    when = now or clock.now()

    unsubscribe = [f"<{_clean_url(unsubscribe_url, field='unsubscribe_url')}>"]
    if unsubscribe_mailto:
        mailto = _clean_url(unsubscribe_mailto, field="unsubscribe_mailto")
        if not mailto.lower().startswith("mailto:"):
            mailto = "mailto:" + mailto
        validate_address(mailto[7:].split("?", 1)[0], field="unsubscribe_mailto")
        unsubscribe.append(f"<{mailto}>")

    lines = [
        "From: " + _mailbox(sender, field="sender", strict=False),
        "To: " + _mailbox(to, field="to", strict=True),
        _header("Subject", clean_subject),
        "Date: " + format_date(when),
        f"Message-ID: <{when.astimezone(UTC):%Y%m%d%H%M%S}.{os.urandom(10).hex()}@{domain}>",
        "MIME-Version: 1.0",
        *(["Reply-To: " + _mailbox(reply_to, field="reply_to", strict=True)] if reply_to else []),
        # Never encoded: a mailbox provider reads the URLs as they are.
        _list_unsubscribe(unsubscribe),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise BadRequestError(f"headers: {name!r} is not a valid header name")
        if name.lower() in _RESERVED:
            raise BadRequestError(f"headers: {name} is set by the engine and cannot be overridden")
        cleaned = clean_header_value(str(value))
        if cleaned:
            lines.append(_header(name, cleaned))

    if html and preheader:
        clean_pre = clean_header_value(preheader)
        if clean_pre:
            html = with_preheader(html, clean_pre)

    parts = [_part("plain", text) if text else b"", _part("html", html) if html else b""]
    parts = [p for p in parts if p]
    if len(parts) == 1:
        head = "\r\n".join(lines) + "\r\n"
        raw = head.encode() + parts[0]
    else:
        boundary = "=_rt_" + os.urandom(12).hex()
        lines.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"')
        head = "\r\n".join(lines) + "\r\n\r\n"
        delimiter = f"--{boundary}\r\n".encode()
        raw = (
            head.encode()
            + b"".join(delimiter + part + (b"" if part.endswith(b"\r\n") else b"\r\n") for part in parts)
            + f"--{boundary}--\r\n".encode()
        )
    if any(len(line) > MAX_HEADER_LINE for line in head.split("\r\n")):
        raise BadRequestError("a header line would exceed 998 characters")
    return raw


def parse_email(raw: bytes) -> dict[str, Any]:
    """`{subject, from, to, text, html, headers: {name: decoded value}}` of a raw message."""
    import email  # only the local outbox and tests parse: keep the parser off the send path
    from email import policy

    message = email.message_from_bytes(raw, policy=policy.default)
    headers: dict[str, str] = {}
    for name, value in message.items():
        headers.setdefault(name, str(value))
    text = html = None
    plain_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    if plain_part is not None:
        text = plain_part.get_content().replace("\r\n", "\n")
    if html_part is not None:
        html = html_part.get_content().replace("\r\n", "\n")
    return {
        "subject": headers.get("Subject", ""),
        "from": headers.get("From", ""),
        "to": headers.get("To", ""),
        "text": text,
        "html": html,
        "headers": headers,
    }
