"""What ingested events do to the catalogue, the recommendation counters and the coupons (after the
customer's transaction committed; each stored messageId comes here once).

- `Order Completed`: co-purchase counts, the day's popularity, the customer's purchases, the replenishment
  reminders of its consumable products (retention.products.replenish); a `coupon`
  property redeems that code and attributes the order's revenue to the rule and step that issued it.
- `Product Back in Stock` / `Product Price Dropped` (and `in_stock` / `price` on product events of a
  known product): the catalogue learns the stock and the price.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from retention.core import clock
from retention.products import replenish
from retention.products.catalog import Catalog
from retention.products.coupons import Coupons
from retention.products.recommend import MAX_ORDER_PRODUCTS, Recommendations, order_products

log = logging.getLogger(__name__)

CLICK_EVENTS = ("Product Viewed", "Product Clicked")
LEDGER_RE = re.compile(r"^[0-9a-f]{32}$")
PRICE_EVENTS = ("Product Price Dropped", "Product Viewed", "Product Added", "Product Back in Stock",
                "Product Low Stock")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "."))
        except ValueError:
            return None
    return None


def _revenue(props: dict[str, Any]) -> float:
    for key in ("revenue", "total", "value"):
        n = _number(props.get(key))
        if n is not None:
            return n
    return sum((_number(p.get("price")) or 0) * (_number(p.get("quantity")) or 1)
               for p in props.get("products") or [] if isinstance(p, dict))


class ProductEvents:
    def __init__(self, client: Any, table: str, messages_table: str, *, due_table: str | None = None,
                 due_shards: int = 1, consumable_categories: Mapping[str, int] | None = None) -> None:
        self.ddb = client
        self.table = table
        self.messages_table = messages_table
        self.due_table = due_table  # None: no replenishment reminders (a caller without the due index)
        self.due_shards = due_shards
        self.consumable_categories = dict(consumable_categories or {})
        self.recs = Recommendations(client, table)
        self.catalog = Catalog(client, table)
        self.coupons = Coupons(client, table)

    def observe(self, events: Iterable[tuple[str, str, dict[str, Any], datetime]], now: datetime | None = None) -> None:
        """(customer_id, event name, properties, timestamp) of stored track events."""
        now = now or clock.now()
        for customer_id, name, props, at in events:
            try:
                self._one(customer_id, name, props, at, now)
            except Exception:  # the event is stored; a derived counter must not fail the ingestion reply
                log.warning("products: %s of %s not applied", name, customer_id, exc_info=True)

    def _one(self, customer_id: str, name: str, props: dict[str, Any], at: datetime, now: datetime) -> None:
        if name == "Order Completed":
            products = order_products(props)[:MAX_ORDER_PRODUCTS]
            if products:
                # one read of the order's cards: the categories of the counters and the reminders' days
                cards = self.catalog.get_many([p["product_id"] for p in products])
                reminders: dict[str, str] = {}
                if self.due_table:
                    reminders = replenish.schedule(
                        self.ddb, self.table, self.due_table, self.due_shards, customer_id=customer_id,
                        order_id=str(props.get("order_id") or ""), at=at, cards=cards,
                        categories=self.consumable_categories, now=now)
                self.recs.record_order(customer_id, products, at, now, cards=cards, reminders=reminders)
            code = props.get("coupon")
            if isinstance(code, str) and code.strip():
                self.redeem(customer_id, code, props, now)
            return
        if name in CLICK_EVENTS:
            self.attribute_click(props, now)
        pid = props.get("product_id") or props.get("sku")
        if not pid:
            return
        in_stock: bool | None = None
        if name == "Product Back in Stock":
            in_stock = True
        elif isinstance(props.get("in_stock"), bool):
            in_stock = props["in_stock"]
        price = _number(props.get("price")) if name in PRICE_EVENTS else None
        if price is not None and price < 0:
            price = None
        if in_stock is not None or price is not None:
            self.catalog.learn(str(pid), price=price, in_stock=in_stock, now=now)

    def attribute_click(self, props: dict[str, Any], now: datetime) -> None:
        """A product page opened from a message's product link (`rtm_lid=<ledger id>` in the event's url or
        page url): `recommendation_clicks` on the step and variant of that message (read from its ledger,
        so a made-up id counts nothing)."""
        from urllib.parse import parse_qs, urlsplit

        from retention.core import ddb
        from retention.messaging.requests import ledger_key
        for url in (props.get("url"), props.get("_page_url")):
            if not isinstance(url, str) or "rtm_lid=" not in url:
                continue
            lid = (parse_qs(urlsplit(url).query).get("rtm_lid") or [""])[0]
            if not LEDGER_RE.match(lid):
                return
            ledger = ddb.get(self.ddb, self.messages_table, *ledger_key(lid))
            if not ledger or not ledger.get("rule"):
                return
            _add_counters(self.ddb, self.messages_table, str(ledger["rule"]), int(ledger.get("step") or 0),
                         str(ledger.get("variant") or "default"), {"recommendation_clicks": 1}, now, lid)
            return

    def redeem(self, customer_id: str, code: str, props: dict[str, Any], now: datetime) -> None:
        revenue = _revenue(props)
        issue = self.coupons.redeem(code, order_id=str(props.get("order_id") or ""), revenue=revenue,
                                    customer_id=customer_id, now=now)
        if issue is None or not issue.get("rule"):
            return
        _add_counters(self.ddb, self.messages_table, str(issue["rule"]), int(issue.get("step") or 0),
                     str(issue.get("variant") or "default"), {"redeemed": 1, "redeemed_revenue": revenue}, now,
                     str(issue.get("ledger_id") or code))


def _add_counters(*args: Any, **kwargs: Any) -> None:
    """The rule's daily counters (the row conventions of retention.analytics.stats). The writer is moving
    from messaging.requests to analytics.counters in a concurrent change: whichever is present."""
    try:
        from retention.analytics.counters import add_counters  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from retention.messaging.requests import add_counters  # type: ignore[attr-defined,no-redef,unused-ignore]
    add_counters(*args, **kwargs)
