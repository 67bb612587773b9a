"""Every rule of the scenario library that test_journeys.py does not drive, end to end in process: ingest →
tick → sender on moto, across virtual time (`advance`). Each test asserts on the emails SES received (the
`X-Retention-Rule` / `X-Retention-Step` headers), on the journey kept in the profile, and on nothing going
out twice. NPS survey and follow-up: tests/integration/test_nps.py."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from hashlib import md5
from itertools import pairwise
from typing import Any

import pytest
from retention.core import clock, ddb

from tests.support import Stack, advance, drain_sends, sent_emails

# ---- helpers -----------------------------------------------------------------------------------------


def identify(uid: str, email: str | None = None, consent: bool = True, **traits: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"email_consent": consent, **traits}
    if email:
        body["email"] = email
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}-{sorted(body.items())}", "traits": body}


def track(uid: str, event: str, mid: str, ts: datetime | None = None, **props: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props}
    if ts is not None:
        msg["timestamp"] = clock.iso(ts)
    return msg


def treated(prefix: str, **holdouts: float) -> str:
    """A customer id outside the holdout of every rule named (rule id with `_` for `-` → percent); the
    assignment is a deterministic hash, so the same id is treated on every run."""
    from retention.language.rules import in_holdout
    return next(f"{prefix}{i}" for i in range(200)
                if not any(in_holdout(f"{prefix}{i}", rule.replace("_", "-"), pct) for rule, pct in holdouts.items()))


def mails(to: str, rule: str | None = None) -> list[tuple[str, int]]:
    """(rule, step) of every email SES received for `to`, in order; one rule only when named."""
    out = []
    for m in sent_emails():
        if to not in m["to"]:
            continue
        r = m["headers"].get("X-Retention-Rule", "")
        if rule is None or r == rule:
            out.append((r, int(m["headers"].get("X-Retention-Step", "-1"))))
    return out


def subjects(to: str, rule: str) -> list[str]:
    return [m["subject"] for m in sent_emails() if to in m["to"] and m["headers"].get("X-Retention-Rule") == rule]


def sms_sent() -> list[tuple[str, str]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends
    return list(sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages.values())


def no_duplicates() -> None:
    """No (recipient, rule, step) pair twice in SES: each journey step is delivered once."""
    seen = Counter((tuple(m["to"]), m["headers"].get("X-Retention-Rule"), m["headers"].get("X-Retention-Step"),
                    m["headers"].get("X-Retention-Ledger")) for m in sent_emails())
    twice = {k: n for k, n in seen.items() if n > 1}
    assert not twice, twice
    by_step = Counter((tuple(m["to"]), m["headers"].get("X-Retention-Rule"), m["headers"].get("X-Retention-Step"))
                      for m in sent_emails())
    # re-entrant rules (order-status, newsletter) may repeat a step for a new entry: counted per ledger above
    assert all(n == 1 for (_, rule, _), n in by_step.items() if rule not in ("order-status", "newsletter")), by_step


def forward(s: Stack, **delta: float) -> None:
    """`advance`: the virtual clock stops at every due item and at every firing of a scheduled rule."""
    advance(s, **delta)


def click(to: str, rule: str) -> None:
    """SES click feedback (configuration set → SNS → feedback) on the last email of `rule` sent to `to`."""
    from retention.core.runtime import deps
    from retention.messaging.feedback import Feedback
    ledger = [m["headers"]["X-Retention-Ledger"] for m in sent_emails()
              if to in m["to"] and m["headers"].get("X-Retention-Rule") == rule][-1]
    assert Feedback(deps()).handle({"eventType": "Click", "mail": {"tags": {"ledger": [ledger]}},
                                    "click": {"link": "https://shop.test/"}}) == "clicked"


def journey(s: Stack, cid: str, rule: str) -> dict[str, Any]:
    """The customer's latest journey of `rule` (keyed rules keep one per order: `<rule>#<order_id>`)."""
    mine = [j for slot, j in s.profile(cid).journeys.items() if slot.split("#", 1)[0] == rule]
    assert mine, (cid, rule)
    latest: dict[str, Any] = max(mine, key=lambda j: j["entered_at"])
    return latest


def ledger_reasons(s: Stack, template: str) -> dict[str, str]:
    """customer → the ledger's reason for every message of `template` that was not sent."""
    items = [ddb.deserialize(i) or {} for i in s.deps.dynamodb.scan(TableName=s.tables["messages"])["Items"]]
    return {str(i["customer_id"]): str(i.get("reason")) for i in items
            if i.get("template") == template and i.get("status") != "sent"}


# ---- welcome ---------------------------------------------------------------------------------------------


def test_welcome_thanks_offer_forgot_us_and_exit_on_order(library_stack: Stack, now: datetime) -> None:
    """Seed 001: thanks at 0 h, the offer the next day and "forgot us?" on day 30, all marketing: only with
    email consent (issue 14; without it the double opt-in asks, tests/integration/test_library_consent.py);
    an order ends the chain."""
    s = library_stack
    # Thursday 09:00 UTC: day 30 is then a Saturday, not a newsletter morning (a letter two hours after the
    # newsletter would be skipped by the 16-hour frequency cap)
    clock.set_now(now + timedelta(days=2))
    s.ingest([identify("w-yes", "w.yes@example.com", first_name="Вера"), track("w-yes", "Signed Up", "w1"),
              identify("w-no", "w.no@example.com", consent=False), track("w-no", "Signed Up", "w2"),
              identify("w-buy", "w.buy@example.com"), track("w-buy", "Signed Up", "w3")])
    forward(s, hours=1)
    for to in ("w.yes@example.com", "w.buy@example.com"):
        assert mails(to, "welcome") == [("welcome", 1)], to
    assert mails("w.no@example.com") == []  # refused: no welcome (marketing), no opt-in request
    assert "welcome" not in s.profile("w-no").journeys
    assert "Вера" in subjects("w.yes@example.com", "welcome")[0]
    forward(s, hours=23, minutes=30)  # the offer is due 24 h after the sign-up
    assert mails("w.yes@example.com", "welcome") == [("welcome", 1), ("welcome", 3)]
    s.ingest([track("w-buy", "Order Completed", "w-o1", order_id="w-o1", revenue=1500)])
    forward(s, days=28)
    assert mails("w.yes@example.com", "welcome") == [("welcome", 1), ("welcome", 3)]  # day 29: not yet
    forward(s, days=2)
    assert mails("w.yes@example.com", "welcome") == [("welcome", 1), ("welcome", 3), ("welcome", 5)]
    assert mails("w.buy@example.com", "welcome") == [("welcome", 1), ("welcome", 3)]  # no "forgot us?"
    assert journey(s, "w-yes", "welcome")["state"] == "completed"
    bought = journey(s, "w-buy", "welcome")
    assert bought["state"] == "exited" and bought["exit_reason"] == "goal:Order Completed"
    # re_entry: allowed false — signing up again starts nothing
    s.ingest([track("w-yes", "Signed Up", "w4")])
    forward(s, days=2)
    assert mails("w.yes@example.com", "welcome") == [("welcome", 1), ("welcome", 3), ("welcome", 5)]
    no_duplicates()


# ---- browse abandonment ----------------------------------------------------------------------------------


def test_browse_abandonment_reminds_after_a_day_and_stops_on_product_added(library_stack: Stack) -> None:
    s = library_stack
    _catalog(s, [{"product_id": "p1", "name": "Чайник", "price": 1990, "category": "kettles"},
                 {"product_id": "p2", "name": "Чайник стеклянный", "price": 2290, "category": "kettles"},
                 {"product_id": "p3", "name": "Чайник со свистком", "price": 1790, "category": "kettles",
                  "in_stock": False},
                 {"product_id": "p4", "name": "Тостер", "price": 2990, "category": "toasters"}])
    looker = treated("b-look-", browse_abandonment=10)
    clicker = treated("b-click-", browse_abandonment=10)
    carter = treated("b-cart-", browse_abandonment=10, abandoned_cart=10)
    s.ingest([identify(looker, "look@example.com"), identify(carter, "cart.b@example.com"),
              identify(clicker, "click@example.com"),
              track(looker, "Product Viewed", "b1", product_id="p1", name="Чайник"),
              track(clicker, "Product Viewed", "b5", product_id="p4"),
              track(carter, "Product Viewed", "b2", product_id="p1", name="Чайник"),
              # a page view without a product starts nothing (the trigger's `where`)
              track("b-nop", "Product Viewed", "b3", category="kettles")])
    s.ingest([identify("b-nop", "nop@example.com")])
    forward(s, hours=2)
    s.ingest([track(carter, "Product Added", "b4", product_id="p1", cart_id="k1")])
    forward(s, hours=21)
    assert mails("look@example.com") == []
    forward(s, hours=2)  # 25 h after the view: the stimulating letter
    assert mails("look@example.com", "browse-abandonment") == [("browse-abandonment", 1)]
    assert any("Чайник" in (m["html"] or "") for m in sent_emails() if "look@example.com" in m["to"])
    assert mails("click@example.com", "browse-abandonment") == [("browse-abandonment", 1)]
    click("click@example.com", "browse-abandonment")  # SES click feedback on the reminder
    forward(s, days=2)  # no click on it: similar products two days later
    assert mails("look@example.com", "browse-abandonment") == [("browse-abandonment", 1), ("browse-abandonment", 4)]
    similar = [m["html"] for m in sent_emails() if "look@example.com" in m["to"]
               and m["headers"]["X-Retention-Step"] == "4"]
    assert "Чайник стеклянный" in similar[0] and "Чайник со свистком" not in similar[0]  # in stock only
    forward(s, days=3)  # still no click: the one-click survey (issue 14)
    assert mails("look@example.com", "browse-abandonment") == [("browse-abandonment", 1), ("browse-abandonment", 4),
                                                               ("browse-abandonment", 7)]
    assert journey(s, looker, "browse-abandonment")["state"] == "completed"
    # the clicker took the branch to the end: no second letter
    assert mails("click@example.com", "browse-abandonment") == [("browse-abandonment", 1)]
    assert journey(s, clicker, "browse-abandonment")["state"] == "completed"
    stopped = journey(s, carter, "browse-abandonment")
    assert stopped["state"] == "exited" and stopped["exit_reason"] == "goal:Product Added"
    assert mails("cart.b@example.com", "browse-abandonment") == []
    assert mails("cart.b@example.com", "abandoned-cart")[:1] == [("abandoned-cart", 1)]  # the cart took over
    assert "browse-abandonment" not in s.profile("b-nop").journeys
    assert mails("nop@example.com", "browse-abandonment") == []
    no_duplicates()


# ---- post purchase ---------------------------------------------------------------------------------------


def test_order_confirmation_at_once_then_accessories(library_stack: Stack) -> None:
    """The confirmation is the transactional `order-confirmation` (issue 14), the accessories the marketing
    `post-purchase` three days later."""
    s = library_stack
    _catalog(s, [{"product_id": "p9", "name": "Кофемолка", "price": 2490, "category": "grinders",
                  "accessories": ["p10"]},
                 {"product_id": "p10", "name": "Щёточка для кофемолки", "price": 190, "category": "care"}])
    buyer = treated("pp-", post_purchase=5)
    s.ingest([identify(buyer, "buyer@example.com", first_name="Лев"),
              track(buyer, "Order Completed", "pp1", order_id="A-17", revenue=2490,
                    products=[{"product_id": "p9", "name": "Кофемолка", "price": 2490}])])
    forward(s, minutes=5)
    assert mails("buyer@example.com") == [("order-confirmation", 0)]
    assert any("A-17" in (m["html"] or "") for m in sent_emails())
    forward(s, days=2, hours=23)
    assert mails("buyer@example.com", "post-purchase") == []
    forward(s, hours=2)
    assert mails("buyer@example.com", "post-purchase") == [("post-purchase", 1)]
    assert any("Кофемолка" in (m["html"] or "") and "Щёточка для кофемолки" in (m["html"] or "")
               for m in sent_emails() if m["headers"].get("X-Retention-Rule") == "post-purchase")
    assert journey(s, buyer, "post-purchase")["state"] == "completed"
    forward(s, days=5)
    assert len(mails("buyer@example.com", "post-purchase")) == 1
    no_duplicates()


# ---- product events (fanned out through the interest index) -------------------------------------------------


def _catalog(s: Stack, products: list[dict[str, Any]]) -> None:
    from retention.products.catalog import Catalog, Product
    Catalog(s.deps.dynamodb, s.deps.env.products_table).upsert([Product.model_validate(p) for p in products])


@pytest.mark.parametrize(("rule", "event", "extra"), [
    ("back-in-stock", "Product Back in Stock", {"name": "Чайник", "price": 1990}),
    ("price-drop", "Product Price Dropped", {"name": "Чайник", "price": 1490, "previous_price": 1990}),
    ("low-stock", "Product Low Stock", {"name": "Чайник", "stock": 2}),
])
def test_product_event_reaches_the_interested_customers_only(library_stack: Stack, now: datetime, rule: str,
                                                              event: str, extra: dict[str, Any]) -> None:
    s = library_stack
    hold = {rule.replace("-", "_"): {"back-in-stock": 0, "price-drop": 5, "low-stock": 5}[rule]}
    fan = treated("pe-fan-", **hold)
    other = treated("pe-other-", **hold)
    stale = treated("pe-stale-", **hold)
    s.ingest([identify(fan, "fan@example.com"), identify(other, "other@example.com"),
              identify(stale, "stale@example.com"),
              track(fan, "Product Viewed", "pe1", product_id="p1"),
              track(other, "Product Viewed", "pe2", product_id="p2"),
              # 20 days ago: inside back-in-stock's and price-drop's 30-day window, outside low-stock's 14
              track(stale, "Product Added", "pe3", ts=now - timedelta(days=20), product_id="p1")])
    rows = ddb.query(s.deps.dynamodb, s.tables["profiles"], "PI#p1")
    assert {r["customer_id"] for r in rows} == {fan, stale}
    forward(s, minutes=30)
    # the shop posts the product event from its own id
    s.ingest([track("shop-feed", event, "pe-shop-1", product_id="p1", **extra)])
    forward(s, minutes=10)
    assert mails("fan@example.com") == [(rule, 0)]
    assert mails("other@example.com") == []
    assert mails("stale@example.com") == ([] if rule == "low-stock" else [(rule, 0)])
    assert journey(s, fan, rule)["state"] == "completed"
    assert journey(s, fan, rule)["trigger"]["properties"]["product_id"] == "p1"
    assert rule not in s.profile(other).journeys
    assert rule not in s.profile("shop-feed").journeys
    html = next(m["html"] or "" for m in sent_emails() if "fan@example.com" in m["to"])
    assert "Чайник" in html
    # the same message retried, and a second event inside the cooldown: nothing more
    s.ingest([track("shop-feed", event, "pe-shop-1", product_id="p1", **extra)])
    s.ingest([track("shop-feed", event, "pe-shop-2", product_id="p1", **extra)])
    forward(s, hours=1)
    assert mails("fan@example.com", rule) == [(rule, 0)]
    no_duplicates()


def test_back_in_stock_goes_by_sms_when_the_customer_prefers_it(library_stack: Stack) -> None:
    s = library_stack
    s.ingest([identify("bis-sms", "bis.sms@example.com", phone="+79161234567", sms_consent=True,
                       preferred_channel="sms", first_name="Оля"),
              track("bis-sms", "Product Viewed", "bs1", product_id="p7")])
    forward(s, minutes=5)
    s.ingest([track("shop-feed", "Product Back in Stock", "bs2", product_id="p7")])
    forward(s, minutes=5)  # 12:10 in Moscow: outside the SMS quiet hours
    assert mails("bis.sms@example.com", "back-in-stock") == []
    texts = [text for phone, text in sms_sent() if phone == "+79161234567"]
    assert len(texts) == 1 and "Оля" in texts[0]


# ---- order status (transactional) -----------------------------------------------------------------------------


def test_order_status_shipped_ready_and_the_reminder_before_return(library_stack: Stack) -> None:
    s = library_stack
    # service messages: no marketing consent needed
    s.ingest([identify("os-a", "os.a@example.com", consent=False, first_name="Ян"),
              identify("os-b", "os.b@example.com", consent=False),
              identify("os-sms", "os.sms@example.com", consent=False, phone="+79031112233",
                       preferred_channel="sms"),
              track("os-a", "Order Shipped", "os1", order_id="A1", tracking_number="TRK1"),
              track("os-b", "Order Ready for Pickup", "os2", order_id="B1", pickup_code="4321"),
              track("os-sms", "Order Ready for Pickup", "os3", order_id="S1", pickup_code="9876")])
    forward(s, minutes=5)
    assert mails("os.a@example.com") == [("order-status", 0)]
    assert subjects("os.a@example.com", "order-status") == ["Заказ в пути, Ян"]
    assert journey(s, "os-a", "order-status")["state"] == "completed"  # shipped: no reminder
    assert mails("os.b@example.com") == [("order-status", 0)]
    assert subjects("os.b@example.com", "order-status")[0].startswith("Заказ ждёт вас")
    assert any("4321" in (m["html"] or "") for m in sent_emails() if "os.b@example.com" in m["to"])
    assert mails("os.sms@example.com") == []
    first_sms = [t for p, t in sms_sent() if p == "+79031112233"]
    assert len(first_sms) == 1 and "9876" in first_sms[0] and "S1" in first_sms[0]
    # A's order is at the pickup point now (a new entry: re-entry allowed); B picks up on day 2
    s.ingest([track("os-a", "Order Ready for Pickup", "os4", order_id="A1", pickup_code="1111")])
    forward(s, days=2)
    s.ingest([track("os-b", "Order Picked Up", "os5", order_id="B1")])
    forward(s, days=2, hours=23)
    assert mails("os.a@example.com", "order-status") == [("order-status", 0), ("order-status", 0)]
    forward(s, hours=2)  # five days at the pickup point without `Order Picked Up`: the reminder
    assert mails("os.a@example.com", "order-status") == [("order-status", 0)] * 2 + [("order-status", 3)]
    assert journey(s, "os-a", "order-status")["state"] == "completed"
    assert mails("os.b@example.com", "order-status") == [("order-status", 0)]
    picked = journey(s, "os-b", "order-status")
    assert picked["state"] == "exited" and picked["exit_reason"] == "goal:Order Picked Up"
    reminders = [t for p, t in sms_sent() if p == "+79031112233"]
    assert len(reminders) == 2 and "9876" in reminders[1]
    assert mails("os.sms@example.com") == []
    forward(s, days=7)
    assert len(mails("os.a@example.com", "order-status")) == 3
    assert len([t for p, t in sms_sent() if p == "+79031112233"]) == 2
    no_duplicates()


# ---- losing customer ----------------------------------------------------------------------------------------


def test_a_pause_longer_than_the_rhythm_makes_the_customer_unstable(library_stack: Stack, now: datetime) -> None:
    """Three orders 30 days apart (the history import starts nothing); 1.5 x 30 = 45 days after the last one
    the customer enters `unstable` and gets the personal selection, then (no click) the offer."""
    s = library_stack
    cid = treated("lc-", losing_customer=10)
    s.ingest([identify(cid, "rhythm@example.com")] + [
        track(cid, "Order Completed", f"lc-o{n}", ts=now - timedelta(days=d), order_id=f"lc-o{n}", revenue=900)
        for n, d in enumerate((90, 60, 30))])
    p = s.profile(cid)
    assert p.kpis["average_days_between_orders"] == 30
    assert "unstable" not in p.segments.get("lifecycle", {})
    assert "post-purchase" not in p.journeys
    forward(s, days=14)
    assert mails("rhythm@example.com", "losing-customer") == []
    forward(s, days=2)  # 46 days since the last order
    assert set(s.profile(cid).segments["lifecycle"]) == {"unstable"}
    assert mails("rhythm@example.com", "losing-customer") == [("losing-customer", 0)]
    forward(s, days=5, hours=1)
    assert mails("rhythm@example.com", "losing-customer") == [("losing-customer", 0), ("losing-customer", 3)]
    assert journey(s, cid, "losing-customer")["state"] == "completed"
    no_duplicates()


# ---- review request ------------------------------------------------------------------------------------------


def test_review_request_a_week_after_delivery_unless_reviewed(library_stack: Stack) -> None:
    s = library_stack
    s.ingest([identify("rr-a", "rr.a@example.com"), identify("rr-b", "rr.b@example.com"),
              track("rr-a", "Order Delivered", "rr1", order_id="R1", products=[{"product_id": "p3", "name": "Плед"}]),
              track("rr-b", "Order Delivered", "rr2", order_id="R2")])
    forward(s, days=3)
    s.ingest([track("rr-b", "Product Reviewed", "rr3", product_id="p5", rating=5)])
    forward(s, days=3, hours=23)
    assert mails("rr.a@example.com", "review-request") == []
    forward(s, hours=2)
    assert mails("rr.a@example.com", "review-request") == [("review-request", 1)]
    assert any("Плед" in (m["html"] or "") for m in sent_emails() if "rr.a@example.com" in m["to"])
    assert mails("rr.b@example.com", "review-request") == []
    reviewed = journey(s, "rr-b", "review-request")
    assert reviewed["state"] == "exited" and reviewed["exit_reason"] == "goal:Product Reviewed"
    forward(s, days=7)
    assert mails("rr.a@example.com", "review-request") == [("review-request", 1)]
    no_duplicates()


# ---- newsletter (scheduled broadcast) ----------------------------------------------------------------------------


def scan_segment(cid: str, total: int = 16) -> int:
    """The parallel-scan segment moto puts a profile in (a hash of its partition key)."""
    return md5(f"C#{cid}".encode()).digest()[0] % total


def test_newsletter_broadcast_once_to_consenting_customers_spread_by_rate(library_stack: Stack, now: datetime
                                                                           ) -> None:
    """cron(0 10 1,15 * ? *) Europe/Moscow: 2026-12-01 07:00 UTC. The firing fans out TRIGGER due
    items at most `rate_per_minute` a minute; consenting customers get the letter once, the others none."""
    s = library_stack
    s.deps.config.set_enabled("RULE", "newsletter", True)  # shipped disabled
    same = [f"nl-{i}" for i in range(200) if scan_segment(f"nl-{i}") == 3][:3]  # one scan page: paced
    s.ingest([identify(cid, f"{cid}@example.com") for cid in same]
             + [identify("nl-no", "nl-no@example.com", consent=False)])
    fired = datetime(2026, 12, 1, 7, 0, tzinfo=now.tzinfo)
    forward(s, days=6, hours=21, minutes=59)  # December 1st, 06:59 UTC
    assert mails(f"{same[0]}@example.com") == []
    clock.set_now(fired + timedelta(milliseconds=1))
    assert s.ticker().tick().broadcasts == 1
    drain_sends(s)  # the recompute workers write the paced TRIGGER items
    items = [ddb.deserialize(i) or {} for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    triggers = sorted(clock.parse_iso(i["at"]) for i in items
                      if i["kind"] == "TRIGGER" and i["customer_id"] in same and i["ref"].startswith("newsletter|"))
    per_segment = 1000 / 16  # rate_per_minute 1000 shared by 16 scan segments
    assert len(triggers) == 3
    gaps = [(b - a).total_seconds() for a, b in pairwise(triggers)]
    assert all(abs(g - 60 / per_segment) < 0.01 for g in gaps), gaps
    forward(s, minutes=5)
    for cid in same:
        assert mails(f"{cid}@example.com") == [("newsletter", 0)], cid
    assert mails("nl-no@example.com") == []
    # outside the audience when it fires: no journey at all (issue 14: the audience is checked at entry too)
    assert "newsletter" not in s.profile("nl-no").journeys and "nl-no" not in ledger_reasons(s, "newsletter")
    # the same firing fanned out again (a retried worker) starts nobody twice
    from retention.schedule.recompute import Broadcast, Recompute
    Recompute(s.deps).fan_out(broadcast=Broadcast(rule="newsletter", fired=fired))
    forward(s, days=1)
    for cid in same:
        assert mails(f"{cid}@example.com") == [("newsletter", 0)], cid
    no_duplicates()


# ---- broadcasts across virtual time, and a known limitation (strict xfail) ----------------------------------


def test_virtual_time_jumping_over_the_newsletter_firing_still_sends_it(library_stack: Stack, now: datetime
                                                                         ) -> None:
    from retention.schedule import due
    s = library_stack
    s.deps.config.set_enabled("RULE", "newsletter", True)  # shipped disabled
    s.ingest([identify("jump-1", "jump@example.com")])
    forward(s, minutes=1)
    # any later due item (a journey wait, a segment deadline): Friday 08:00 UTC
    due.put(s.deps.dynamodb, s.tables["due"], [due.DueItem(at=datetime(2026, 12, 2, 8, tzinfo=now.tzinfo),
                                                           kind="SEGMENT", customer_id="jump-1", ref="segments")],
            s.deps.env.due_shards)
    advance(s, days=8)  # over December 1st, 07:00 UTC in one jump, as /_local/clock/advance does
    assert mails("jump@example.com", "newsletter") == [("newsletter", 0)]


def test_a_second_order_gets_its_status_while_the_first_waits_at_the_pickup_point(library_stack: Stack) -> None:
    s = library_stack
    s.ingest([identify("os-two", "two@example.com", consent=False),
              track("os-two", "Order Ready for Pickup", "two1", order_id="X1", pickup_code="1")])
    forward(s, days=1)
    s.ingest([track("os-two", "Order Shipped", "two2", order_id="X2", tracking_number="T2")])
    forward(s, minutes=5)
    assert subjects("two@example.com", "order-status") == ["Заказ ждёт вас, друг", "Заказ в пути, друг"]


def test_a_late_broadcast_is_still_paced(library_stack: Stack, now: datetime) -> None:
    s = library_stack
    s.deps.config.set_enabled("RULE", "newsletter", True)  # shipped disabled
    same = [f"nl-{i}" for i in range(200) if scan_segment(f"nl-{i}") == 3][:3]
    s.ingest([identify(cid, f"{cid}@example.com") for cid in same])
    forward(s, days=6, hours=21, minutes=59)  # December 1st, 06:59 UTC
    clock.set_now(datetime(2026, 12, 1, 7, 30, tzinfo=now.tzinfo))  # the tick catches up half an hour late
    assert s.ticker().tick().broadcasts == 1
    drain_sends(s)
    items = [ddb.deserialize(i) or {} for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    triggers = sorted(clock.parse_iso(i["at"]) for i in items if i["kind"] == "TRIGGER" and i["customer_id"] in same)
    assert len(triggers) == 3
    assert all((b - a).total_seconds() >= 0.9 for a, b in pairwise(triggers)), triggers
