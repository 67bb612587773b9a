"""Write-key scopes (issue 15, item 8): a second source's key could rewrite another customer's email and
phone and grant both consents. Now a key may only do what its scopes say; what it may not do is a
`rejected` entry with the reason, the rest of the batch is stored."""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any

import pytest
from retention.customers.store import ProfileRepo

from tests.integration.test_track_handler import Api, fn, ok  # noqa: F401


@pytest.fixture
def api(stack: Any, fn: ModuleType) -> Api:  # noqa: F811
    stack.deps.config.create_source("shop", key="shop-key")
    stack.deps.config.create_source("partner", key="partner-key")  # default scopes: events, customers
    stack.deps.config.create_source("browser", key="browser-key", scopes=["events"])
    stack.deps.config.create_source("crm", key="crm-key", scopes=["all"])
    return Api(fn, stack)


def profile(api: Api, uid: str, now: datetime) -> Any:
    return ProfileRepo(api.stack.deps.dynamodb, api.stack.deps.env.profiles_table).load(uid, now)


def identify(uid: str, mid: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": mid, "traits": traits}


def test_another_sources_key_cannot_take_over_contact_data_or_grant_consent(api: Api, now: datetime) -> None:
    ok(api.post("/v1/batch", {"batch": [identify("u1", "a1", email="anna@example.com", phone="+79160000001",
                                                 email_consent=False, sms_consent=False)]}, key="shop-key"), 1)
    hostile = [identify("u1", "p1", email="evil@example.com"), identify("u1", "p2", phone="+79000000666"),
               identify("u1", "p3", sms_consent=True), identify("u1", "p4", email_consent={"granted": True}),
               identify("u1", "p5", first_name="Anna")]
    rejected = ok(api.post("/v1/batch", {"batch": hostile}, key="partner-key"), 1, 4)
    assert [r["index"] for r in rejected] == [0, 1, 2, 3]
    assert "scope 'contact'" in rejected[0]["error"] and "scope 'consent'" in rejected[2]["error"]
    p = profile(api, "u1", now).profile
    assert p.traits["email"] == "anna@example.com" and p.traits["phone"] == "+79160000001"
    assert not p.consent["sms"].granted and not p.consent["email"].granted
    assert p.traits.get("first_name") == "Anna"  # other traits are fine
    # revoking needs no scope; the owner keeps full control; a key with every scope may change it
    ok(api.post("/v1/batch", {"batch": [identify("u1", "p6", sms_consent=False)]}, key="partner-key"), 1)
    ok(api.post("/v1/batch", {"batch": [identify("u1", "a2", email="anna2@example.com", email_consent=True)]},
                key="shop-key"), 1)
    ok(api.post("/v1/batch", {"batch": [identify("u1", "c1", phone="+79160000002")]}, key="crm-key"), 1)
    p = profile(api, "u1", now).profile
    assert p.traits["email"] == "anna2@example.com" and p.traits["phone"] == "+79160000002"


def test_a_source_keeps_control_of_the_customers_it_creates(api: Api, now: datetime) -> None:
    ok(api.post("/v1/batch", {"batch": [identify("u2", "q1", email="b@example.com", sms_consent=True),
                                        identify("u2", "q2", email="b2@example.com")]}, key="partner-key"), 2)
    assert profile(api, "u2", now).profile.traits["email"] == "b2@example.com"
    rejected = ok(api.post("/v1/batch", {"batch": [identify("u2", "s1", email="x@example.com")]}, key="shop-key"),
                  0, 1)
    assert "another source" in rejected[0]["error"]


def test_an_events_only_key_cannot_create_customers(api: Api, now: datetime) -> None:
    ok(api.post("/v1/batch", {"batch": [identify("u3", "r0", email="c@example.com")]}, key="shop-key"), 1)
    batch = [{"type": "track", "userId": "nobody", "event": "Product Viewed", "messageId": "r1"},
             {"type": "track", "userId": "u3", "event": "Product Viewed", "messageId": "r2"},
             {"type": "page", "anonymousId": "visitor-1", "name": "Home", "messageId": "r3"},
             identify("u3", "r4", email="mine@example.com")]
    rejected = ok(api.post("/v1/batch", {"batch": batch}, key="browser-key"), 2, 2)
    assert [r["index"] for r in rejected] == [0, 3]
    assert "may not create customers" in rejected[0]["error"]
    assert not profile(api, "nobody", now).exists


def test_scopes_are_validated_and_listed(api: Api) -> None:
    from retention.core.errors import BadRequestError
    with pytest.raises(BadRequestError, match="unknown scope"):
        api.stack.deps.config.create_source("x", scopes=["admin"])
    listed = {s["name"]: s["scopes"] for s in api.stack.deps.config.list_sources()}
    assert listed["browser"] == ["events"] and listed["partner"] == ["events", "customers"]
    assert listed["crm"] == ["events", "customers", "contact", "consent"]


def test_sms_to_a_country_outside_the_allowlist_is_not_sent(api: Api, now: datetime) -> None:
    from retention.messaging.requests import SendRequest
    ok(api.post("/v1/batch", {"batch": [identify("u9", "z1", phone="+4420712345678", sms_consent=True)]},
                key="shop-key"), 1)
    req = SendRequest(customer_id="u9", rule="order-status", entry="e1", step=0, template="order-ready",
                      channel="sms", transactional=True)
    out = api.stack.sender().send(req)
    assert (out.status, out.reason) == ("skipped", "sms_country")
