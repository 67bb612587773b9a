"""The Segment/Rudder wire protocol: real captured requests and every bad-input case."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from retention.core import clock
from retention.core.errors import BadRequestError, PayloadTooLargeError
from retention.ingestion import wire

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "segment-wire"
if not FIXTURES.exists():  # the repo may sit elsewhere; /work/shared is the shared checkout
    FIXTURES = Path("/work/shared/fixtures/segment-wire")

NOW = datetime(2026, 11, 23, 19, 33, 0, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "u1",
        "messageId": "m-ok",
        "timestamp": "2026-11-23T19:00:00.000Z",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def parse_batch(*messages: Any, **top: Any) -> wire.ParsedRequest:
    return wire.parse_request("batch", body({"batch": list(messages), **top}), NOW)


def rejected_one(bad: Any) -> wire.Rejection:
    """Parse [good, bad, good]: the good ones survive, the bad one is rejected at index 1."""
    parsed = parse_batch(msg(messageId="g1"), bad, msg(messageId="g2"))
    assert parsed.count == 3
    assert [m.message_id for m in parsed.messages] == ["g1", "g2"]
    assert len(parsed.rejected) == 1
    rejection = parsed.rejected[0]
    assert rejection.index == 1
    return rejection


# --------------------------------------------------------------------------- real clients


def test_rudder_fixture_gzip_via_base64_parses_fully() -> None:
    fx = load("rudder-sdk-python-2.1.9.json")
    raw = wire.decode_body(fx["body_base64"], True, fx["headers"])
    assert json.loads(raw) == fx["decoded_body"]
    sent_at = clock.parse_iso(fx["decoded_body"]["sentAt"])
    received = sent_at + timedelta(seconds=2)
    parsed = wire.parse_request("batch", raw, received)

    assert parsed.count == 7
    assert parsed.rejected == []
    assert [m.type for m in parsed.messages] == [
        "identify",
        "track",
        "page",
        "screen",
        "alias",
        "group",
        "track",
    ]
    identify = parsed.messages[0]
    assert identify.user_id == "u1"
    assert identify.anonymous_id is None  # null id accepted
    assert identify.traits == {"email": "a@b.c"}  # Rudder: only in context.traits
    screen = parsed.messages[3]
    assert screen.user_id is None and screen.anonymous_id == "anon-1" and screen.name == "Home"
    alias = parsed.messages[4]
    assert alias.previous_id == "anon-1" and alias.user_id == "u1"
    assert parsed.messages[5].group_id == "g1"
    naive = parsed.messages[6]
    assert naive.message_id == "12345"
    assert naive.event == "Naive"
    assert naive.original_timestamp == datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    # received − (sentAt − timestamp): the event keeps its distance to the send
    assert naive.timestamp == datetime(2020, 1, 2, 3, 4, 7, 678901, tzinfo=UTC)
    assert naive.sent_at == sent_at
    assert naive.received_at == received
    assert naive.context["ip"] == "1.2.3.4"
    assert wire.write_key_from(fx["headers"], json.loads(raw)) == "WK_rud"
    assert parsed.write_key is None
    assert wire.reply(parsed) == {"success": True, "accepted": 7, "rejected": []}


def test_segment_fixture_plain_json_parses_fully() -> None:
    fx = load("segment-analytics-python-2.4.0.json")
    raw = wire.decode_body(fx["body_base64"], True, fx["headers"])
    received = datetime(2026, 11, 23, 19, 32, 47, 414843, tzinfo=UTC)  # sentAt + 1 s
    parsed = wire.parse_request("batch", raw, received)

    assert parsed.count == 7 and len(parsed.messages) == 7 and parsed.rejected == []
    assert parsed.write_key == "WK_seg"
    assert wire.write_key_from(fx["headers"], None) == "WK_seg"
    assert parsed.messages[0].traits == {"email": "a@b.c"}
    track = parsed.messages[1]
    assert track.event == "Signed Up" and track.properties == {"plan": "pro"}
    # 19:32:45.914 sent at 19:32:46.414843, received 1 s later
    assert track.timestamp == datetime(2026, 11, 23, 19, 32, 46, 914000, tzinfo=UTC)
    assert parsed.messages[2].name == "Intro"
    last = parsed.messages[6]
    assert last.message_id == "12345"
    assert last.timestamp == datetime(2020, 1, 2, 3, 4, 6, 678000, tzinfo=UTC)


# --------------------------------------------------------------------------- decode_body


def test_decode_plain_str_and_bytes_and_none() -> None:
    assert wire.decode_body('{"a":1}', False, {}) == b'{"a":1}'
    assert wire.decode_body(b'{"a":1}', False, {}) == b'{"a":1}'
    assert wire.decode_body(None, False, {}) == b""


def test_decode_gzip_by_header_any_case() -> None:
    data = gzip.compress(b'{"batch": []}')
    assert wire.decode_body(data, False, {"CONTENT-ENCODING": "gzip"}) == b'{"batch": []}'


def test_decode_gzip_by_magic_without_header() -> None:
    data = base64.b64encode(gzip.compress(b'{"x": 2}')).decode()
    assert wire.decode_body(data, True, {}) == b'{"x": 2}'


def test_decode_gzip_header_on_plain_json_passes_through() -> None:
    assert wire.decode_body(b'{"x": 3}', False, {"content-encoding": "gzip"}) == b'{"x": 3}'


def test_decode_multi_member_gzip() -> None:
    data = gzip.compress(b'{"a":') + gzip.compress(b"1}")
    assert wire.decode_body(data, False, {"Content-Encoding": "gzip"}) == b'{"a":1}'


def test_corrupt_gzip_is_bad_request() -> None:
    data = gzip.compress(b'{"batch": []}' * 100)
    with pytest.raises(BadRequestError, match="corrupt gzip"):
        wire.decode_body(data[:20] + b"\x00garbage" + data[28:], False, {"Content-Encoding": "gzip"})
    with pytest.raises(BadRequestError, match="truncated"):
        wire.decode_body(data[: len(data) // 2], False, {})
    with pytest.raises(BadRequestError, match="corrupt gzip"):
        wire.decode_body(b"\x00\x01not gzip", False, {"Content-Encoding": "gzip"})


def test_gzip_bomb_stops_at_the_request_limit() -> None:
    bomb = gzip.compress(b"\x00" * (wire.MAX_REQUEST_BYTES + 1024))
    assert len(bomb) < 64 * 1024
    with pytest.raises(PayloadTooLargeError):
        wire.decode_body(bomb, False, {"Content-Encoding": "gzip"})


def test_gzip_exactly_at_the_limit_is_fine() -> None:
    data = gzip.compress(b" " * wire.MAX_REQUEST_BYTES)
    assert len(wire.decode_body(data, False, {})) == wire.MAX_REQUEST_BYTES


def test_raw_body_over_limit_is_413() -> None:
    with pytest.raises(PayloadTooLargeError):
        wire.decode_body(b" " * (wire.MAX_REQUEST_BYTES + 1), False, {})
    with pytest.raises(PayloadTooLargeError):
        wire.parse_request("batch", b" " * (wire.MAX_REQUEST_BYTES + 1), NOW)


# --------------------------------------------------------------------------- write key


def test_write_key_from_basic_auth_user_name() -> None:
    token = base64.b64encode(b"my-key:").decode()
    assert wire.write_key_from({"authorization": f"basic {token}"}, {"writeKey": "other"}) == "my-key"


def test_write_key_falls_back_to_body_field() -> None:
    assert wire.write_key_from({}, {"writeKey": "body-key"}) == "body-key"
    assert wire.write_key_from({"Authorization": "Basic !!!"}, {"writeKey": "body-key"}) == "body-key"
    empty_user = base64.b64encode(b":pw").decode()
    assert wire.write_key_from({"Authorization": f"Basic {empty_user}"}, None) is None
    assert wire.write_key_from({"Authorization": "Bearer xyz"}, {"writeKey": ""}) is None


def test_kind_from_path_accepts_double_slash() -> None:
    assert wire.kind_from_path("//v1/batch") == "batch"
    assert wire.kind_from_path("/v1/track/") == "track"
    assert wire.kind_from_path("/v1/nope") is None
    assert wire.kind_from_path("/admin/x") is None


# --------------------------------------------------------------------------- whole-body errors


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"str"', "JSON object"),
        (b"", "empty body"),
        (b'{"sentAt": "2026-01-01T00:00:00Z"}', '"batch"'),
        (b'{"batch": {"type": "track"}}', "must be a list"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
)
def test_whole_body_errors_are_400_with_actionable_message(raw: bytes, needle: str) -> None:
    with pytest.raises(BadRequestError) as err:
        wire.parse_request("batch", raw, NOW)
    assert needle in err.value.message


def test_unknown_route_kind_is_400() -> None:
    with pytest.raises(BadRequestError, match="unknown route"):
        wire.parse_request("purchase", b"{}", NOW)


def test_empty_batch_is_fine_and_many_messages_are_not_an_error() -> None:
    assert wire.parse_request("batch", b'{"batch": []}', NOW).count == 0
    many = parse_batch(*[msg(messageId=f"m{i}") for i in range(600)])
    assert len(many.messages) == 600 and many.rejected == []


def test_nan_is_read_as_null() -> None:
    raw = b'{"batch": [{"type": "track", "event": "E", "userId": "u", "properties": {"x": NaN}}]}'
    parsed = wire.parse_request("batch", raw, NOW)
    assert parsed.messages[0].properties == {"x": None}


# --------------------------------------------------------------------------- per-message rejections


def test_message_not_an_object() -> None:
    r = rejected_one("just a string")
    assert r.messageId is None and "JSON object" in r.error


def test_message_over_32_kib() -> None:
    r = rejected_one(msg(messageId="big", properties={"blob": "x" * (wire.MAX_MESSAGE_BYTES)}))
    assert r.messageId == "big" and "32 KiB" in r.error


def test_message_just_under_32_kib_is_kept() -> None:
    probe = msg(messageId="fit", properties={"blob": ""})
    room = wire.MAX_MESSAGE_BYTES - len(json.dumps(probe, separators=(",", ":")).encode())
    parsed = parse_batch(msg(messageId="fit", properties={"blob": "x" * room}))
    assert len(parsed.messages) == 1
    parsed = parse_batch(msg(messageId="fit", properties={"blob": "x" * (room + 1)}))
    assert len(parsed.rejected) == 1


@pytest.mark.parametrize("mtype", [..., None, "purchase", 7])
def test_missing_or_unknown_type(mtype: Any) -> None:
    r = rejected_one(msg(messageId="t", type=mtype))
    assert r.messageId == "t" and "type" in r.error


def test_type_is_case_insensitive() -> None:
    parsed = parse_batch(msg(type="Track"))
    assert parsed.messages[0].type == "track"


@pytest.mark.parametrize(
    "ids", [{}, {"userId": None, "anonymousId": None}, {"userId": "", "anonymousId": "  "}]
)
def test_missing_both_ids(ids: dict[str, Any]) -> None:
    bad = msg(messageId="noid", userId=...)
    bad.update(ids)
    r = rejected_one(bad)
    assert "userId or an anonymousId" in r.error


def test_numeric_ids_are_stringified() -> None:
    parsed = parse_batch(msg(userId=42, anonymousId=7.5, messageId=12345))
    m = parsed.messages[0]
    assert (m.user_id, m.anonymous_id, m.message_id) == ("42", "7.5", "12345")


def test_id_of_wrong_type() -> None:
    r = rejected_one(msg(messageId="w", userId={"id": 1}))
    assert "userId must be a string" in r.error


def test_alias_needs_user_and_previous_id() -> None:
    r = rejected_one({"type": "alias", "messageId": "a1", "userId": "u1", "anonymousId": "x"})
    assert r.messageId == "a1" and "previousId" in r.error
    ok = parse_batch({"type": "alias", "userId": "u1", "previousId": 99})
    assert ok.messages[0].previous_id == "99"


def test_group_needs_group_id() -> None:
    r = rejected_one({"type": "group", "userId": "u1", "messageId": "gr"})
    assert "groupId" in r.error


def test_missing_message_id_gets_a_uuid4() -> None:
    parsed = parse_batch(msg(messageId=...), msg(messageId=None))
    ids = [m.message_id for m in parsed.messages]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(len(i) == 36 and i[14] == "4" for i in ids)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("properties", [1, 2], "properties must be a JSON object"),
        ("traits", "x", "traits must be a JSON object"),
        ("context", 5, "context must be a JSON object"),
        ("event", 5, "event must be a string"),
        ("event", ..., "track needs an event"),
        ("event", "  ", "track needs an event"),
        ("name", {"a": 1}, "name must be a string"),
    ],
)
def test_wrong_field_types(field: str, value: Any, needle: str) -> None:
    r = rejected_one(msg(messageId="f", **{field: value}))
    assert r.messageId == "f"
    assert needle in r.error


def test_page_needs_no_event() -> None:
    parsed = parse_batch(msg(type="page", event=..., name="Home"))
    assert parsed.messages[0].event is None and parsed.messages[0].name == "Home"


def test_nesting_deeper_than_32_levels() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    r = rejected_one(msg(messageId="deep", properties=deep))
    assert "nested deeper than 32" in r.error


def test_nesting_at_32_levels_is_kept() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(30):  # message (level 1) → properties (2) → 30 nested objects: level 32
        node["n"] = {}
        node = node["n"]
    assert len(parse_batch(msg(properties=deep)).messages) == 1
    node["n"] = {}
    assert len(parse_batch(msg(properties=deep)).rejected) == 1


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", 1700000000])
def test_unparseable_timestamps(value: Any) -> None:
    r = rejected_one(msg(messageId="ts", timestamp=value))
    assert "timestamp" in r.error


def test_unparseable_sent_at_is_rejected() -> None:
    r = rejected_one(msg(messageId="s", sentAt="soon"))
    assert "sentAt" in r.error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T19:00:00Z", datetime(2026, 11, 23, 19, tzinfo=UTC)),
        ("2026-11-23T19:00:00+00:00", datetime(2026, 11, 23, 19, tzinfo=UTC)),
        ("2026-11-23T22:00:00.123+03:00", datetime(2026, 11, 23, 19, 0, 0, 123000, tzinfo=UTC)),
        ("2026-11-23T19:00:00.123456-01:00", datetime(2026, 11, 23, 20, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-23T19:00:00.1234567Z", datetime(2026, 11, 23, 19, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-23T19:00:00", datetime(2026, 11, 23, 19, tzinfo=UTC)),  # naive → UTC
    ],
)
def test_timestamp_formats(text: str, expected: datetime) -> None:
    m = parse_batch(msg(timestamp=text)).messages[0]
    assert m.timestamp == expected  # no sentAt: the client's timestamp as is
    assert m.timestamp.utcoffset() == timedelta(0)


def test_far_future_is_rejected_as_clock_skew() -> None:
    future = clock.iso(NOW + timedelta(hours=25))
    r = rejected_one(msg(messageId="fut", timestamp=future))
    assert r.messageId == "fut"
    assert "24 h ahead" in r.error and "clock" in r.error
    near = clock.iso(NOW + timedelta(hours=23))
    assert len(parse_batch(msg(timestamp=near)).messages) == 1


def test_skewed_client_clock_is_corrected_not_rejected() -> None:
    # the device clock is 3 days fast: timestamp and sentAt both 3 days ahead
    ts = NOW + timedelta(days=3) - timedelta(minutes=5)
    sent = NOW + timedelta(days=3)
    m = parse_batch(msg(timestamp=clock.iso(ts), sentAt=clock.iso(sent))).messages[0]
    assert m.timestamp == NOW - timedelta(minutes=5)
    assert m.original_timestamp == ts


# --------------------------------------------------------------------------- timestamps & sentAt


def test_sent_at_correction_arithmetic() -> None:
    client_ts = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    sent = datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)
    received = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    raw = body({"batch": [msg(timestamp=clock.iso(client_ts))], "sentAt": clock.iso(sent)})
    m = wire.parse_request("batch", raw, received).messages[0]
    assert m.timestamp == datetime(2026, 11, 23, 11, 59, 30, tzinfo=UTC)
    assert m.original_timestamp == client_ts
    assert m.sent_at == sent and m.received_at == received


def test_message_sent_at_wins_over_batch_sent_at() -> None:
    parsed = parse_batch(
        msg(messageId="own", timestamp="2026-11-23T18:00:00Z", sentAt="2026-11-23T18:00:10Z"),
        msg(messageId="batch", timestamp="2026-11-23T18:00:00Z"),
        sentAt="2026-11-23T18:01:00Z",
    )
    own, batch = parsed.messages
    assert own.timestamp == NOW - timedelta(seconds=10)
    assert batch.timestamp == NOW - timedelta(seconds=60)


def test_original_timestamp_used_when_no_timestamp() -> None:
    m = parse_batch(
        msg(timestamp=..., originalTimestamp="2026-11-23T18:59:00Z", sentAt="2026-11-23T19:00:00Z")
    ).messages[0]
    assert m.timestamp == NOW - timedelta(minutes=1)
    assert m.original_timestamp == datetime(2026, 11, 23, 18, 59, tzinfo=UTC)


def test_no_timestamp_at_all_is_received_at() -> None:
    m = parse_batch(msg(timestamp=..., sentAt="2026-11-23T19:00:00Z")).messages[0]
    assert m.timestamp == NOW and m.original_timestamp is None


def test_received_at_normalized_to_utc() -> None:
    from zoneinfo import ZoneInfo

    local = NOW.astimezone(ZoneInfo("Europe/Moscow"))
    m = wire.parse_request("batch", body({"batch": [msg(timestamp=...)]}), local).messages[0]
    assert m.received_at == NOW and m.received_at.tzinfo == UTC


# --------------------------------------------------------------------------- context, traits


def test_batch_context_merges_under_message_context() -> None:
    parsed = parse_batch(
        msg(context={"ip": "5.6.7.8", "library": {"version": "9"}}),
        msg(context=...),
        context={"ip": "1.1.1.1", "library": {"name": "lib", "version": "1"}},
    )
    first, second = parsed.messages
    assert first.context == {"ip": "5.6.7.8", "library": {"name": "lib", "version": "9"}}
    assert second.context == {"ip": "1.1.1.1", "library": {"name": "lib", "version": "1"}}


def test_identify_traits_merge_top_level_wins() -> None:
    m = parse_batch(
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "top@x.y"},
            "context": {"traits": {"email": "ctx@x.y", "phone": "+79990001122"}},
        }
    ).messages[0]
    assert m.traits == {"email": "top@x.y", "phone": "+79990001122"}


def test_context_traits_not_folded_into_track() -> None:
    m = parse_batch(msg(context={"traits": {"email": "a@b.c"}})).messages[0]
    assert m.traits == {}


# --------------------------------------------------------------------------- single-message routes


def test_single_route_type_defaults_to_path_kind() -> None:
    raw = body(
        {
            "userId": "u1",
            "event": "Signed Up",
            "writeKey": "wk",
            "sentAt": "2026-11-23T19:00:00Z",
            "timestamp": "2026-11-23T18:59:00Z",
        }
    )
    parsed = wire.parse_request("track", raw, NOW)
    assert parsed.count == 1 and parsed.write_key == "wk"
    m = parsed.messages[0]
    assert m.type == "track" and m.event == "Signed Up"
    assert m.timestamp == NOW - timedelta(minutes=1)


def test_single_route_identify_and_invalid_single_message() -> None:
    parsed = wire.parse_request("identify", body({"userId": "u1", "traits": {"vip": True}}), NOW)
    assert parsed.messages[0].type == "identify" and parsed.messages[0].traits == {"vip": True}
    bad = wire.parse_request("track", body({"userId": "u1", "messageId": "x"}), NOW)
    assert bad.messages == []
    assert wire.reply(bad) == {
        "success": True,
        "accepted": 0,
        "rejected": [{"index": 0, "messageId": "x", "error": "track needs an event name"}],
    }


# --------------------------------------------------------------------------- replies


def test_reply_lists_rejections_with_wire_names() -> None:
    parsed = parse_batch(msg(messageId="a"), msg(messageId="b", userId=...))
    out = wire.reply(parsed)
    assert out["success"] is True and out["accepted"] == 1
    assert out["rejected"][0]["index"] == 1
    assert out["rejected"][0]["messageId"] == "b"
    assert set(out["rejected"][0]) == {"index", "messageId", "error"}
    json.dumps(out)  # JSON-serializable as is


def test_error_body_has_code_and_message() -> None:
    out = wire.error_body("payload_too_large", "too big")
    assert out["code"] == "payload_too_large" and out["message"] == "too big"


def test_lone_surrogate_escape_rejects_only_that_message() -> None:
    raw = (
        b'{"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "a"},'
        b' {"type": "track", "event": "\\ud800", "userId": "u", "messageId": "b\\udc00"}]}'
    )
    parsed = wire.parse_request("batch", raw, NOW)
    assert [m.message_id for m in parsed.messages] == ["a"]
    assert parsed.rejected[0].index == 1 and "surrogate" in parsed.rejected[0].error
    assert parsed.rejected[0].messageId is None
    json.dumps(wire.reply(parsed), ensure_ascii=False).encode("utf-8")


def test_naive_received_at_is_utc() -> None:
    naive = datetime(2026, 11, 23, 19, 33)
    m = wire.parse_request("batch", body({"batch": [msg(timestamp=...)]}), naive).messages[0]
    assert m.received_at == NOW and m.timestamp == NOW
