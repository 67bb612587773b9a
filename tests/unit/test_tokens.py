import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from retention.core.errors import BadRequestError, UnauthorizedError
from retention.core.tokens import (
    SignatureError,
    TokenError,
    TokenExpiredError,
    TokenInvalidError,
    hash_secret,
    new_secret,
    secret_matches,
    sign,
    sign_webhook,
    verify,
    verify_webhook,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = b"k" * 32
OLD_KEY = b"o" * 32
PAYLOAD = {"c": "cust_01HZX8J2K4M6N8P", "r": "nps-survey", "s": "a1b2c3d4e5f6"}


def test_round_trip():
    token = sign(PAYLOAD, KEY, expires_at=NOW + timedelta(days=30), purpose="nps")
    assert verify(token, [KEY], "nps", NOW) == PAYLOAD


def test_token_is_url_safe_and_short_enough_for_an_sms_link():
    token = sign(PAYLOAD, KEY, expires_at=NOW + timedelta(days=30), purpose="nps")
    assert len(PAYLOAD["c"]) == 20
    assert len(token) < 80
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    never = sign({"c": PAYLOAD["c"], "r": "abandoned-cart", "s": PAYLOAD["s"]}, KEY, expires_at=None, purpose="unsub")
    assert len(never) < 80


def test_tokens_are_deterministic():
    first = sign(PAYLOAD, KEY, expires_at=NOW, purpose="nps")
    second = sign(dict(reversed(PAYLOAD.items())), KEY, expires_at=NOW, purpose="nps")
    assert first == second


@pytest.mark.parametrize(
    "payload",
    [
        {"c": "anna@example.com", "n": 10, "v": True, "x": None},
        {"c": "Анна ~ тильда", "l": [1, 2, {"a": "b"}]},
        {"customer_id": "c1", "ch": "email", "ledger": "0" * 32},
        {"c": "", "e": "plain.value-with_punct"},
        {},
    ],
)
def test_any_json_payload_round_trips(payload):
    token = sign(payload, KEY, expires_at=None, purpose="unsub")
    assert verify(token, [KEY], "unsub", NOW) == payload


def test_expired():
    token = sign(PAYLOAD, KEY, expires_at=NOW + timedelta(seconds=60), purpose="nps")
    assert verify(token, [KEY], "nps", NOW + timedelta(seconds=59)) == PAYLOAD
    with pytest.raises(TokenExpiredError) as err:
        verify(token, [KEY], "nps", NOW + timedelta(seconds=60))
    assert err.value.code == "token_expired"
    assert "expired" in err.value.message


def test_a_token_without_expiry_never_expires():
    token = sign(PAYLOAD, KEY, expires_at=None, purpose="unsub")
    assert verify(token, [KEY], "unsub", NOW + timedelta(days=3650)) == PAYLOAD


def test_wrong_purpose_is_invalid():
    token = sign(PAYLOAD, KEY, expires_at=None, purpose="unsub")
    with pytest.raises(TokenInvalidError):
        verify(token, [KEY], "nps", NOW)


def test_tampering_is_detected_anywhere():
    token = sign(PAYLOAD, KEY, expires_at=NOW + timedelta(days=1), purpose="nps")
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        tampered = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(TokenInvalidError):
            verify(tampered, [KEY], "nps", NOW)


def test_extending_the_expiry_is_detected():
    token = sign(PAYLOAD, KEY, expires_at=NOW + timedelta(days=1), purpose="nps")
    _expiry, rest = token.split("~", 1)
    with pytest.raises(TokenInvalidError):
        verify("zzzzzz~" + rest, [KEY], "nps", NOW)  # year 2038+
    with pytest.raises(TokenInvalidError):
        verify("~" + rest, [KEY], "nps", NOW)  # expiry removed


def test_rotation_accepts_any_listed_secret():
    token = sign(PAYLOAD, OLD_KEY, expires_at=None, purpose="nps")
    assert verify(token, [KEY, OLD_KEY], "nps", NOW) == PAYLOAD
    with pytest.raises(TokenInvalidError):
        verify(token, [KEY], "nps", NOW)
    with pytest.raises(TokenInvalidError):
        verify(token, [], "nps", NOW)
    with pytest.raises(TokenInvalidError):
        verify(token, [b""], "nps", NOW)  # an unset secret never matches
    with pytest.raises(ValueError):
        sign(PAYLOAD, b"", expires_at=None, purpose="nps")


def test_str_and_bytes_secrets_are_the_same_key():
    token = sign(PAYLOAD, "secret-value", expires_at=None, purpose="nps")
    assert verify(token, [b"secret-value"], "nps", NOW) == PAYLOAD


@pytest.mark.parametrize("garbage", ["", "~", "abc", "~~~", "x" * 3000, "é~abc", None, 42])
def test_garbage_is_invalid(garbage):
    with pytest.raises(TokenInvalidError):
        verify(garbage, [KEY], "nps", NOW)


def test_token_errors_are_bad_requests():
    assert issubclass(TokenError, BadRequestError)
    assert issubclass(TokenExpiredError, TokenError)
    assert issubclass(TokenInvalidError, TokenError)
    assert TokenInvalidError("x").status == 400


# --- webhooks ---------------------------------------------------------------------------------

BODY = b'{"event_id":"e1","userId":"u1","score":9}'
T = int(NOW.timestamp())


def test_webhook_signature_format():
    header = sign_webhook(BODY, KEY, T)
    # the documented recipe, computed independently
    digest = hmac.new(KEY, f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={digest}"


def test_webhook_good():
    verify_webhook(sign_webhook(BODY, KEY, T), BODY, [KEY], NOW)
    verify_webhook(sign_webhook(BODY, KEY, T - 300), BODY, [KEY], NOW)  # exactly at the tolerance
    verify_webhook(sign_webhook(BODY, KEY, T + 300), BODY, [KEY], NOW)


def test_webhook_stale():
    with pytest.raises(SignatureError) as err:
        verify_webhook(sign_webhook(BODY, KEY, T - 301), BODY, [KEY], NOW)
    assert "stale timestamp" in err.value.message
    assert "301 s" in err.value.message


def test_webhook_from_the_future():
    with pytest.raises(SignatureError) as err:
        verify_webhook(sign_webhook(BODY, KEY, T + 301), BODY, [KEY], NOW)
    assert "future" in err.value.message


def test_webhook_custom_tolerance():
    header = sign_webhook(BODY, KEY, T - 100)
    verify_webhook(header, BODY, [KEY], NOW, tolerance=100)
    with pytest.raises(SignatureError):
        verify_webhook(header, BODY, [KEY], NOW, tolerance=99)


def test_webhook_bad_signature():
    with pytest.raises(SignatureError) as err:
        verify_webhook(sign_webhook(BODY, b"wrong", T), BODY, [KEY], NOW)
    assert "no matching signature" in err.value.message
    with pytest.raises(SignatureError):
        verify_webhook(sign_webhook(BODY, KEY, T), BODY + b" ", [KEY], NOW)
    # a signature moved to another timestamp does not verify
    good = sign_webhook(BODY, KEY, T).split(",")[1]
    with pytest.raises(SignatureError):
        verify_webhook(f"t={T - 1},{good}", BODY, [KEY], NOW)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_webhook_missing_header(header):
    with pytest.raises(SignatureError) as err:
        verify_webhook(header, BODY, [KEY], NOW)
    assert "missing" in err.value.message


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t=abc,v1={'0' * 64}",
        f"v1={'0' * 64}",
        f"t={T}",
        f"t={T},v0=abc",
        f"t={T},t={T},v1={'0' * 64}",
        f"t=-{T},v1={'0' * 64}",
        f"t={T},v1=" + "0" * 5000,
    ],
)
def test_webhook_malformed(header):
    with pytest.raises(SignatureError) as err:
        verify_webhook(header, BODY, [KEY], NOW)
    assert "malformed" in err.value.message


def test_webhook_several_signatures_and_rotated_secrets():
    new = sign_webhook(BODY, KEY, T).split(",")[1]
    old = sign_webhook(BODY, OLD_KEY, T).split(",")[1]
    # the sender signs with both secrets during a rotation; the receiver knows only one of them
    verify_webhook(f"t={T},{old},{new}", BODY, [KEY], NOW)
    verify_webhook(f"t={T}, {new} , v0=ignored", BODY, [KEY], NOW)
    # the receiver accepts any of its secrets
    verify_webhook(sign_webhook(BODY, OLD_KEY, T), BODY, [KEY, OLD_KEY], NOW)
    verify_webhook(
        sign_webhook(BODY, OLD_KEY, T).upper().replace("T=", "t=").replace("V1=", "v1="), BODY, [OLD_KEY], NOW
    )


def test_signature_errors_are_unauthorized():
    assert issubclass(SignatureError, UnauthorizedError)
    assert SignatureError("x").status == 401


# --- stored secrets ---------------------------------------------------------------------------


def test_new_secret():
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(first) == 43
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_and_match():
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    stored = hash_secret("dev-write-key")
    assert secret_matches("dev-write-key", stored)
    assert secret_matches("dev-write-key", stored.upper())
    assert not secret_matches("dev-write-kez", stored)
    assert not secret_matches("", stored)
    assert not secret_matches(None, stored)
    assert not secret_matches("dev-write-key", None)
    assert not secret_matches("dev-write-key", "é" * 64)
