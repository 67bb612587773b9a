"""Products in messages on moto: the catalogue (admin route, learning from events), recommendations (kinds
and exclusions, incremental co-purchase counts), coupon pools (upload, one code per send, retries, empty
pool, fallback), redemption with revenue on the issuing rule, and the sender putting it all in an email."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.messaging.requests import SendRequest

try:  # the counters' reader is moving from messaging.requests to analytics.counters
    from retention.analytics.counters import read_counters  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from retention.messaging.requests import read_counters  # type: ignore[attr-defined,no-redef,unused-ignore]
from retention.admin.people import create_admin_token
from retention.customers.store import profile_pk
from retention.products.catalog import Catalog
from retention.products.coupons import Coupons, PoolEmptyError, fallback_code, verify_fallback
from retention.products.recommend import Recommendations, Recommender

from tests.integration.test_admin_api import call, identify, track

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

SHOES = [
    {"product_id": "s1", "name": "Trail shoes", "url": "https://shop.test/p/s1", "image_url": "https://shop.test/i/s1.jpg",
     "price": 5000, "currency": "RUB", "category": "Shoes", "brand": "Stride", "in_stock": True,
     "accessories": ["a1", "a2"]},
    {"product_id": "s2", "name": "City sneakers", "url": "https://shop.test/p/s2", "price": 4500, "category": "Shoes",
     "in_stock": True},
    {"product_id": "s3", "name": "Gym shoes", "url": "https://shop.test/p/s3", "price": 5500, "category": "shoes",
     "in_stock": False},
    {"product_id": "s4", "name": "Golden boots", "url": "https://shop.test/p/s4", "price": 90000, "category": "Shoes",
     "in_stock": True},
    {"product_id": "s5", "name": "Light runners", "url": "https://shop.test/p/s5", "price": 6000, "category": "Shoes",
     "in_stock": True},
    {"product_id": "a1", "name": "Socks", "url": "https://shop.test/p/a1", "price": 300, "category": "Accessories",
     "in_stock": True, "consumable": True},
    {"product_id": "a2", "name": "Insoles", "url": "https://shop.test/p/a2", "price": 700, "category": "Accessories",
     "in_stock": False},
    {"product_id": "c1", "name": "Cream", "url": "https://shop.test/p/c1", "price": 400, "category": "Care",
     "in_stock": True},
]


@pytest.fixture
def api(stack: Any) -> Any:
    create_admin_token(stack.deps.config, "t", token="tok")
    return stack


def _recs(stack: Any) -> Recommendations:
    return Recommendations(stack.deps.dynamodb, stack.deps.env.products_table)


def _ids(products: list[dict[str, Any]]) -> list[str]:
    return [p["product_id"] for p in products]


# ---- catalogue -------------------------------------------------------------------------------------


def test_catalog_upsert_route_validates_and_upserts(api: Any) -> None:
    status, body = call("PUT", "/admin/catalog", {"products": SHOES})
    assert status == 200, body
    assert body == {"products": 8, "created": 8, "updated": 0, "unchanged": 0}
    status, body = call("PUT", "/admin/catalog", {"products": [{**SHOES[0], "price": 5100}, SHOES[1]]})
    assert body == {"products": 2, "created": 0, "updated": 1, "unchanged": 1}
    status, card = call("GET", "/admin/catalog/s1")
    assert status == 200 and card["price"] == 5100 and card["accessories"] == ["a1", "a2"]
    status, body = call("PUT", "/admin/catalog", {"products": [{"name": "no id"}, {"product_id": "x", "price": "abc"}]})
    assert status == 400
    assert "products[0]" in body["message"] and "products[1]" in body["message"]
    # the category row moved with the price: one row per product in its category
    rows = list(ddb.query(api.deps.dynamodb, api.deps.env.products_table, "CAT#shoes"))
    assert sorted(r["product_id"] for r in rows) == ["s1", "s2", "s3", "s4", "s5"]


def test_events_teach_stock_and_price(api: Any) -> None:
    call("PUT", "/admin/catalog", {"products": SHOES})
    api.ingest([track("u1", "Product Back in Stock", "m1", product_id="s3"),
                track("u1", "Product Price Dropped", "m2", product_id="s5", price=4900),
                track("u1", "Product Viewed", "m3", product_id="unknown", price=1)])
    cat = Catalog(api.deps.dynamodb, api.deps.env.products_table)
    assert cat.get("s3")["in_stock"] is True
    assert cat.get("s5")["price"] == 4900
    assert cat.get("unknown") is None  # events never invent products
    assert {r["product_id"] for r in cat.in_category("Shoes", price_band=(4000, 5000))} == {"s1", "s2", "s5"}


def test_delete_removes_the_product_from_every_recommendation_and_is_audited(api: Any) -> None:
    call("PUT", "/admin/catalog", {"products": [*SHOES, {**SHOES[1], "product_id": "shop/42", "price": 4600}]})
    for n, items in enumerate([["s1", "s2", "a1"], ["s1", "s2"], ["s1", "shop/42"]]):
        api.ingest([track(f"b{n}", "Order Completed", f"d{n}", order_id=f"d{n}", revenue=100,
                          products=[{"product_id": p, "price": 10, "quantity": 1} for p in items])])
    recs = _recs(api)
    r = Recommender(recs, customer_id="new", now=clock.now())
    assert "s2" in _ids(r.recommend("similar", product="s1"))
    assert "s2" in _ids(r.recommend("bought_together", product="s1"))
    assert "s2" in _ids(r.recommend("popular", category="Shoes"))
    call("PUT", "/admin/catalog", {"products": [{**SHOES[0], "accessories": ["s2", "a1"]}]})
    assert _ids(r.recommend("accessories", product="s1")) == ["s2", "a1"]
    viewer = create_admin_token(api.deps.config, "v", token="viewer-token", role="viewer")
    assert call("DELETE", "/admin/catalog/s2", token=viewer)[0] == 403

    status, body = call("DELETE", "/admin/catalog/s2")
    assert status == 200, body
    assert body["product_id"] == "s2" and body["deleted"] is True
    assert call("GET", "/admin/catalog/s2")[0] == 404
    r = Recommender(recs, customer_id="new", now=clock.now())
    for kind, args in (("similar", {"product": "s1"}), ("bought_together", {"product": "s1"}),
                       ("accessories", {"product": "s1"}), ("popular", {"category": "Shoes"}),
                       ("personal", {})):
        assert "s2" not in _ids(r.recommend(kind, limit=12, **args)), kind
    assert _ids(r.recommend("accessories", product="s1")) == ["a1"]
    # its co-purchase rows go both ways, its popularity goes from its category's days
    assert [p for p, _ in recs.co_purchased("s1")] == ["a1", "shop/42"]
    assert recs.co_purchased("s2") == []
    assert "s2" not in recs.popular_ids("Shoes", clock.now())
    assert call("DELETE", "/admin/catalog/s2")[0] == 404

    status, body = call("DELETE", "/admin/catalog/shop%2F42")  # ids URL-encoded, as customer ids
    assert status == 200 and body["product_id"] == "shop/42"
    assert Catalog(api.deps.dynamodb, api.deps.env.products_table).get("shop/42") is None
    entries = call("GET", "/admin/audit", query={"kind": "catalog"})[1]["entries"]
    assert [(e["action"], e["id"]) for e in entries if e["action"] == "delete"] == [("delete", "shop/42"),
                                                                                     ("delete", "s2")]


# ---- recommendations -------------------------------------------------------------------------------


def test_similar_excludes_itself_out_of_stock_far_prices_and_what_was_bought(api: Any) -> None:
    call("PUT", "/admin/catalog", {"products": SHOES})
    r = Recommender(_recs(api), customer_id="u1")
    assert _ids(r.recommend("similar", product="s1", limit=4)) == ["s2", "s5"]  # closest price first
    api.ingest([track("u1", "Order Completed", "o1", order_id="o1", revenue=4500,
                      products=[{"product_id": "s2", "price": 4500, "quantity": 1}])])
    r = Recommender(_recs(api), customer_id="u1")
    assert _ids(r.recommend("similar", product="s1")) == ["s5"]
    assert r.calls == [("similar", 1)]


def test_co_purchases_accessories_popular_and_personal(api: Any) -> None:
    call("PUT", "/admin/catalog", {"products": SHOES})
    orders = [("b1", ["s1", "c1", "a1"]), ("b2", ["s1", "c1"]), ("b3", ["s5", "a1"])]
    for n, (cid, items) in enumerate(orders):
        api.ingest([track(cid, "Order Completed", f"ord{n}", order_id=f"ord{n}", revenue=100,
                          products=[{"product_id": p, "price": 10, "quantity": 1} for p in items])])
    recs = _recs(api)
    assert recs.co_purchased("s1") == [("c1", 2), ("a1", 1)]
    r = Recommender(recs, customer_id="new", now=clock.now())
    assert _ids(r.recommend("bought_together", product="s1")) == ["c1", "a1"]
    assert _ids(r.recommend("accessories", product="s1")) == ["a1"]  # a2 is out of stock
    assert _ids(r.recommend("popular", category="Shoes")) == ["s1", "s5"]
    # b1 bought s1, c1 and a1: a1 is consumable and may come again, c1 may not
    mine = Recommender(recs, customer_id="b1", interests={"s5": clock.iso(clock.now())})
    assert "c1" not in _ids(mine.recommend("bought_together", product="s1"))
    assert "a1" in _ids(mine.recommend("bought_together", product="s1"))
    assert "s1" not in _ids(mine.recommend("personal", limit=6))
    with pytest.raises(Exception, match="unknown recommendation kind"):
        r.recommend("cheapest", product="s1")


def test_recommendations_route(api: Any) -> None:
    call("PUT", "/admin/catalog", {"products": SHOES})
    api.ingest([identify("u1", "u1@example.com"), track("u1", "Product Viewed", "v1", product_id="s1")])
    status, body = call("GET", "/admin/customers/u1/recommendations", query={"kind": "similar"})
    assert status == 200, body
    assert body["product"] == "s1" and _ids(body["products"]) == ["s2", "s5"]
    status, body = call("GET", "/admin/customers/u1/recommendations", query={"kind": "nope"})
    assert status == 400 and "unknown recommendation kind" in body["message"]
    assert call("GET", "/admin/customers/ghost/recommendations")[0] == 404


# ---- coupons -----------------------------------------------------------------------------------------


def test_upload_rejects_duplicates_by_name_and_reports_stats(api: Any) -> None:
    status, body = call("POST", "/admin/coupons/welcome",
                        {"codes": ["W-1", "W-2", "W-2", "bad code"], "discount": "10%", "valid_days": 7})
    assert status == 200, body
    assert body["accepted"] == 2
    assert {(r["code"], r["reason"]) for r in body["rejected"]} == {
        ("W-2", "duplicate in the upload"), ("bad code", "invalid: letters, digits, - _ . (at most 64)")}
    status, body = call("POST", "/admin/coupons/cart", {"codes": ["W-1", "C-1"], "discount": "500 RUB",
                                                        "valid_days": 3})
    assert body["accepted"] == 1 and body["rejected"] == [{"code": "W-1", "reason": "already in pool 'welcome'"}]
    status, stats = call("GET", "/admin/coupons/welcome")
    today = clock.iso(clock.now())[:10]
    start = (clock.now() - __import__("datetime").timedelta(days=29)).date().isoformat()
    zero = {"issued": 0, "redeemed": 0, "revenue": 0.0}
    assert stats == {"pool": "welcome", "discount": "10%", "valid_days": 7, "uploaded": 2, "issued": 0,
                     "redeemed": 0, "revenue": 0.0, "left": 2, "fallback": zero,
                     "window": {"days": 30, "from": start, "to": today, **zero, "fallback": zero}}
    assert call("GET", "/admin/coupons/losing-customer")[1]["left"] == 0  # a default pool, empty
    assert call("GET", "/admin/coupons/nope")[0] == 404
    assert call("POST", "/admin/coupons/welcome", {"codes": ["X"], "discount": "ten", "valid_days": 7})[0] == 400
    assert {p["pool"] for p in call("GET", "/admin/coupons")[1]["pools"]} >= {"welcome", "cart", "reactivation"}


def test_one_code_per_send_same_on_retry_never_shared_and_empty_pool(api: Any) -> None:
    coupons = Coupons(api.deps.dynamodb, api.deps.env.products_table)
    coupons.upload("welcome", ["A1", "A2"], "10%", 7)
    kw = {"rule": "welcome", "entry": "e1", "step": 1, "variant": "default"}
    first = coupons.issue("welcome", customer_id="u1", ledger_id="L1", **kw)
    again = coupons.issue("welcome", customer_id="u1", ledger_id="L1", **kw)
    other = coupons.issue("welcome", customer_id="u2", ledger_id="L2", **kw)
    assert first.code == again.code and first.code != other.code
    assert first.discount == "10%" and first.expires_at == clock.iso(clock.now() + __import__("datetime").timedelta(days=7))
    with pytest.raises(PoolEmptyError):
        coupons.issue("welcome", customer_id="u3", ledger_id="L3", **kw)
    assert coupons.stats("welcome")["issued"] == 2 and coupons.stats("welcome")["left"] == 0


def test_fallback_code_recipe_is_verifiable() -> None:
    import datetime as dt
    code = fallback_code(b"secret", pool="welcome", discount="10%", expires_at=dt.datetime(2026, 12, 1),
                         customer_id="u1", rule="welcome", entry="e", step=1)
    assert code.startswith("WELC-10P-261201-")
    assert verify_fallback(b"secret", code) and not verify_fallback(b"other", code)


# ---- the sender and redemption ----------------------------------------------------------------------

UNSUB = '<a href="{{ links.unsubscribe }}">unsubscribe</a>'
T_OFFER = {"id": "t-offer", "category": "marketing", "default_locale": "en", "locales": {"en": {
    "subject": "A gift",
    "html": "<p>Code {{ coupon.code }}: {{ coupon.discount }} off until {{ coupon.expires_at | date }}</p>"
            "{% for p in recommend('similar', product=trigger.product_id, limit=4) %}"
            "<a href=\"{{ p.url }}\">{{ p.name }}</a> {{ p.price }}{% endfor %}" + UNSUB}}}
RULE = {"id": "offer", "trigger": {"event": "Product Viewed"},
        "steps": [{"send": {"channel": "email", "template": "t-offer", "coupon": {"pool": "welcome"},
                            "min_recommendations": 1}}]}


def _setup(stack: Any) -> None:
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", "t-offer", T_OFFER)
    cfg.apply("RULE", "offer", RULE)
    call("PUT", "/admin/catalog", {"products": SHOES})


def _send(stack: Any, uid: str, product: str) -> tuple[Any, list[Any]]:
    stack.ingest([identify(uid, f"{uid}@example.com"), track(uid, "Product Viewed", f"v-{uid}", product_id=product)])
    reqs = stack.queued_sends()
    sender = stack.sender()
    return [sender.send(r) for r in reqs], reqs


def _emails(stack: Any) -> list[dict[str, Any]]:
    from tests.support import sent_emails
    return sent_emails()


def test_send_with_coupon_and_similar_products_then_redemption(api: Any) -> None:
    _setup(api)
    Coupons(api.deps.dynamodb, api.deps.env.products_table).upload("welcome", ["W-1", "W-2"], "15%", 7)
    out1, reqs1 = _send(api, "u1", "s1")
    out2, _ = _send(api, "u2", "s1")
    assert [o.status for o in out1 + out2] == ["sent", "sent"]
    sender = api.sender()
    # a retried delivery of the same request: the ledger stops it, the code stays the one issued
    assert sender.send(reqs1[0]).status == "duplicate"
    bodies = [m["html"] for m in _emails(api)]
    codes = [next(c for c in ("W-1", "W-2") if c in b) for b in bodies]
    assert sorted(codes) == ["W-1", "W-2"]
    for b in bodies:
        assert "15% off until" in b and "Trail shoes" not in b.split("until", 1)[1]
        assert "City sneakers" in b and "Gym shoes" not in b and "Golden boots" not in b
        assert "utm_campaign=offer" in b and "rtm_lid=" in b
    # an order with u1's code: redeemed, revenue on the pool and on the rule's step
    api.ingest([track("u1", "Order Completed", "o-u1", order_id="o-u1", revenue=4200, coupon=codes[0],
                      products=[{"product_id": "s2", "price": 4200, "quantity": 1}])])
    stats = Coupons(api.deps.dynamodb, api.deps.env.products_table).stats("welcome")
    assert (stats["issued"], stats["redeemed"], stats["revenue"], stats["left"]) == (2, 1, 4200.0, 0)
    rows = read_counters(api.deps.dynamodb, api.deps.env.messages_table, "offer")
    assert sum(int(r.get("redeemed") or 0) for r in rows) == 1
    assert sum(float(r.get("redeemed_revenue") or 0) for r in rows) == 4200
    # the same order again (another messageId) does not count twice
    api.ingest([track("u1", "Order Completed", "o-u1-again", order_id="o-u1", revenue=4200, coupon=codes[0])])
    assert Coupons(api.deps.dynamodb, api.deps.env.products_table).stats("welcome")["redeemed"] == 1


def test_empty_pool_and_no_recommendations_skip_with_reasons(api: Any) -> None:
    _setup(api)
    out, _ = _send(api, "u1", "s1")  # the pool has no codes
    assert [(o.status, o.reason) for o in out] == [("skipped", "coupon_pool_empty")]
    Coupons(api.deps.dynamodb, api.deps.env.products_table).upload("welcome", ["W-9"], "10%", 7)
    out, _ = _send(api, "u2", "c1")  # the only cream: nothing similar in stock
    assert [(o.status, o.reason) for o in out] == [("skipped", "no_recommendations")]
    # the code was not spent on the skipped message
    assert Coupons(api.deps.dynamodb, api.deps.env.products_table).stats("welcome")["left"] == 1
    rows = read_counters(api.deps.dynamodb, api.deps.env.messages_table, "offer")
    reasons = {k for r in rows for k in r if k.startswith("suppressed:")}
    assert reasons == {"suppressed:coupon_pool_empty", "suppressed:no_recommendations"}


def test_hmac_fallback_when_the_step_allows_it(api: Any) -> None:
    _setup(api)
    rule = {**RULE, "steps": [{"send": {"channel": "email", "template": "t-offer",
                                        "coupon": {"pool": "welcome", "fallback": "hmac", "discount": "300 RUB"}}}]}
    api.deps.config.apply("RULE", "offer", rule)
    out, _ = _send(api, "u1", "s1")
    assert [o.status for o in out] == ["sent"]
    html = _emails(api)[-1]["html"]
    assert "WELC-300RUB-" in html and "300 RUB off" in html


def test_fallback_codes_are_counted_redeemed_and_windowed(api: Any) -> None:
    from datetime import timedelta
    _setup(api)
    rule = {**RULE, "steps": [{"send": {"channel": "email", "template": "t-offer",
                                        "coupon": {"pool": "welcome", "fallback": "hmac", "discount": "300 RUB"}}}]}
    api.deps.config.apply("RULE", "offer", rule)
    coupons = Coupons(api.deps.dynamodb, api.deps.env.products_table)
    coupons.upload("welcome", ["W-1"], "300 RUB", 7)
    outs = [_send(api, uid, "s1")[0] for uid in ("u1", "u2", "u3")]  # W-1, then two fallback codes
    assert [o.status for out in outs for o in out] == ["sent", "sent", "sent"]
    codes = [re.search(r"Code ([A-Z0-9-]+):", m["html"]).group(1) for m in _emails(api)]  # type: ignore[union-attr]
    assert codes[0] == "W-1" and all(c.startswith("WELC-300RUB-") for c in codes[1:])
    # the same send once more (a retry that got past the ledger): the same code, counted once
    again = coupons.issue_fallback(api.deps.config.secrets("coupons")[0], "welcome", discount="300 RUB",
                                   expires_at=clock.now() + timedelta(days=7), customer_id="u2", rule="offer",
                                   entry="x", step=0, code_step=0, variant="default", ledger_id="L")
    coupons.issue_fallback(api.deps.config.secrets("coupons")[0], "welcome", discount="300 RUB",
                           expires_at=clock.now() + timedelta(days=7), customer_id="u2", rule="offer",
                           entry="x", step=0, code_step=0, variant="default", ledger_id="L")
    assert again.fallback and verify_fallback(api.deps.config.secrets("coupons")[0], again.code)
    # an order with a fallback code: redeemed, its revenue on the pool's fallback counters and on the rule
    api.ingest([track("u2", "Order Completed", "o-u2", order_id="o-u2", revenue=1000, coupon=codes[1])])
    api.ingest([track("u2", "Order Completed", "o-u2b", order_id="o-u2", revenue=1000, coupon=codes[1])])
    status, stats = call("GET", "/admin/coupons/welcome")
    assert status == 200, stats
    assert (stats["issued"], stats["redeemed"], stats["revenue"], stats["left"]) == (1, 0, 0.0, 0)
    assert stats["fallback"] == {"issued": 3, "redeemed": 1, "revenue": 1000.0}
    assert stats["window"]["issued"] == 1 and stats["window"]["fallback"] == stats["fallback"]
    rows = read_counters(api.deps.dynamodb, api.deps.env.messages_table, "offer")
    assert sum(float(r.get("redeemed_revenue") or 0) for r in rows) == 1000
    # 31 days on: all time stays, the 30-day window is empty, a 40-day window still holds it all
    clock.set_now(clock.now() + timedelta(days=31))
    stats = call("GET", "/admin/coupons/welcome")[1]
    assert stats["fallback"]["issued"] == 3 and stats["window"]["fallback"]["issued"] == 0
    assert stats["window"]["issued"] == 0 and stats["window"]["days"] == 30
    wide = call("GET", "/admin/coupons/welcome", query={"days": "40"})[1]["window"]
    assert (wide["issued"], wide["fallback"]["issued"], wide["fallback"]["revenue"]) == (1, 3, 1000.0)
    assert call("GET", "/admin/coupons/welcome", query={"days": "0"})[0] == 400
    assert call("GET", "/admin/coupons", query={"days": "x"})[0] == 400


T_REFILL = {"id": "t-refill", "category": "marketing", "default_locale": "en", "locales": {"en": {
    "subject": "Time to refill",
    "html": '<p>Your <a href="{{ trigger.url }}">{{ trigger.name }}</a> ran out after {{ trigger.days }} days</p>'
            + UNSUB}}}
R_REFILL = {"id": "refill", "trigger": {"event": "Product Replenishment Due"},
            "steps": [{"send": {"channel": "email", "template": "t-refill"}}]}
PET = [{"product_id": "f1", "name": "Cat food 2 kg", "url": "https://shop.test/p/f1", "price": 900,
        "category": "Pet food", "in_stock": True},                       # the category's 30 days
       {"product_id": "f2", "name": "Cat food 10 kg", "url": "https://shop.test/p/f2", "price": 3500,
        "category": "Pet food", "in_stock": True, "consumable_days": 75},  # its own days win
       {"product_id": "t1", "name": "Toy mouse", "url": "https://shop.test/p/t1", "price": 200,
        "category": "Toys", "in_stock": True}]


def _due(stack: Any, kind: str = "EVENT") -> list[Any]:
    from retention.schedule import due
    items = [due.DueItem.from_item(i) for i in _scan(stack, stack.deps.env.due_table) if "kind" in i]
    return sorted((i for i in items if i.kind == kind), key=lambda i: i.at)


def _scan(stack: Any, table: str) -> list[dict[str, Any]]:
    resp = stack.deps.dynamodb.scan(TableName=table)
    return [ddb.deserialize(raw) or {} for raw in resp.get("Items", [])]


def test_replenishment_reminders_per_product_and_per_category(api: Any) -> None:
    from datetime import timedelta
    cfg = api.deps.config
    cfg.put_settings({"consumable_categories": {"pet food": 30}})
    cfg.apply("TEMPLATE", "t-refill", T_REFILL)
    cfg.apply("RULE", "refill", R_REFILL)
    status, body = call("PUT", "/admin/catalog", {"products": PET})
    assert status == 200, body
    assert call("GET", "/admin/catalog/f2")[1]["consumable_days"] == 75
    assert call("PUT", "/admin/catalog", {"products": [{"product_id": "x", "consumable_days": "often"}]})[0] == 400
    start = clock.now()
    api.ingest([identify("u1", "u1@example.com"),
                track("u1", "Order Completed", "o1", order_id="o1", revenue=4600,
                      products=[{"product_id": p, "price": 1, "quantity": 1} for p in ("f1", "f2", "t1")])])
    reminders = _due(api)
    assert [(i.ref, i.at) for i in reminders] == [("replenish|f1", start + timedelta(days=30)),
                                                  ("replenish|f2", start + timedelta(days=75))]
    # bought again 10 days later: the pending reminder of f1 moves, it is not doubled
    clock.set_now(start + timedelta(days=10))
    api.ingest([track("u1", "Order Completed", "o2", order_id="o2", revenue=900,
                      products=[{"product_id": "f1", "price": 900, "quantity": 1}])])
    assert [(i.ref, i.at) for i in _due(api)] == [("replenish|f1", start + timedelta(days=40)),
                                                  ("replenish|f2", start + timedelta(days=75))]
    # what was bought comes again when consumable: by its category (f1) or by its own days (f2)
    r = Recommender(_recs(api), customer_id="u1", consumable_categories={"Pet food": 30})
    assert _ids(r.recommend("bought_together", product="t1")) == ["f1", "f2"]
    assert _ids(Recommender(_recs(api), customer_id="u1").recommend("bought_together", product="t1")) == ["f2"]
    # day 40: the tick records the event and the rule sends the reminder with the product
    api.queued_sends()
    clock.set_now(start + timedelta(days=40, minutes=1))
    api.ticker().tick()
    reqs = api.queued_sends()
    assert [q.rule for q in reqs] == ["refill"]
    out = [api.sender().send(q) for q in reqs]
    assert [o.status for o in out] == ["sent"]
    html = _emails(api)[-1]["html"]
    assert "Cat food 2 kg" in html and "https://shop.test/p/f1" in html and "after 30 days" in html
    assert [i.ref for i in _due(api)] == ["replenish|f2"]
    events = [e for e in ddb.query(api.deps.dynamodb, api.deps.env.events_table, profile_pk("u1"))
              if e.get("event") == "Product Replenishment Due"]
    assert [json.loads(e["properties"])["order_id"] for e in events] == ["o2"]


def test_no_reminder_for_a_refunded_order_or_an_old_one(api: Any) -> None:
    from datetime import timedelta
    api.deps.config.apply("TEMPLATE", "t-refill", T_REFILL)
    api.deps.config.apply("RULE", "refill", R_REFILL)
    call("PUT", "/admin/catalog", {"products": [{**PET[1], "consumable_days": 5}]})
    start = clock.now()
    api.ingest([identify("u1", "u1@example.com"),
                track("u1", "Order Completed", "o1", order_id="o1", revenue=3500,
                      products=[{"product_id": "f2", "price": 3500, "quantity": 1}]),
                track("u1", "Order Completed", "o0", start - timedelta(days=9), order_id="o0", revenue=3500,
                      products=[{"product_id": "f2", "price": 3500, "quantity": 1}])])
    assert [i.at for i in _due(api)] == [start + timedelta(days=5)]  # the 9-day-old order's is past
    api.ingest([track("u1", "Order Refunded", "r1", order_id="o1", revenue=3500)])
    api.queued_sends()
    clock.set_now(start + timedelta(days=5, minutes=1))
    api.ticker().tick()
    assert api.queued_sends() == [] and _due(api) == []


def test_unknown_kind_fails_template_validation() -> None:
    from retention.language.templates import validate_template
    bad = {**T_OFFER, "locales": {"en": {**T_OFFER["locales"]["en"],
                                         "html": T_OFFER["locales"]["en"]["html"] +
                                         "{% if false %}{{ recommend('cheapest') }}{% endif %}"}}}
    errors = validate_template(bad)
    assert any("unknown recommendation kind 'cheapest'" in e for e in errors), errors
    assert validate_template(T_OFFER) == []


def test_send_request_ledger_is_the_issue_key() -> None:
    req = SendRequest(customer_id="u", rule="r", entry="e", step=1, channel="email", template="t")
    assert len(req.ledger_id) == 32


def test_a_click_on_a_recommended_product_is_attributed_to_the_message(api: Any) -> None:
    import html as html_mod
    import re

    from retention.analytics.stats import rule_report
    _setup(api)
    Coupons(api.deps.dynamodb, api.deps.env.products_table).upload("welcome", ["W-1"], "10%", 7)
    out, _ = _send(api, "u1", "s1")
    assert [o.status for o in out] == ["sent"]
    link = html_mod.unescape(re.search(r'href="(https://shop\.test/p/s2\?[^"]+)"', _emails(api)[-1]["html"]).group(1))
    assert "utm_source=retention" in link and "utm_content=rec-similar" in link
    # the shop's page view of that link (Segment puts the page in context.page.url)
    api.ingest([{"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "click-1",
                 "properties": {"product_id": "s2"}, "context": {"page": {"url": link}}},
                {"type": "track", "userId": "u1", "event": "Product Viewed", "messageId": "forged",
                 "properties": {"product_id": "s2", "url": "https://shop.test/p/s2?rtm_lid=" + "0" * 32}}])
    rows = read_counters(api.deps.dynamodb, api.deps.env.messages_table, "offer")
    report = rule_report("offer", rows)
    assert report["totals"]["recommendation_clicks"] == 1
    assert [s["recommendation_clicks"] for s in report["steps"] if s["step"] == 0] == [1]
