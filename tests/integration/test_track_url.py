"""track_event behind its function URL (IngestUrl, infra/stack.py `_ingest_url`): payload format 2.0 events
(lower-case headers, `rawPath`, a body flagged base64 unless it is ASCII text) reach the same Segment routes
as the REST API's, with the same replies, auth, gzip and dedupe."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime
from typing import Any

import pytest

from tests.integration.test_ingest import raw_events
from tests.integration.test_track_handler import FIXTURES, KEY, WIRE_FILES, Api, assert_error, fn, msg, ok

__all__ = ["fn"]  # the handler module fixture, shared with test_track_handler


@pytest.fixture
def api(stack: Any, fn: Any) -> Api:
    stack.deps.config.create_source("t", key=KEY)
    return Api(fn, stack)


def url_event(path: str, data: bytes, headers: dict[str, str], *, method: str = "POST") -> dict[str, Any]:
    """What Lambda hands a function URL's function: binary or non-ASCII bodies base64-encoded."""
    text = data.isascii() and any(t in headers.get("Content-Type", "").lower() for t in ("text", "json", "xml"))
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()} | {"x-forwarded-for": "203.0.113.1"},
        "requestContext": {"accountId": "anonymous", "apiId": "abc123", "domainName": "abc123.lambda-url.eu-west-1.on.aws",
                           "domainPrefix": "abc123", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                                              "sourceIp": "203.0.113.1", "userAgent": "test"},
                           "requestId": "r-1", "routeKey": "$default", "stage": "$default",
                           "time": "06/Dec/2026:12:00:00 +0000", "timeEpoch": 1796558400000},
        "body": data.decode() if text else base64.b64encode(data).decode(),
        "isBase64Encoded": not text,
    }


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(api: Api, path: str, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    hdrs = {"Content-Type": "application/json", **auth(), **(headers or {})}
    return api.send(url_event(path, json.dumps(body, ensure_ascii=False).encode(), hdrs, **kw))


@pytest.mark.parametrize("name", WIRE_FILES)
def test_real_client_requests_through_the_function_url(api: Api, now: datetime, name: str) -> None:
    captured = json.loads((FIXTURES / name).read_text())
    user = base64.b64decode(captured["headers"]["Authorization"].split()[1]).decode().partition(":")[0]
    api.stack.deps.config.create_source(name, key=user)
    event = url_event(captured["path"], base64.b64decode(captured["body_base64"]), captured["headers"])
    n = len(captured["decoded_body"]["batch"])
    if captured["headers"].get("Content-Encoding") == "gzip":
        assert event["isBase64Encoded"]  # Rudder's gzip body: binary, flagged base64

    ok(api.send(event), n)
    assert len(raw_events(api.stack, "u1")) == n - 1  # all but u2's
    assert api.stack.profile("u1").traits["email"] == "a@b.c"
    ok(api.send(event), n)  # the client's retry: nothing stored twice
    assert len(raw_events(api.stack, "u1")) == n - 1


def test_every_segment_route_and_a_double_slash(api: Api) -> None:
    ok(post(api, "/v1/track", msg(messageId="t1")), 1)
    ok(post(api, "/v1/identify", {"type": "identify", "userId": "u1", "messageId": "i1",
                                  "traits": {"first_name": "Анна"}}), 1)  # non-ASCII: a base64 body
    ok(post(api, "//v1/batch", {"batch": [msg(messageId="b1"), msg(messageId="b2")]}), 2)  # host ending in /
    assert {e["message_id"] for e in raw_events(api.stack, "u1")} == {"t1", "i1", "b1", "b2"}
    assert api.stack.profile("u1").traits["first_name"] == "Анна"


def test_auth_and_routes_answer_as_behind_api_gateway(api: Api) -> None:
    no_key = api.send(url_event("/v1/batch", json.dumps({"batch": [msg()]}).encode(),
                                {"Content-Type": "application/json"}))
    assert no_key["statusCode"] == 401, no_key
    bad_key = post(api, "/v1/batch", {"batch": [msg()]}, headers=auth("nope"))
    assert bad_key["statusCode"] == 401, bad_key
    assert_error(post(api, "/admin/rules", {}), 404, "not_found")  # only the Segment routes live here
    assert post(api, "/v1/batch", {"batch": [msg()]}, method="GET")["statusCode"] in (404, 405)
    assert raw_events(api.stack, "u1") == []


def test_a_gzip_body_that_arrived_as_text_is_a_clear_400_and_stores_nothing(api: Api) -> None:
    compressed = gzip.compress(json.dumps({"batch": [msg()]}).encode())
    event = url_event("/v1/batch", compressed, {"Content-Type": "application/json", "Content-Encoding": "gzip",
                                                 **auth()})
    event["body"], event["isBase64Encoded"] = compressed.decode("utf-8", errors="replace"), False  # a lossy hop
    message = assert_error(api.send(event), 400, "bad_request")
    assert "arrived as text" in message
    assert raw_events(api.stack, "u1") == []
