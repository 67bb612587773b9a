"""Issue 18's "done when", over HTTP on the local stack: a catalogue and a coupon pool uploaded through the
admin API; a customer views a product and leaves, and the browse email lists in-stock products of the same
category other than the viewed one; two customers in the welcome chain get two different codes of the
`welcome` pool with the discount and the expiry date in the email; an order with one of the codes shows
as redeemed with its revenue in the pool's and the rule's stats."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.language.rules import in_holdout
from retention.language.templates import format_date

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer dev-admin-token"}


def treated(prefix: str, rule: str, percent: float) -> str:
    while True:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if not in_holdout(cid, rule, percent):
            return cid


def test_catalogue_browse_similar_welcome_coupons_and_redemption(local: Any) -> None:
    import segment.analytics as analytics

    run = uuid.uuid4().hex[:6]
    category = f"Кроссовки {run}"
    products = [
        {"product_id": f"{run}-viewed", "name": "Кроссовки беговые", "url": f"https://shop.test/p/{run}-viewed",
         "price": 5000, "category": category, "in_stock": True},
        {"product_id": f"{run}-near", "name": "Кеды городские", "url": f"https://shop.test/p/{run}-near",
         "image_url": f"https://shop.test/i/{run}-near.jpg", "price": 4600, "category": category, "in_stock": True},
        {"product_id": f"{run}-also", "name": "Кроссовки для зала", "url": f"https://shop.test/p/{run}-also",
         "price": 5900, "category": category, "in_stock": True},
        {"product_id": f"{run}-gone", "name": "Кроссовки распроданные", "url": f"https://shop.test/p/{run}-gone",
         "price": 5100, "category": category, "in_stock": False},
        {"product_id": f"{run}-other", "name": "Крем для обуви", "url": f"https://shop.test/p/{run}-other",
         "price": 4900, "category": f"Уход {run}", "in_stock": True},
    ]
    status, body = local.request("PUT", "/admin/catalog", {"products": products}, headers=ADMIN)
    assert status == 200 and body["created"] == 5, body
    codes = [f"WELCOME-{run}-{i}".upper() for i in range(6)]
    status, body = local.request("POST", "/admin/coupons/welcome",
                                 {"codes": codes + codes[:1], "discount": "15%", "valid_days": 7}, headers=ADMIN)
    assert status == 200 and body["accepted"] == 6, body
    assert body["rejected"] == [{"code": codes[0], "reason": "duplicate in the upload"}]

    client = analytics.Client(write_key="dev-write-key", host=local.url, sync_mode=True, max_retries=1)
    # browse abandonment: viewed one product, left
    browser = treated("e2e-browse", "browse-abandonment", 10)
    client.identify(browser, {"email": f"{browser}@example.com", "first_name": "Вера", "email_consent": True})
    client.track(browser, "Product Viewed", {"product_id": f"{run}-viewed", "name": "Кроссовки беговые",
                                             "category": category, "price": 5000})
    # the welcome chain: two new customers
    newcomers = [f"e2e-welcome-{run}-{n}" for n in (1, 2)]
    for uid in newcomers:
        client.identify(uid, {"email": f"{uid}@example.com", "first_name": "Ян", "email_consent": True})
        client.track(uid, "Signed Up", {})
    client.flush()

    local.advance(4 * 86400)  # reminder at 1 day, the similar products 2 days later; the welcome offer at 1 day
    outbox = local.outbox()
    similar = [m for m in outbox if m["to"] == f"{browser}@example.com" and m["rule"] == "browse-abandonment"
               and m["step"] == 4]
    assert len(similar) == 1, [(m["rule"], m["step"]) for m in outbox if m["to"] == f"{browser}@example.com"]
    html = similar[0]["html"]
    assert "Кеды городские" in html and "Кроссовки для зала" in html  # same category, in stock
    assert f"/p/{run}-near" in html and "utm_campaign=browse-abandonment" in html and "rtm_lid=" in html
    assert "Кроссовки распроданные" not in html  # out of stock
    assert "Крем для обуви" not in html  # another category
    assert f"/p/{run}-viewed?" not in html  # never the viewed product itself

    offers = {}
    for uid in newcomers:
        mails = [m for m in outbox if m["to"] == f"{uid}@example.com" and m["rule"] == "welcome" and m["step"] == 3]
        assert len(mails) == 1, [(m["rule"], m["step"]) for m in outbox if m["to"] == f"{uid}@example.com"]
        mail = mails[0]
        code = next(c for c in codes if c in mail["text"])
        expires = clock.parse_iso(mail["sent_at"]) + timedelta(days=7)
        assert "15%" in mail["text"] and format_date(expires, "long", "ru") in mail["text"], mail["text"]
        offers[uid] = code
    assert len(set(offers.values())) == 2  # two customers, two codes

    buyer = newcomers[0]
    client.track(buyer, "Order Completed", {"order_id": f"{buyer}-o1", "revenue": 3400, "currency": "RUB",
                                            "coupon": offers[buyer],
                                            "products": [{"product_id": f"{run}-near", "price": 3400}]})
    client.flush()
    pool = local.admin("/admin/coupons/welcome")
    assert pool["redeemed"] >= 1 and pool["revenue"] >= 3400 and pool["issued"] >= 2
    stats = local.admin("/admin/stats/rules/welcome")
    assert stats["totals"]["redeemed"] >= 1 and stats["totals"]["redeemed_revenue"] >= 3400
    step = next(s for s in stats["steps"] if s["step"] == 3)
    assert step["redeemed"] >= 1
