"""Hostile ingestion bodies (issue 15, item 1 and 4): gzip members, message counts, batch context size.
Each cap is checked by outcome; the linear-time property by counting the bytes fed to the decompressor."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from retention.core.errors import BadRequestError, PayloadTooLargeError
from retention.ingestion import wire

NOW = datetime(2026, 11, 23, 19, 33, 0, tzinfo=UTC)


def _msg(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u1", "messageId": f"m{i}", **extra}


def test_many_empty_gzip_members_are_refused_fast() -> None:
    empty = gzip.compress(b"")
    body = empty * (2_000_000 // len(empty))  # 2 MB of empty members: 8 s before the cap
    with pytest.raises(PayloadTooLargeError, match="gzip body has more than"):
        wire.decode_body(body, False, {"Content-Encoding": "gzip"})


def test_a_few_members_still_decode() -> None:
    parts = [gzip.compress(b'{"batch": ['), gzip.compress(b"]}")]
    assert wire.decode_body(b"".join(parts), False, {}) == b'{"batch": []}'
    too_many = gzip.compress(b" ") * (wire.MAX_GZIP_MEMBERS + 1)
    with pytest.raises(PayloadTooLargeError):
        wire.decode_body(too_many, False, {})


def test_decompression_is_linear_in_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member used to receive the whole rest of the body (copied): quadratic in members × size."""
    real = zlib.decompressobj
    fed: list[int] = []

    class Counting:
        def __init__(self, *a: Any, **kw: Any) -> None:
            self._d = real(*a, **kw)

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            fed.append(len(data))
            return self._d.decompress(data, max_length)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._d, name)

    monkeypatch.setattr(wire.zlib, "decompressobj", Counting)
    members = [gzip.compress(os.urandom(120_000)) for _ in range(wire.MAX_GZIP_MEMBERS)]
    data = b"".join(members)
    with pytest.raises(BadRequestError):  # random bytes are not UTF-8 JSON, but they decompress
        wire.parse_request("batch", wire.decode_body(data, False, {}), NOW)
    assert sum(fed) <= len(data) + 2 * wire.GZIP_FEED * len(members)


def test_truncated_and_garbage_gzip_are_400() -> None:
    data = gzip.compress(b'{"batch": []}' * 1000)
    with pytest.raises(BadRequestError, match="truncated"):
        wire.decode_body(data[: len(data) // 2], False, {})
    with pytest.raises(BadRequestError, match="trailing garbage"):
        wire.decode_body(data + b"xyz", False, {})
    assert wire.decode_body(data + b"\x00" * 10, False, {}) == b'{"batch": []}' * 1000


def test_message_count_over_the_cap_is_413_before_any_message_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **kw: Any) -> Any:
        raise AssertionError("a message was normalized")

    monkeypatch.setattr(wire, "_normalize", boom)
    raw = json.dumps({"batch": [{}] * (wire.MAX_BATCH_MESSAGES + 1)}).encode()
    with pytest.raises(PayloadTooLargeError, match="2500"):
        wire.parse_request("batch", raw, NOW)
    tiny = gzip.compress(json.dumps({"batch": [{}] * 115_000}).encode(), 9)
    assert len(tiny) < 20_000
    with pytest.raises(PayloadTooLargeError):
        wire.parse_request("batch", wire.decode_body(tiny, False, {}), NOW)


def test_exactly_the_cap_is_fine() -> None:
    raw = json.dumps({"batch": [_msg(i) for i in range(wire.MAX_BATCH_MESSAGES)]}).encode()
    assert len(wire.parse_request("batch", raw, NOW).messages) == wire.MAX_BATCH_MESSAGES


def test_batch_context_counts_toward_the_message_size() -> None:
    big = "x" * 20_000
    raw = json.dumps({"batch": [_msg(1, properties={"note": big}), _msg(2)],
                      "context": {"traits": {"bio": big}}}).encode()
    parsed = wire.parse_request("batch", raw, NOW)
    assert [m.message_id for m in parsed.messages] == ["m2"]
    assert parsed.rejected[0].index == 0 and "batch context" in parsed.rejected[0].error


def test_batch_context_over_the_message_limit_is_413() -> None:
    raw = json.dumps({"batch": [_msg(1)], "context": {"traits": {"bio": "x" * 300_000}}}).encode()
    with pytest.raises(PayloadTooLargeError, match="batch context"):
        wire.parse_request("batch", raw, NOW)


def test_overlapping_batch_context_is_measured_exactly() -> None:
    """The quick sum over-counts a key both contexts share: the exact merge decides."""
    ctx = {"library": {"name": "x" * 17_000}}
    raw = json.dumps({"batch": [_msg(1, context=ctx)], "context": ctx}).encode()
    assert len(wire.parse_request("batch", raw, NOW).messages) == 1
