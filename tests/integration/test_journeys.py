"""Journeys of the scenario library driven across virtual time (in process: tick + sender on moto)."""

from __future__ import annotations

from typing import Any

from retention.core import clock

from tests.support import advance, sent_emails


def identify(uid: str, email: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}-{sorted(traits.items())}",
            "traits": {"email": email, "email_consent": True, **traits}}


def track(uid: str, event: str, mid: str, ts: str | None = None, **props: Any) -> dict[str, Any]:
    msg = {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props}
    if ts:
        msg["timestamp"] = ts
    return msg


def treated(rule: str, prefix: str) -> str:
    """A customer id outside the rule's holdout (assignment is a deterministic hash)."""
    from retention.language.rules import in_holdout
    return next(f"{prefix}{i}" for i in range(100) if not in_holdout(f"{prefix}{i}", rule, 10))


def rules_sent(to: str) -> list[str]:
    return [m["headers"].get("X-Retention-Rule", "") for m in sent_emails() if to in m["to"]]


def test_abandoned_cart_reminds_then_stops_on_order(library_stack: Any) -> None:
    s = library_stack
    c1 = treated("abandoned-cart", "c1-")
    s.ingest([identify(c1, "cart@example.com", first_name="Ира"),
              track(c1, "Checkout Started", "cs1", cart_id="k1", products=[{"product_id": "p1", "price": 990}])])
    advance(s, hours=9)  # the first reminder 8 h after the cart (seed 001 "Корзина 8-24 часа")
    assert "abandoned-cart" in rules_sent("cart@example.com")
    reminders = rules_sent("cart@example.com").count("abandoned-cart")
    s.ingest([track(c1, "Order Completed", "o1", order_id="o1", revenue=990)])
    advance(s, days=3)
    assert rules_sent("cart@example.com").count("abandoned-cart") == reminders  # no discount after the order
    journey = s.profile(c1).journeys["abandoned-cart"]
    assert journey["state"] == "exited" and journey["exit_reason"] == "goal:Order Completed"


def test_double_tick_sends_once(library_stack: Any) -> None:
    s = library_stack
    c2 = treated("abandoned-cart", "c2-")
    s.ingest([identify(c2, "twice@example.com"), track(c2, "Checkout Started", "cs2")])
    from datetime import timedelta
    clock.set_now(clock.now() + timedelta(hours=9))  # past the 8-hour wait
    t = s.ticker()
    first = t.tick()
    second = t.tick()
    from tests.support import drain_sends
    outcomes = drain_sends(s)
    assert first.sends >= 1 and second.sends == 0
    assert [o.status for _, o in outcomes].count("sent") == 1


def test_inactive_customer_goes_through_reactivation_to_lost(library_stack: Any, now: Any) -> None:
    s = library_stack
    from datetime import timedelta
    old = clock.iso(now - timedelta(days=175))
    # a history import: the order updates KPIs and segments but starts no journey
    s.ingest([identify("c3", "sleepy@example.com", first_name="Олег"),
              track("c3", "Order Completed", "o3", ts=old, order_id="o3", revenue=500)])
    assert "post-purchase" not in s.profile("c3").journeys
    advance(s, days=10)  # crosses 180 days since the last order: inactive → reactivation starts
    p = s.profile("c3")
    assert "reactivation" in p.journeys
    advance(s, days=40)
    p = s.profile("c3")
    assert p.segments["lifecycle"].keys() == {"lost"}
    assert rules_sent("sleepy@example.com").count("reactivation") >= 2


def test_birthday_in_the_customers_timezone(library_stack: Any, now: Any) -> None:
    s = library_stack
    # now = 2026-11-24 09:00 UTC; birthday on Nov 28, Vladivostok (UTC+10)
    s.ingest([identify("c4", "bday@example.com", birthday="1990-11-28", timezone="Asia/Vladivostok")])
    advance(s, days=5)
    sent = [m for m in sent_emails() if "bday@example.com" in m["to"]]
    assert any(m["headers"].get("X-Retention-Rule") == "birthday" for m in sent)
    j = s.profile("c4").journeys["birthday"]
    entered = clock.parse_iso(j["entered_at"])
    local = entered.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Vladivostok"))
    assert local.hour == 10  # the rule's local hour, not UTC
