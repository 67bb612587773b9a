"""The scenario library over HTTP on the local stack, driven by the virtual clock: the abandoned cart is
reminded about four hours after the checkout and stopped by the order (no discount letter after it). The
shop's side is the real Segment client pointed at the local URL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from retention.language.rules import in_holdout

pytestmark = pytest.mark.e2e


def treated(rule: str, percent: float) -> str:
    """A fresh customer id (the local stack lives for the whole session) outside the rule's holdout."""
    while True:
        cid = f"e2e-cart-{uuid.uuid4().hex[:10]}"
        if not in_holdout(cid, rule, percent):
            return cid


def test_abandoned_cart_reminded_after_four_hours_and_stopped_by_the_order(local: Any) -> None:
    import segment.analytics as analytics

    uid = treated("abandoned-cart", 10)
    email = f"{uid}@example.com"
    client = analytics.Client(write_key="dev-write-key", host=local.url, sync_mode=True, max_retries=1)
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
    local.advance(3 * 3600 + 50 * 60)  # 3 h 50 min: not yet
    assert cart_mails() == []
    local.advance(15 * 60)  # past the 4-hour wait: the reminder
    reminder = local.expect(cart_mails)
    assert [(m["step"], m["channel"]) for m in reminder] == [(1, "email")]
    assert "Ира" in reminder[0]["subject"]

    client.track(uid, "Order Completed", {"order_id": f"{uid}-o1", "revenue": 990, "currency": "RUB"})
    client.flush()
    local.expect(lambda: journey()["state"] == "exited")
    local.advance(2 * 86400)  # the discount was due a day after the reminder
    assert [m["step"] for m in cart_mails()] == [1]  # no discount letter after the order
    ended = journey()
    assert ended["state"] == "exited" and ended.get("exit_reason") == "goal:Order Completed", ended
