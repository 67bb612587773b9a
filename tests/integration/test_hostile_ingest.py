"""Hostile requests against the ingestion Lambda (issue 15, item 1): nothing of the body is decoded or
normalized before a key is known good; the caps answer 413 with a JSON error."""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import datetime
from types import ModuleType
from typing import Any

import pytest
from retention.ingestion import wire

from tests.integration.test_track_handler import KEY, Api, assert_error, fn, ok, proxy_event  # noqa: F401


@pytest.fixture
def api(stack: Any, fn: ModuleType) -> Api:  # noqa: F811
    stack.deps.config.create_source("t", key=KEY)
    return Api(fn, stack)


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(wire, name)

    def spy(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(wire, name, spy)
    return calls


def test_a_bad_header_key_is_refused_before_the_body_is_decompressed(
        api: Api, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    gunzips = _spy(monkeypatch, "_gunzip")
    empty = gzip.compress(b"")
    r = api.post("/v1/batch", raw=empty * 100_000, key="not-a-key", gzip_body=False, base64_body=True)
    assert_error(r, 401, "unauthorized")
    assert gunzips == []


def test_no_key_anywhere_is_refused_before_any_message_is_normalized(
        api: Api, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    normalized = _spy(monkeypatch, "_normalize")
    r = api.post("/v1/batch", {"batch": [{"type": "track"}] * 2000}, key=None)
    assert_error(r, 401, "unauthorized")
    r = api.post("/v1/batch", {"batch": [{"type": "track"}] * 2000, "writeKey": "wrong"}, key=None)
    assert_error(r, 401, "unauthorized")
    assert normalized == []


def test_a_body_key_still_works(api: Api, now: datetime) -> None:
    ok(api.post("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": "E", "messageId": "a"}],
                              "writeKey": KEY}, key=None), 1)


def test_too_many_messages_is_413(api: Api, now: datetime) -> None:
    batch = [{"type": "track", "userId": "u1", "event": "E", "messageId": f"m{i}"} for i in range(2501)]
    msg = assert_error(api.post("/v1/batch", {"batch": batch}, gzip_body=True), 413, "payload_too_large")
    assert "2500" in msg


def test_hostile_gzip_answers_fast(api: Api, now: datetime) -> None:
    """2 MB of empty gzip members took 8.4 s (the Lambda's timeout is 10 s); a tiny gzip of 115,000
    messages 2.5 s. Both now stop at a cap."""
    empty = gzip.compress(b"")
    bodies = [empty * (2_000_000 // len(empty)),
              gzip.compress(json.dumps({"batch": [{}] * 115_000}).encode(), 9)]
    for body, key in [(b, k) for b in bodies for k in (KEY, None)]:
        hdrs = {"Content-Encoding": "gzip"}
        if key:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        started = time.process_time()
        r = api.send(proxy_event("/v1/batch", base64.b64encode(body).decode(), hdrs, is_base64=True))
        assert r["statusCode"] in (401, 413), r
        assert time.process_time() - started < 2.0  # generous for a loaded CI machine; the bench measures


# ---- item 4: oversized traits and profiles are rejected entries, never a 500 for the batch -------------


def test_a_huge_batch_context_trait_is_rejected_not_stored(api: Api, now: datetime) -> None:
    body = {"batch": [{"type": "identify", "userId": "big", "messageId": "i1"},
                      {"type": "track", "userId": "bystander", "event": "E", "messageId": "t1"}],
            "context": {"traits": {"bio": "x" * 300_000}}}
    r = api.post("/v1/batch", body)
    assert_error(r, 413, "payload_too_large")  # the batch context alone is over a message's 32 KiB
    body["context"] = {"traits": {"bio": "x" * 20_000}}
    rejected = ok(api.post("/v1/batch", body), 1, 1)
    assert rejected[0]["index"] == 0 and "bio" in rejected[0]["error"]


def test_a_profile_that_would_overflow_rejects_only_that_message(api: Api, now: datetime) -> None:
    # grow a profile with many 4 KB traits, 7 per message (each message under 32 KiB)
    import random

    from retention.customers.store import ProfileRepo
    rnd = random.Random(15)  # random CJK: the profile document is compressed, repetitive text would not grow it
    batch = []
    for i in range(30):
        traits = {f"t{i}_{j}": "".join(chr(0x4e00 + rnd.randrange(20000)) for _ in range(1300)) for j in range(7)}
        batch.append({"type": "identify", "userId": "grower", "messageId": f"g{i}", "traits": traits})
    batch.append({"type": "track", "userId": "bystander", "event": "E", "messageId": "b1"})
    r = api.post("/v1/batch", {"batch": batch})
    assert r["statusCode"] == 200, r
    reply = r["json"]
    assert reply["rejected"], "some of the growing messages must be refused"
    assert all("profile would grow past" in x["error"] for x in reply["rejected"])
    assert reply["accepted"] == len(batch) - len(reply["rejected"])
    repo = ProfileRepo(api.stack.deps.dynamodb, api.stack.deps.env.profiles_table)
    assert repo.load("bystander", now).exists
    # the customer is not bricked: a plain event is still stored
    ok(api.post("/v1/batch", {"batch": [{"type": "track", "userId": "grower", "event": "E", "messageId": "g-last"}]}),
       1)
