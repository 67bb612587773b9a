"""Erasure leaves nothing that names the person (issue 15, items 2 and 3): after
`DELETE /admin/customers/{id}` every table is scanned for the id, the email and the phone — in plain
attributes and inside compressed documents. NPS answers keep their score for the aggregates."""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import quote

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock
from retention.customers.store import decode_doc
from retention.surveys import nps
from retention.surveys.answers import Surveys

from tests.integration.test_admin_api import TOKEN, call

UID = "shop/42 #7?x"
EMAIL = "anna.erase@example.com"
PHONE = "+79161234599"
ANON = "anon-visitor-77"


@pytest.fixture
def api(library_stack: Any) -> Any:
    create_admin_token(library_stack.deps.config, "t", token=TOKEN)
    return library_stack


def _strings(value: Any) -> list[str]:
    """Every string in a DynamoDB attribute value, compressed binaries opened."""
    out: list[str] = []
    if isinstance(value, dict):
        for kind, inner in value.items():
            if kind == "S" or kind == "N":
                out.append(str(inner))
            elif kind == "B":
                raw = bytes(inner)
                try:  # a profile doc (zlib with the preset dictionary, or without one)
                    out.append(decode_doc(raw))
                except (zlib.error, KeyError, UnicodeDecodeError):
                    out.append(raw.decode("utf-8", "replace"))
            elif kind in ("SS", "NS"):
                out += [str(v) for v in inner]
            elif kind == "L":
                for v in inner:
                    out += _strings(v)
            elif kind == "M":
                for k, v in inner.items():
                    out.append(k)
                    out += _strings(v)
    return out


def scan_all(s: Any) -> list[tuple[str, dict[str, Any]]]:
    client = s.deps.dynamodb
    rows = []
    for name in client.list_tables()["TableNames"]:
        kwargs: dict[str, Any] = {"TableName": name}
        while True:
            resp = client.scan(**kwargs)
            rows += [(name, item) for item in resp["Items"]]
            if not resp.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return rows


def naming(s: Any, *needles: str) -> list[tuple[str, str, str]]:
    found = []
    for table, item in scan_all(s):
        text = "\n".join(x for v in item.values() for x in _strings(v)).lower()
        for needle in needles:
            if needle.lower() in text:
                found.append((table, needle, json.dumps(item, default=str)[:300]))
    return found


def test_erasure_leaves_nothing_that_names_the_person(api: Any) -> None:
    s = api
    now = clock.now()
    s.ingest([
        {"type": "page", "anonymousId": ANON, "name": "Home", "messageId": "e-1"},
        {"type": "track", "anonymousId": ANON, "event": "Product Viewed", "messageId": "e-2",
         "properties": {"product_id": "sku-1"}},
        {"type": "track", "anonymousId": ANON, "event": "Product Added", "messageId": "e-3",
         "properties": {"product_id": "sku-1", "price": 990}},
    ])
    s.ingest([{"type": "identify", "userId": UID, "anonymousId": ANON, "messageId": "e-4",
               "traits": {"email": EMAIL, "phone": PHONE, "first_name": "Anna", "email_consent": True,
                          "sms_consent": True}},
              {"type": "track", "userId": UID, "event": "Order Completed", "messageId": "e-5",
               "properties": {"order_id": "o-1", "revenue": 1990, "currency": "RUB",
                              "products": [{"product_id": "sku-1"}]}}])
    for req in s.queued_sends():  # the welcome and thank-you mails: send-ledger rows
        s.sender().send(req)
    Surveys(s.deps).record(nps.NpsResponse(customer_id=UID, score=3, at=now, source="webhook",
                                           comment=f"call me at {PHONE} or {EMAIL}", event_id="ev-9"),
                           message_id="nps-1", ref="survey-1")
    before = {table.split("-")[-1] for table, _, _ in naming(s, UID, EMAIL, PHONE, ANON)}
    # the person is in the profiles, the timeline, pending due items and the send ledger / NPS rows
    assert {"profiles", "events", "due", "messages"} <= before, before

    status, body = call("DELETE", f"/admin/customers/{quote(UID, safe='')}")
    assert status == 200, body

    leftovers = naming(s, UID, EMAIL, PHONE, ANON)
    assert leftovers == [], "\n".join(map(str, leftovers))
    # the NPS score stays for the aggregates, without the person
    rows = [item for table, item in scan_all(s) if item["pk"]["S"].startswith("NPS#")]
    assert [int(r["score"]["N"]) for r in rows] == [3]
    assert "comment" not in rows[0] and "customer_id" not in rows[0]
    report = Surveys(s.deps).report(clock.iso(now)[:10], clock.iso(now)[:10])
    assert report["overall"]["responses"] == 1 if "responses" in report["overall"] else True
    # gone for the admin API too, and a second erasure is a clear 404
    assert call("GET", f"/admin/customers/{quote(UID, safe='')}")[0] == 404
    assert call("DELETE", f"/admin/customers/{quote(UID, safe='')}")[0] == 404


@pytest.mark.parametrize("uid", ["shop/42", "a#b", "q?x=1", "with space", "проверка", "100%"])
def test_awkward_ids_can_be_viewed_and_erased(api: Any, uid: str) -> None:
    api.ingest([{"type": "identify", "userId": uid, "messageId": f"id-{uid}", "traits": {"email": "x@example.com"}}])
    path = f"/admin/customers/{quote(uid, safe='')}"
    status, body = call("GET", path)
    assert status == 200, body
    assert body["id"] == uid
    assert call("GET", path + "/events")[0] == 200
    status, body = call("DELETE", path)
    assert status == 200 and body["customer_id"] == uid
    assert call("GET", path)[0] == 404


def test_deeply_nested_admin_bodies_answer_400(api: Any) -> None:
    """Issue 15 item 12: a deeply nested JSON body answered 500."""
    deep = '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"
    status, body = call("PUT", "/admin/rules/x", deep)
    assert status == 400 and body["code"] == "bad_request", body
    status, body = call("PUT", "/admin/rules/x", "id: x\ntrigger: " + "[" * 5000 + "]" * 5000,
                        headers={"Content-Type": "application/yaml"})
    assert 400 <= status < 500, body
