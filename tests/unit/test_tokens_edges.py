"""Edges of the signed tokens that `make mutate` found untested (bench/results/mutation.md): the wire format
itself (links already in inboxes must keep working after a deploy), field-name boundaries, naive datetimes
on a machine whose zone is not UTC, the length and header caps at their exact limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from retention.core import tokens
from retention.core.tokens import (
    SignatureError,
    TokenExpiredError,
    TokenInvalidError,
    sign,
    sign_webhook,
    verify,
    verify_webhook,
)

KEY = b"k" * 32
MAX_TOKEN_LENGTH = 2048  # the caps as documented, not imported: a changed constant must fail here
MAX_SIGNATURE_HEADER = 4096
EXPIRES = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone set to UTC+10, where a naive datetime's .timestamp() is 10 h off."""
    monkeypatch.setenv("TZ", "Asia/Vladivostok")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_wire_format_is_stable() -> None:
    """A link in a sent email must verify after any deploy: the exact bytes of a token are a contract
    (MAC length, field encoding, JSON of non-ASCII values, base-36 expiry)."""
    token = sign({"c": "u1", "l": "abc", "n": "Анна", "extra_key": 1}, KEY, expires_at=EXPIRES, purpose="nps")
    assert token == GOLDEN
    assert verify(GOLDEN, [KEY], "nps", EXPIRES - timedelta(days=1)) == {"c": "u1", "l": "abc", "n": "Анна",
                                                                          "extra_key": 1}
    assert len(GOLDEN.rsplit("~", 1)[1]) == 22  # 16 bytes of HMAC-SHA256, base64url


# computed once by the signer of 2026-12 (issue 21); a change here breaks every link already sent
GOLDEN = "tqxpc0~cu1~labc~NItCQ0L3QvdCwIg~_eyJleHRyYV9rZXkiOjF9~yUJ56Q7WGfx1OhJ2PfKu7w"


def test_base36_of_zero_and_small_values() -> None:
    assert tokens._to_base36(0) == "0"
    assert tokens._to_base36(35) == "z" and tokens._to_base36(36) == "10"


@pytest.mark.parametrize("purpose", ["", "nps\x00unsub"])
def test_a_purpose_is_non_empty_and_without_nul(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        sign({"c": "x"}, KEY, expires_at=None, purpose=purpose)
    with pytest.raises(ValueError, match="purpose"):
        verify("x~y", [KEY], purpose, EXPIRES)


@pytest.mark.parametrize("payload", [
    {"a": "first", "z": "last"},  # literal fields at both ends of the alphabet
    {"a": [1, 2], "z": {"q": "ü"}},  # JSON fields: `A…`, `Z…`
    {"a": "x", "b": None, "y": True, "z": 3.5, "other": "extra"},
])
def test_every_one_letter_field_round_trips(payload: dict[str, object]) -> None:
    token = sign(payload, KEY, expires_at=None, purpose="p")
    assert verify(token, [KEY], "p", EXPIRES) == payload


def test_naive_datetimes_are_utc_even_on_a_machine_in_another_zone(far_east: None) -> None:
    aware = sign({"c": "u"}, KEY, expires_at=EXPIRES, purpose="p")
    naive = sign({"c": "u"}, KEY, expires_at=EXPIRES.replace(tzinfo=None), purpose="p")
    assert naive == aware
    just_before = (EXPIRES - timedelta(seconds=1)).replace(tzinfo=None)
    assert verify(aware, [KEY], "p", just_before) == {"c": "u"}
    with pytest.raises(TokenExpiredError):
        verify(aware, [KEY], "p", EXPIRES.replace(tzinfo=None))


def test_webhook_naive_now_is_utc_on_a_machine_in_another_zone(far_east: None) -> None:
    t = int(EXPIRES.timestamp())
    body = b'{"event_id": "e1"}'
    verify_webhook(sign_webhook(body, KEY, t), body, [KEY], EXPIRES.replace(tzinfo=None))
    with pytest.raises(SignatureError, match="stale"):
        verify_webhook(sign_webhook(body, KEY, t), body, [KEY], (EXPIRES + timedelta(seconds=301)).replace(tzinfo=None))


def _token_of_length(n: int) -> str:
    base = sign({"c": ""}, KEY, expires_at=EXPIRES, purpose="p")
    token = sign({"c": "x" * (n - len(base))}, KEY, expires_at=EXPIRES, purpose="p")
    assert len(token) == n
    return token


def test_token_length_cap_is_exact() -> None:
    """Authentic tokens too long are refused before any decoding; one of exactly the cap is accepted."""
    assert verify(_token_of_length(MAX_TOKEN_LENGTH), [KEY], "p", EXPIRES - timedelta(days=1))["c"]
    with pytest.raises(TokenInvalidError, match="malformed"):
        verify(_token_of_length(MAX_TOKEN_LENGTH + 1), [KEY], "p", EXPIRES - timedelta(days=1))


def test_a_non_ascii_token_is_malformed_not_a_crash() -> None:
    with pytest.raises(TokenInvalidError, match="malformed"):
        verify("cü~абв", [KEY], "p", EXPIRES)


def test_an_authentic_but_undecodable_token_is_invalid_not_a_crash() -> None:
    """Only a buggy signer can produce one; it must end as a 400, not a 500."""
    for signed in ("~A!!!", "~cok~cdup", "~_W10", "~?x", "zz!~cx"):
        token = signed + "~" + tokens._mac(KEY, "p", signed)
        with pytest.raises(TokenInvalidError, match="malformed"):
            verify(token, [KEY], "p", EXPIRES)


def test_webhook_header_cap_is_exact() -> None:
    t = int(EXPIRES.timestamp())
    body = b"{}"
    header = sign_webhook(body, KEY, t) + ",x="
    header += "a" * (MAX_SIGNATURE_HEADER - len(header))
    assert len(header) == MAX_SIGNATURE_HEADER
    verify_webhook(header, body, [KEY], EXPIRES)
    with pytest.raises(SignatureError, match="malformed"):
        verify_webhook(header + "a", body, [KEY], EXPIRES)


def test_base36_of_one() -> None:
    assert tokens._to_base36(1) == "1"
