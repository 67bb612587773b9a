"""Token behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md): strict
base64 in authentic tokens, the literal encoding of one-letter keys at the ends of the alphabet, and an
expiry one second after the epoch. Each test names the mutant it kills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from retention.core import tokens
from retention.core.tokens import TokenExpiredError, TokenInvalidError, sign, verify

KEY = b"k" * 32
LATER = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("signed", [
    "~AMTIz!!!!",  # `a` = 123 once the four `!` are dropped
    "~Z*MTIz",
    "~_eyJ6IjoieCJ9!!!!",  # {"z": "x"} once the `!` are dropped
])
def test_an_authentic_token_with_stray_characters_in_a_base64_field_is_refused(signed: str) -> None:
    """Kills `base64.b64decode(…, validate=True)` → `validate=False` in `_b64decode`: a lenient decoder drops
    the characters outside the alphabet and reads a payload the signer never wrote. Only a buggy signer can
    produce such a token (it carries a valid MAC); it is refused, never half-read."""
    token = signed + "~" + tokens._mac(KEY, "p", signed)
    with pytest.raises(TokenInvalidError, match="malformed"):
        verify(token, [KEY], "p", LATER)


def test_one_letter_keys_a_and_z_are_written_literally() -> None:
    """Kills `"a" <= key <= "z"` → `"a" < key` / `key < "z"` in `_encode_fields`: the module's format puts a
    one-letter key with a plain value as `k<value>` (short SMS links); `a` and `z` must not fall back to the
    longer JSON field."""
    token = sign({"a": "first", "m": "mid", "z": "last"}, KEY, expires_at=None, purpose="p")
    assert token.split("~")[:-1] == ["", "afirst", "mmid", "zlast"]
    assert verify(token, [KEY], "p", LATER) == {"a": "first", "m": "mid", "z": "last"}


@pytest.mark.parametrize("seconds", [1, 2, 35, 36, 37])
def test_an_expiry_seconds_after_the_epoch_is_exact(seconds: int) -> None:
    """Kills `if value <= 0: return "0"` → `<= 1` in `_to_base36`: a token expiring at epoch + 1 s would read
    as expiring at the epoch. Valid until its expiry, expired from it."""
    expires = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    token = sign({"c": "u"}, KEY, expires_at=expires, purpose="p")
    assert verify(token, [KEY], "p", expires - timedelta(milliseconds=500)) == {"c": "u"}
    with pytest.raises(TokenExpiredError):
        verify(token, [KEY], "p", expires)
