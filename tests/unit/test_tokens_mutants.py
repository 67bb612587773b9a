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


def test_the_same_payload_gives_the_same_token_whatever_the_order_of_its_objects() -> None:
    """Kills `json.dumps(…, sort_keys=True)` → False in `_json`: a JSON field is written with sorted keys,
    so a payload built in another order (another code path, a retry) signs to the same bytes."""
    one = sign({"p": {"b": 1, "a": 2}, "longer": {"y": 1, "x": 2}}, KEY, expires_at=None, purpose="p")
    two = sign({"p": {"a": 2, "b": 1}, "longer": {"x": 2, "y": 1}}, KEY, expires_at=None, purpose="p")
    assert one == two
    assert verify(one, [KEY], "p", LATER) == {"p": {"a": 2, "b": 1}, "longer": {"x": 2, "y": 1}}


@pytest.mark.parametrize("token", ["no-separator-at-all", "signed-part~", "~"])
def test_a_token_without_a_mac_part_is_malformed(token: str) -> None:
    """Kills `if not sep or not given_mac` → `and` in `verify`: a token with no `~` or nothing after the
    last one is malformed (its own message), not checked as a forgery."""
    with pytest.raises(TokenInvalidError, match="malformed"):
        verify(token, [KEY], "p", LATER)


def test_an_empty_webhook_secret_slot_is_skipped_not_the_end_of_the_list() -> None:
    """Kills `if not secret: continue` → `break` in `verify_webhook`: during a rotation the old-secret slot
    may be empty; the secrets after it still verify."""
    from retention.core.tokens import sign_webhook, verify_webhook
    t = int(LATER.timestamp())
    body = b'{"event_id": "e1"}'
    verify_webhook(sign_webhook(body, KEY, t), body, ["", KEY], LATER)
