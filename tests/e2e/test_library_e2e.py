"""The scenario library over HTTP on the local stack, driven by the virtual clock: the abandoned cart is
reminded 8-24 hours after the checkout (never before 8 h) and stopped by the order (no discount letter
after it); a newsletter subscriber without a sign-up gets the subscriber welcome; a buyer without
marketing consent gets the order confirmation and no marketing; a sign-up without consent gets the double
opt-in, whose link's POST starts the welcome. The shop's side is the real Segment client pointed at the
local URL."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import pytest
from retention.language.rules import in_holdout

pytestmark = pytest.mark.e2e


def treated(rule: str, percent: float, prefix: str = "e2e-cart") -> str:
    """A fresh customer id (the local stack lives for the whole session) outside the rule's holdout."""
    while True:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if not in_holdout(cid, rule, percent):
            return cid


def _segment(local: Any) -> Any:
    import segment.analytics as analytics
    return analytics.Client(write_key="dev-write-key", host=local.url, sync_mode=True, max_retries=1)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_abandoned_cart_reminded_8_to_24_hours_later_and_stopped_by_the_order(local: Any) -> None:
    import segment.analytics as analytics

    uid = treated("abandoned-cart", 10)
    email = f"{uid}@example.com"
    client = analytics.Client(write_key="dev-write-key", host=local.url, sync_mode=True, max_retries=1)
    # the virtual clock runs on between requests: read it before the cart, so the cart is at or after it
    started = _at(local.request("GET", "/_local/clock")[1]["now"])
    client.identify(uid, {"email": email, "first_name": "Ира", "email_consent": True})
    client.track(uid, "Checkout Started", {"cart_id": f"{uid}-k", "revenue": 990, "currency": "RUB",
                                           "products": [{"product_id": "e2e-p1", "name": "Чайник", "price": 990}]})
    client.flush()

    def cart_mails() -> list[dict[str, Any]]:
        return [m for m in local.outbox() if m["to"] == email and m["rule"] == "abandoned-cart"]

    def journey() -> dict[str, Any]:
        found = [j for j in local.admin(f"/admin/customers/{uid}")["journeys"] if j["rule"] == "abandoned-cart"]
        assert len(found) == 1, found
        return dict(found[0])

    assert journey()["state"] == "active"
    local.advance(7 * 3600 + 50 * 60)  # 7 h 50 min: no reminder before 8 h (seed 001 "Корзина 8-24 часа")
    assert cart_mails() == []
    local.advance(16 * 3600 + 15 * 60)  # 24 h 5 min: the reminder went out, in the customer's daytime
    reminder = local.expect(cart_mails)
    assert [(m["step"], m["channel"]) for m in reminder] == [(1, "email")]
    assert "Ира" in reminder[0]["subject"]
    waited = (_at(reminder[0]["sent_at"]) - started).total_seconds() / 3600
    assert 8 <= waited <= 24, waited

    client.track(uid, "Order Completed", {"order_id": f"{uid}-o1", "revenue": 990, "currency": "RUB"})
    client.flush()
    local.expect(lambda: journey()["state"] == "exited")
    local.advance(2 * 86400)  # the discount was due a day after the reminder
    assert [m["step"] for m in cart_mails()] == [1]  # no discount letter after the order
    ended = journey()
    assert ended["state"] == "exited" and ended.get("exit_reason") == "goal:Order Completed", ended


def test_a_subscriber_without_sign_up_gets_the_subscriber_welcome(local: Any) -> None:
    uid = treated("subscriber-welcome", 10, "e2e-sub")
    email = f"{uid}@example.com"
    client = _segment(local)
    client.identify(uid, {"email": email, "first_name": "Оля", "email_consent": True})
    client.track(uid, "Newsletter Subscribed", {"form": "footer"})
    client.flush()
    local.advance(60)
    mine = local.expect(lambda: [m for m in local.outbox() if m["to"] == email])
    assert [(m["rule"], m["step"]) for m in mine] == [("subscriber-welcome", 1)]
    assert "Оля" in mine[0]["subject"]
    local.advance(5 * 86400 + 600)  # the "last chance" before the gift expires
    mine = [m for m in local.outbox() if m["to"] == email]
    assert [(m["rule"], m["step"]) for m in mine] == [("subscriber-welcome", 1), ("subscriber-welcome", 3)]
    assert not any(m["rule"] == "welcome" for m in mine)


def test_a_buyer_without_marketing_consent_gets_the_order_confirmation_and_no_marketing(local: Any) -> None:
    uid = f"e2e-buyer-{uuid.uuid4().hex[:10]}"
    email = f"{uid}@example.com"
    client = _segment(local)
    client.identify(uid, {"email": email, "email_consent": False})
    client.track(uid, "Checkout Started", {"cart_id": f"{uid}-k", "revenue": 990})
    client.track(uid, "Order Completed", {"order_id": f"{uid}-o1", "revenue": 990, "currency": "RUB",
                                          "products": [{"product_id": "e2e-p1", "name": "Чайник", "price": 990}]})
    client.flush()
    local.advance(60)
    mine = local.expect(lambda: [m for m in local.outbox() if m["to"] == email])
    assert [(m["rule"], m["step"]) for m in mine] == [("order-confirmation", 0)]
    assert f"{uid}-o1" in (mine[0]["html"] or "")
    local.advance(4 * 86400)  # the accessories (marketing) would be due after 3 days
    assert [m["rule"] for m in local.outbox() if m["to"] == email] == ["order-confirmation"]


def test_a_sign_up_without_consent_gets_the_double_opt_in_and_its_post_starts_the_welcome(local: Any) -> None:
    uid = f"e2e-doi-{uuid.uuid4().hex[:10]}"
    email = f"{uid}@example.com"
    client = _segment(local)
    client.identify(uid, {"email": email})
    client.track(uid, "Signed Up", {})
    client.flush()
    local.advance(60)
    mine = local.expect(lambda: [m for m in local.outbox() if m["to"] == email])
    assert [m["rule"] for m in mine] == ["double-opt-in"]
    path = re.search(r"(/optin/[A-Za-z0-9._~-]+)", mine[0]["text"])
    assert path, mine[0]["text"]
    status, _ = local.request("GET", path.group(1))  # a scanner's GET: a page, nothing recorded
    assert status == 200
    assert local.admin(f"/admin/customers/{uid}")["consent"]["email"] is False
    status, _ = local.request("POST", path.group(1), "confirm=1",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert local.admin(f"/admin/customers/{uid}")["consent"]["email"] is True
    local.advance(60)
    local.expect(lambda: [m for m in local.outbox() if m["to"] == email and m["rule"] == "welcome"])
