"""The ingestion Lambda (`functions/track_event/handler.py`) with API Gateway proxy events on moto: the
real Segment and Rudder wire bodies, every route, auth, gzip, clock-skew correction, the exact reply,
and a clear error for every kind of bad input while the valid messages of a batch are kept."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from retention.core import clock, ddb

from tests.integration.test_ingest import raw_events
from tests.support import LambdaContext

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "segment-wire"
if not FIXTURES.exists():  # the repo may sit elsewhere; /work/shared is the shared checkout
    FIXTURES = Path("/work/shared/fixtures/segment-wire")
WIRE_FILES = sorted(p.name for p in FIXTURES.glob("*.json")) if FIXTURES.exists() else []
KEY = "wk"


@pytest.fixture(scope="module")
def fn() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POWERTOOLS_METRICS_NAMESPACE", "Retention")
        mp.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        mp.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
        mp.setenv("POWERTOOLS_SERVICE_NAME", "retention-track-event")
        spec = importlib.util.spec_from_file_location("fn_track_event", ROOT / "functions/track_event/handler.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture
def api(stack: Any, fn: ModuleType) -> Any:
    stack.deps.config.create_source("t", key=KEY)
    return Api(fn, stack)


class Api:
    def __init__(self, fn: ModuleType, stack: Any) -> None:
        self.fn = fn
        self.stack = stack

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None,
             key: str | None = KEY, gzip_body: bool = False, base64_body: bool | None = None) -> dict[str, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        if gzip_body:
            data = gzip.compress(data)
            hdrs["Content-Encoding"] = "gzip"
        encode = gzip_body if base64_body is None else base64_body
        event = proxy_event(path, base64.b64encode(data).decode() if encode else data.decode("utf-8"), hdrs,
                            is_base64=encode)
        return self.send(event)

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self.fn.lambda_handler(event, LambdaContext())
        response["json"] = json.loads(response["body"]) if response.get("body") else None
        return response


def proxy_event(path: str, body: str | None, headers: dict[str, str], *, is_base64: bool = False,
                method: str = "POST") -> dict[str, Any]:
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None, "body": body, "isBase64Encoded": is_base64,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/prod{path}",
                           "stage": "prod", "requestId": "r-1", "identity": {"sourceIp": "203.0.113.1"}},
    }


def header(response: dict[str, Any], name: str) -> str | None:
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return str(values[0])
    return None


def assert_error(response: dict[str, Any], status: int, code: str) -> str:
    assert response["statusCode"] == status, response
    assert response["json"]["code"] == code
    assert isinstance(response["json"]["message"], str) and response["json"]["message"]
    assert "json" in (header(response, "Content-Type") or "")
    return str(response["json"]["message"])


def ok(response: dict[str, Any], accepted: int, rejected: int = 0) -> list[dict[str, Any]]:
    assert response["statusCode"] == 200, response  # exactly 200: Rudder's client counts nothing else
    body = response["json"]
    assert body["success"] is True and body["accepted"] == accepted, body
    assert len(body["rejected"]) == rejected, body
    return list(body["rejected"])


def msg(**fields: Any) -> dict[str, Any]:
    base = {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "m-ok",
            "properties": {"product_id": "p1"}}
    base.update(fields)
    return base


# ---- what the real clients send ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", WIRE_FILES)
def test_real_client_requests(api: Any, now: datetime, name: str) -> None:
    captured = json.loads((FIXTURES / name).read_text())
    user = base64.b64decode(captured["headers"]["Authorization"].split()[1]).decode().partition(":")[0]
    api.stack.deps.config.create_source(name, key=user)
    gzipped = captured["headers"].get("Content-Encoding") == "gzip"
    body = captured["body_base64"] if gzipped else base64.b64decode(captured["body_base64"]).decode("utf-8")
    event = proxy_event(captured["path"], body, captured["headers"], is_base64=gzipped)
    decoded = captured["decoded_body"]
    n = len(decoded["batch"])

    ok(api.send(event), n)

    # Segment's sentAt correction: the client's clock says sentAt, the server's says now
    sent_at = clock.parse_iso(decoded["sentAt"])
    events = {e["message_id"]: e for e in raw_events(api.stack, "u1")}
    for m in decoded["batch"]:
        if m.get("userId") != "u1":
            continue
        expected = now - (sent_at - clock.parse_iso(m["timestamp"]))
        assert events[m["messageId"]]["timestamp"] == clock.iso(expected)
        assert events[m["messageId"]]["type"] == m["type"]
    p = api.stack.profile("u1")
    assert p.traits["email"] == "a@b.c"  # Rudder: only in context.traits
    # the anonymous screen view joined the customer through the alias
    link = ddb.get(api.stack.deps.dynamodb, api.stack.tables["profiles"], "A#anon-1", "ALIAS")
    assert link is not None and link["customer_id"] == "u1"
    assert len(raw_events(api.stack, "u1")) == n - 1  # all but u2's
    naive = next(m for m in decoded["batch"] if m["userId"] == "u2")
    assert api.stack.profile("u2").last_seen_at == now - (sent_at - clock.parse_iso(naive["timestamp"]))

    # the client retries (a timeout): 200 again, nothing stored twice
    ok(api.send(event), n)
    assert len(raw_events(api.stack, "u1")) == n - 1


def test_wire_fixtures_are_there() -> None:
    assert {"segment-analytics-python-2.4.0.json", "rudder-sdk-python-2.1.9.json"} <= set(WIRE_FILES)


# ---- routes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,fields", [
    ("track", {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}),
    ("identify", {"userId": "u1", "traits": {"email": "x@example.com"}}),
    ("page", {"userId": "u1", "name": "Home", "properties": {"url": "https://shop.test/"}}),
    ("screen", {"anonymousId": "a1", "name": "Cart"}),
    ("alias", {"userId": "u1", "previousId": "a1"}),
    ("group", {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}),
])
def test_each_single_message_route(api: Any, kind: str, fields: dict[str, Any]) -> None:
    ok(api.post(f"/v1/{kind}", {"messageId": f"m-{kind}", **fields}), 1)
    customer = "u1" if fields.get("userId") else "anon:a1"
    stored = [e for e in raw_events(api.stack, customer) if e["message_id"] == f"m-{kind}"]
    assert len(stored) == 1 and stored[0]["type"] == kind


def test_batch_route_variants(api: Any) -> None:
    ok(api.post("//v1/batch", {"batch": [msg(messageId="a")]}), 1)  # a host ending in "/"
    ok(api.post("/v1/batch/", {"batch": [msg(messageId="b")]}), 1)
    ok(api.post("/v1/batch", {"batch": []}), 0)
    assert_error(api.post("/v1/purchase", {"batch": []}), 404, "not_found")


# ---- auth ------------------------------------------------------------------------------------------------------


def test_write_key_as_basic_user_name_or_body_field(api: Any) -> None:
    ok(api.post("/v1/batch", {"batch": [msg(messageId="h")]}), 1)
    ok(api.post("/v1/batch", {"batch": [msg(messageId="b")], "writeKey": KEY}, key=None), 1)
    ok(api.post("/v1/track", {**msg(messageId="t"), "writeKey": KEY}, key=None), 1)
    lower = {"authorization": "basic " + base64.b64encode(f"{KEY}:ignored".encode()).decode()}
    ok(api.post("/v1/batch", {"batch": [msg(messageId="l")]}, key=None, headers=lower), 1)


def test_bad_or_missing_keys_are_401_with_code_and_message(api: Any) -> None:
    body = {"batch": [msg()]}
    assert "write key" in assert_error(api.post("/v1/batch", body, key=None), 401, "unauthorized")
    assert_error(api.post("/v1/batch", body, key="nope"), 401, "unauthorized")
    assert_error(api.post("/v1/batch", {**body, "writeKey": "nope"}, key=None), 401, "unauthorized")
    # a bad key in the header is refused before the body is even read
    assert_error(api.post("/v1/batch", raw=b"{not json", key="nope"), 401, "unauthorized")
    # a revoked key
    src = api.stack.deps.config.create_source("old", key="old-key")
    api.stack.deps.config.revoke_source(src["source_id"])
    assert_error(api.post("/v1/batch", body, key="old-key"), 401, "unauthorized")
    assert raw_events(api.stack, "u1") == []


# ---- gzip and sizes -----------------------------------------------------------------------------------------------


def test_gzip_bodies(api: Any) -> None:
    ok(api.post("/v1/batch", {"batch": [msg(messageId="g1")]}, gzip_body=True), 1)
    # gzip without the header (API Gateway binary mode): recognised by its magic bytes
    data = gzip.compress(json.dumps({"batch": [msg(messageId="g2")]}).encode())
    ok(api.send(proxy_event("/v1/batch", base64.b64encode(data).decode(),
                            {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()},
                            is_base64=True)), 1)
    # labelled gzip but a proxy already inflated it
    ok(api.post("/v1/batch", {"batch": [msg(messageId="g3")]}, headers={"Content-Encoding": "gzip"}), 1)
    assert {e["message_id"] for e in raw_events(api.stack, "u1")} == {"g1", "g2", "g3"}
    corrupt = base64.b64encode(gzip.compress(b'{"batch": []}')[:-6]).decode()
    r = api.send(proxy_event("/v1/batch", corrupt, {"Content-Encoding": "gzip", "Authorization": "Basic " +
                                                    base64.b64encode(f"{KEY}:".encode()).decode()}, is_base64=True))
    assert "gzip" in assert_error(r, 400, "bad_request")


def test_too_large_requests_are_413(api: Any) -> None:
    bomb = b'{"batch": [' + b" " * (6 * 1024 * 1024) + b"]}"  # 6 MB inflated, a few KB on the wire
    r = api.post("/v1/batch", raw=bomb, gzip_body=True)
    assert "5242880" in assert_error(r, 413, "payload_too_large")
    big = {"batch": [msg(messageId=f"m{i}", properties={"blob": "x" * 30_000}) for i in range(180)]}
    assert_error(api.post("/v1/batch", big), 413, "payload_too_large")
    assert raw_events(api.stack, "u1") == []


# ---- request-level errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,hint", [
    (b"{not json", "not valid JSON"),
    (b"", "empty body"),
    (b"[]", "JSON object"),
    (b'{"messages": []}', '"batch"'),
    (b'{"batch": {"type": "track"}}', "list"),
    (b'{"batch": [], "sentAt": "x"}' + b"\xff\xfe", "UTF-8"),
    (b'{"batch": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested"),
], ids=["malformed", "empty", "array", "no-batch", "batch-not-list", "invalid-utf8", "deep-json"])
def test_a_body_that_is_not_a_batch_is_400(api: Any, raw: bytes, hint: str) -> None:
    r = api.post("/v1/batch", raw=raw, base64_body=True)
    assert hint in assert_error(r, 400, "bad_request")


# ---- message-level errors: each message gets its own, the valid ones are kept ----------------------------------------


def test_bad_messages_are_rejected_one_by_one_and_the_rest_is_kept(api: Any, now: datetime) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    batch: list[Any] = [
        msg(messageId="good-1"),                                                        # 0
        msg(messageId="bad-type-id", userId={"id": 1}),                                 # 1 wrong type
        msg(messageId="no-ids", userId=None, anonymousId=""),                           # 2 missing ids
        msg(messageId="unknown-type", type="purchase"),                                 # 3 unknown type
        msg(messageId="too-big", properties={"blob": "x" * 40_000}),                    # 4 oversized
        msg(messageId="bad-ts", timestamp="yesterday"),                                 # 5 invalid timestamp
        msg(messageId="future", timestamp=clock.iso(now + timedelta(days=3))),          # 6 far future
        msg(messageId="deep", properties=deep),                                         # 7 deep nesting
        "LONE_SURROGATE",                                                               # 8 invalid unicode
        "just a string",                                                                # 9 not an object
        msg(messageId="no-event", event=None),                                          # 10 track without event
        {"type": "identify", "userId": "u2", "messageId": "good-2", "traits": {"email": "u2@example.com"}},  # 11
        msg(messageId="props-list", properties=[1, 2]),                                 # 12 wrong type
        msg(messageId="ts-number", timestamp=1732438800),                               # 13 wrong type
        msg(messageId="ancient", timestamp="1969-07-20T20:17:00Z"),                     # 14 before 1970
        msg(messageId="good-3", userId=12345),                                          # 15 numeric id: fine
    ]
    text = json.dumps({"batch": batch}).replace('"LONE_SURROGATE"', '{"type": "track", "userId": "u1", '
                                                 '"messageId": "surrogate", "event": "\\ud800 oops"}')
    rejected = ok(api.post("/v1/batch", raw=text.encode()), 3, 13)
    by_index = {r["index"]: r for r in rejected}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14]
    hints = {1: "userId", 2: "userId or an anonymousId", 3: "unknown message type", 4: "32 KiB",
             5: "ISO 8601", 6: "ahead", 7: "nested", 8: "surrogate", 9: "JSON object", 10: "event name",
             12: "properties", 13: "ISO 8601", 14: "1970"}
    for index, hint in hints.items():
        assert hint in by_index[index]["error"], (index, by_index[index])
    assert by_index[4]["messageId"] == "too-big" and by_index[9]["messageId"] is None
    assert by_index[8]["messageId"] == "surrogate"
    assert {e["message_id"] for e in raw_events(api.stack, "u1")} == {"good-1"}
    assert {e["message_id"] for e in raw_events(api.stack, "u2")} == {"good-2"}
    assert {e["message_id"] for e in raw_events(api.stack, "12345")} == {"good-3"}


def test_a_single_message_route_rejects_in_the_reply_too(api: Any) -> None:
    rejected = ok(api.post("/v1/track", {"userId": "u1", "messageId": "x"}), 0, 1)
    assert rejected == [{"index": 0, "messageId": "x", "error": "track needs an event name"}]


# ---- clock skew -------------------------------------------------------------------------------------------------------


def test_sent_at_corrects_a_skewed_client_clock(api: Any, now: datetime) -> None:
    api.stack.deps.config.put_settings({"event_retention_days": 400})  # the import below is 9 months old
    client_now = now - timedelta(days=3, hours=5)  # the device's clock is wrong
    batch = [
        msg(messageId="skewed", timestamp=clock.iso(client_now - timedelta(minutes=10))),
        msg(messageId="own-sent-at", timestamp=clock.iso(now - timedelta(days=30)),
            sentAt=clock.iso(now - timedelta(days=30) + timedelta(seconds=90))),
        msg(messageId="offset", timestamp=(client_now - timedelta(minutes=1)).astimezone().isoformat()),
    ]
    ok(api.post("/v1/batch", {"batch": batch, "sentAt": clock.iso(client_now)}), 3)
    stamps = {e["message_id"]: e["timestamp"] for e in raw_events(api.stack, "u1")}
    assert stamps["skewed"] == clock.iso(now - timedelta(minutes=10))
    assert stamps["own-sent-at"] == clock.iso(now - timedelta(seconds=90))
    assert stamps["offset"] == clock.iso(now - timedelta(minutes=1))
    # without sentAt a timestamp is taken as it is (an import)
    ok(api.post("/v1/batch", {"batch": [msg(messageId="import", timestamp="2026-03-02T03:04:05.678+03:00")]}), 1)
    stamps = {e["message_id"]: e["timestamp"] for e in raw_events(api.stack, "u1")}
    assert stamps["import"] == "2026-03-02T00:04:05.678000Z"


# ---- throttling ---------------------------------------------------------------------------------------------------------


def test_throttling_answers_429_with_retry_after(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    def throttled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                          "TransactWriteItems")

    monkeypatch.setattr(api.stack.deps.dynamodb, "transact_write_items", throttled)
    r = api.post("/v1/batch", {"batch": [msg()]})
    assert_error(r, 429, "throttled")
    assert header(r, "Retry-After") == "2"
    monkeypatch.undo()
    ok(api.post("/v1/batch", {"batch": [msg()]}), 1)  # the client's retry lands


def test_a_profile_that_keeps_changing_answers_429(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    def conflict(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                           "CancellationReasons": [{"Code": "None"}, {"Code": "None"},
                                                   {"Code": "ConditionalCheckFailed"}]}, "TransactWriteItems")

    monkeypatch.setattr(api.stack.deps.dynamodb, "transact_write_items", conflict)
    assert_error(api.post("/v1/batch", {"batch": [msg()]}), 429, "throttled")


# ---- cost through the handler ---------------------------------------------------------------------------------------------


def test_cost_per_plain_event_through_the_handler(api: Any, now: datetime) -> None:
    batch = [msg(messageId=f"c{i}", userId=f"cust{i}", event="Button Clicked", properties={"b": i},
                 timestamp=clock.iso(now - timedelta(seconds=i))) for i in range(100)]
    ok(api.post("/v1/batch", {"batch": batch[:1]}), 1)  # warm: the source and definitions are cached
    api.stack.counter.reset()
    ok(api.post("/v1/batch", {"batch": batch[1:]}, gzip_body=True), 99)
    writes = api.stack.counter.count("dynamodb", *api.stack.counter.DDB_WRITES)
    reads = api.stack.counter.count("dynamodb", *api.stack.counter.DDB_READS)
    assert writes / 99 <= 3, api.stack.counter.calls
    assert reads <= 2, api.stack.counter.calls
    assert os.environ.get("RETENTION_NO_SLEEP") == "1"
