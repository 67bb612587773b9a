"""Signed, expiring, URL-safe link tokens; webhook signatures; hashed secrets.

Link token format (short enough for an SMS link)::

    <expiry>~<field>~<field>…~<mac>

- `expiry`: unix seconds in base 36, empty when the token does not expire;
- `field`: one payload entry, sorted by key. A one-letter key `k` with a string value made of
  `[A-Za-z0-9_.-]` is written literally as `k<value>`; any other value of a one-letter key is
  `K<base64url(JSON)>` (the key upper-cased); all longer keys go together into one
  `_<base64url(JSON object)>` field;
- `mac`: HMAC-SHA256 truncated to 16 bytes, base64url, over a domain tag, the `purpose` and
  everything before the last `~`. The purpose is not in the token, it is in the MAC: an
  unsubscribe token does not verify as an NPS token.

`{c: <20-char customer id>, r: "nps-survey", s: <12-char ledger id>}` with an expiry is 77
characters. Several secrets are tried on verification so a secret can be rotated without
breaking links already sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from retention.core.errors import BadRequestError, UnauthorizedError

MAC_BYTES = 16
MAX_TOKEN_LENGTH = 2048
_DOMAIN = b"retention-token-v1\x00"
_SEP = "~"
_LITERAL = re.compile(r"[A-Za-z0-9_.\-]*")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

Secret = bytes | str


class TokenError(BadRequestError):
    code = "invalid_token"


class TokenExpiredError(TokenError):
    code = "token_expired"


class TokenInvalidError(TokenError):
    code = "invalid_token"


class SignatureError(UnauthorizedError):
    code = "invalid_signature"


def _key_bytes(secret: Secret) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("an empty secret cannot sign anything")
    return secret


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _to_base36(value: int) -> str:
    if value <= 0:
        return "0"
    digits = []
    while value:
        value, rest = divmod(value, 36)
        digits.append(_B36[rest])
    return "".join(reversed(digits))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def _mac(secret: Secret, purpose: str, signed: str) -> str:
    digest = hmac.new(
        _key_bytes(secret), _DOMAIN + purpose.encode() + b"\x00" + signed.encode(), hashlib.sha256
    ).digest()
    return _b64encode(digest[:MAC_BYTES])


def _check_purpose(purpose: str) -> None:
    if not purpose or "\x00" in purpose:
        raise ValueError("a token purpose is a non-empty string")


def _encode_fields(payload: dict[str, Any]) -> list[str]:
    fields: list[str] = []
    extra: dict[str, Any] = {}
    for key in sorted(payload):
        value = payload[key]
        if not isinstance(key, str):
            raise TypeError("token payload keys are strings")
        if len(key) == 1 and "a" <= key <= "z":
            if isinstance(value, str) and _LITERAL.fullmatch(value):
                fields.append(key + value)
            else:
                fields.append(key.upper() + _b64encode(_json(value)))
        else:
            extra[key] = value
    if extra:
        fields.append("_" + _b64encode(_json(extra)))
    return fields


def _decode_fields(fields: list[str]) -> dict[str, Any]:
    payload: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in payload:
            raise ValueError(f"duplicate key {key!r}")
        payload[key] = value

    for field in fields:
        head, rest = field[:1], field[1:]
        if "a" <= head <= "z":
            if not _LITERAL.fullmatch(rest):
                raise ValueError("bad literal")
            put(head, rest)
        elif "A" <= head <= "Z":
            put(head.lower(), json.loads(_b64decode(rest)))
        elif head == "_":
            extra = json.loads(_b64decode(rest))
            if not isinstance(extra, dict):
                raise ValueError("bad extra field")
            for key, value in extra.items():
                put(key, value)
        else:
            raise ValueError("bad field")
    return payload


def sign(payload: dict[str, Any], secret: Secret, *, expires_at: datetime | None, purpose: str) -> str:
    """A URL-safe token carrying `payload` (JSON values), valid for `purpose` until `expires_at`."""
    _check_purpose(purpose)
    expiry = ""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        expiry = _to_base36(int(expires_at.timestamp()))
    signed = _SEP.join([expiry, *_encode_fields(payload)])
    return signed + _SEP + _mac(secret, purpose, signed)


def verify(token: str, secrets: Sequence[Secret], purpose: str, now: datetime) -> dict[str, Any]:
    """The payload of a token signed with any of `secrets` for `purpose` and not expired at `now`.

    Raises TokenInvalidError (tampered, wrong purpose, unknown secret, garbage) or
    TokenExpiredError (authentic but past its expiry).
    """
    _check_purpose(purpose)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenInvalidError("the link token is malformed")
    signed, sep, given_mac = token.rpartition(_SEP)
    if not sep or not given_mac:
        raise TokenInvalidError("the link token is malformed")
    matched = False
    for secret in secrets:
        if secret and hmac.compare_digest(_mac(secret, purpose, signed), given_mac):
            matched = True
    if not matched:
        raise TokenInvalidError("the link token is invalid (altered, for another purpose, or revoked)")
    expiry, *fields = signed.split(_SEP)
    try:
        payload = _decode_fields(fields)
        expires = int(expiry, 36) if expiry else None
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        # Authentic yet undecodable: only possible with a buggy signer; never trust it.
        raise TokenInvalidError("the link token is malformed") from exc
    if expires is not None:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if now.timestamp() >= expires:
            raise TokenExpiredError("the link has expired")
    return payload


# --- webhooks -----------------------------------------------------------------------------------

MAX_SIGNATURE_HEADER = 4096


def _webhook_hex(body: bytes, secret: Secret, t: int) -> str:
    return hmac.new(_key_bytes(secret), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(body: bytes, secret: Secret, t: int) -> str:
    """The `X-Signature` header value: `t=<unix>,v1=<hex HMAC-SHA256 of "t." + body>`."""
    return f"t={t},v1={_webhook_hex(body, secret, t)}"


def verify_webhook(
    header: str | None,
    body: bytes,
    secrets: Sequence[Secret],
    now: datetime,
    tolerance: int = 300,
) -> None:
    """Accept a webhook signed with any of `secrets` within `tolerance` seconds of `now`.

    Several `v1=` entries are allowed (the sender signs with old and new secret during a
    rotation); unknown schemes are ignored. Raises SignatureError with what is wrong.
    """
    if header is None or not header.strip():
        raise SignatureError("missing X-Signature header")
    malformed = "malformed X-Signature header: expected t=<unix seconds>,v1=<hex HMAC-SHA256>"
    if len(header) > MAX_SIGNATURE_HEADER:
        raise SignatureError(malformed)
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq:
            raise SignatureError(malformed)
        name, value = name.strip(), value.strip()
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureError(malformed)
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureError(malformed)
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = _webhook_hex(body, secret, timestamp)
        for candidate in candidates:
            if hmac.compare_digest(expected.encode(), candidate.encode("ascii", "replace")):
                matched = True
    if not matched:
        raise SignatureError("no matching signature: check the webhook secret and sign the raw body")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    age = int(now.timestamp()) - timestamp
    if age > tolerance:
        raise SignatureError(f"stale timestamp: signed {age} s ago, the tolerance is {tolerance} s")
    if -age > tolerance:
        raise SignatureError(f"timestamp {-age} s in the future, the tolerance is {tolerance} s (check the clock)")


# --- stored secrets -----------------------------------------------------------------------------


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret (write key, admin token, signing key): `nbytes` random bytes, URL-safe
    (43 characters for 32 bytes)."""
    import secrets  # secrets are created rarely (CLI, first use of a signing key): keep it off the cold start

    return secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    """What is stored instead of a write key or admin token: SHA-256, hex."""
    return hashlib.sha256(value.encode()).hexdigest()


def secret_matches(value: str | None, hashed: str | None) -> bool:
    """Constant-time check of a presented secret against its stored hash."""
    if not value or not hashed:
        return False
    return hmac.compare_digest(hash_secret(value).encode(), hashed.strip().lower().encode("ascii", "replace"))
