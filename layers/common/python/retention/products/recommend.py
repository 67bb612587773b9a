"""Recommendations, kept fresh incrementally: each order adds to item-to-item co-purchase counts and to the
day's popularity in its categories; a send reads a handful of items (no recompute, no scan).

Keys in PRODUCTS_TABLE (owned here):
- `CP#<product_a>` / `<product_b>` — `n`: orders holding both (ADD at each order, both directions).
- `POP#<category key>` / `<YYYY-MM-DD>` — `n:<product_id>`: units of the product ordered that day
  (ADD); `ttl` 35 days, "popular" sums the last 30 days (one Query).
- `CB#<customer_id>` / `<product_id>` — the customer bought it (`at`, `category`): never recommended
  again unless consumable (the card's `consumable`, or its category in the `consumable_categories`
  setting); `reminder_at` — when its pending replenishment reminder is due (retention.products.replenish).

Kinds: similar (same category, price within a band, in stock), accessories (the catalogue's map, else
co-purchase), bought_together, popular (in a category over 30 days), personal (from the customer's
interests and purchases). Never the anchor product itself, never out of stock, never what the customer
bought unless the product is consumable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from retention.core import clock, ddb
from retention.products.catalog import Catalog, category_key, is_consumable
from retention.products.kinds import MAX_LIMIT, check_kind

MAX_ORDER_PRODUCTS = 10  # co-purchase pairs per order: at most 10 × 9 counter updates
PRICE_BAND = (0.6, 1.5)  # "similar": from 60 % to 150 % of the anchor's price
POPULAR_DAYS = 30
POPULAR_TTL_DAYS = 35
CO_PURCHASE_READ = 100


def bought_key(customer_id: str, product_id: str) -> tuple[str, str]:
    return (f"CB#{customer_id}", product_id)


def _product_id(p: Mapping[str, Any]) -> str | None:
    for k in ("product_id", "sku", "id"):
        v = p.get(k)
        if v not in (None, ""):
            return str(v)
    return None


def order_products(properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[{product_id, category, price, quantity}] of an order's `products`, distinct, in order."""
    out: dict[str, dict[str, Any]] = {}
    products = properties.get("products")
    for p in products if isinstance(products, list) else []:
        if not isinstance(p, Mapping):
            continue
        pid = _product_id(p)
        if pid and pid not in out:
            qty = p.get("quantity")
            out[pid] = {"product_id": pid, "category": str(p.get("category") or ""), "price": p.get("price"),
                        "quantity": qty if isinstance(qty, int | float) and qty > 0 else 1}
    return list(out.values())


class Recommendations:
    def __init__(self, client: Any, table: str) -> None:
        self.ddb = client
        self.table = table
        self.catalog = Catalog(client, table)

    # ---- incremental updates -----------------------------------------------------------------------
    def record_order(self, customer_id: str, products: list[dict[str, Any]], at: datetime,
                     now: datetime | None = None, *, cards: Mapping[str, Mapping[str, Any]] | None = None,
                     reminders: Mapping[str, str] | None = None) -> int:
        """Co-purchase counts, the day's popularity, what the customer bought (with `reminders`: {product_id:
        reminder_at} of its pending replenishment reminders). Returns write requests made. `cards`: the
        order's cards when the caller read them already.

        Safe to call once per stored `Order Completed` (ingestion dedupes messageIds before)."""
        now = now or clock.now()
        products = products[:MAX_ORDER_PRODUCTS]
        if not products:
            return 0
        missing = [p["product_id"] for p in products if not p.get("category")]
        if cards is None:
            cards = self.catalog.get_many(missing) if missing else {}
        for p in products:
            if not p.get("category"):
                p["category"] = str((cards.get(p["product_id"]) or {}).get("category") or "")
        requests = 0
        ids = [p["product_id"] for p in products]
        for a in ids:
            for b in ids:
                if a != b:
                    self.ddb.update_item(TableName=self.table, Key=ddb.key(f"CP#{a}", b),
                                         UpdateExpression="ADD #n :one", ExpressionAttributeNames={"#n": "n"},
                                         ExpressionAttributeValues={":one": {"N": "1"}})
                    requests += 1
        if at >= now - timedelta(days=POPULAR_DAYS):
            by_category: dict[str, Counter[str]] = {}
            for p in products:
                key = category_key(p["category"])
                if key:
                    by_category.setdefault(key, Counter())[p["product_id"]] += int(p["quantity"])
            day = clock.iso(at)[:10]
            ttl = int(at.timestamp()) + POPULAR_TTL_DAYS * 86400
            for key, counts in by_category.items():
                names = {f"#p{i}": f"n:{pid}" for i, pid in enumerate(counts)}
                vals: dict[str, Any] = {f":p{i}": {"N": str(n)} for i, n in enumerate(counts.values())}
                vals[":ttl"] = {"N": str(ttl)}
                self.ddb.update_item(TableName=self.table, Key=ddb.key(f"POP#{key}", day),
                                     UpdateExpression="SET #ttl = :ttl ADD " + ", ".join(f"{k} {k.replace('#', ':')}"
                                                                                        for k in names),
                                     ExpressionAttributeNames={**names, "#ttl": "ttl"},
                                     ExpressionAttributeValues=vals)
                requests += 1
        stamp = clock.iso(at)
        reminders = reminders or {}
        requests += ddb.batch_write(self.ddb, self.table, [
            {"pk": bought_key(customer_id, p["product_id"])[0], "sk": p["product_id"], "at": stamp,
             "category": p["category"], **({"reminder_at": reminders[p["product_id"]]}
                                           if p["product_id"] in reminders else {})}
            for p in products])
        return requests

    def forget_customer(self, customer_id: str) -> None:
        """Erasure: what the customer bought goes with the profile."""
        keys = [(i["pk"], i["sk"]) for i in ddb.query(self.ddb, self.table, f"CB#{customer_id}")]
        if keys:
            ddb.batch_write(self.ddb, self.table, deletes=keys)

    def forget_product(self, product_id: str, category: str, now: datetime | None = None) -> dict[str, int]:
        """A product deleted from the catalogue: its co-purchase rows (both directions: its own partition
        names the others) and its units in its category's popularity days. Reads its own partitions only;
        what is left (an order naming it later, a customer's purchase) points to a card that no longer
        exists, and every kind looks cards up by id, so it is never recommended."""
        now = now or clock.now()
        others = [str(i["sk"]) for i in ddb.query(self.ddb, self.table, f"CP#{product_id}")]
        deletes = [(f"CP#{product_id}", b) for b in others] + [(f"CP#{b}", product_id) for b in others]
        if deletes:
            ddb.batch_write(self.ddb, self.table, deletes=deletes)
        days = 0
        key = category_key(category)
        if key:
            lo = clock.iso(now - timedelta(days=POPULAR_TTL_DAYS))[:10]
            name = f"n:{product_id}"
            for row in ddb.query(self.ddb, self.table, f"POP#{key}", sk_between=(lo, "9999")):
                if name in row:
                    self.ddb.update_item(TableName=self.table, Key=ddb.key(row["pk"], row["sk"]),
                                         UpdateExpression="REMOVE #n", ExpressionAttributeNames={"#n": name})
                    days += 1
        return {"co_purchase_rows": len(deletes), "popular_days": days}

    # ---- reads ---------------------------------------------------------------------------------------
    def bought(self, customer_id: str) -> set[str]:
        return {i["sk"] for i in ddb.query(self.ddb, self.table, f"CB#{customer_id}", limit=500)}

    def co_purchased(self, product_id: str) -> list[tuple[str, int]]:
        resp = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p", Limit=CO_PURCHASE_READ,
                              ExpressionAttributeValues={":p": {"S": f"CP#{product_id}"}})
        rows = [ddb.deserialize(r) or {} for r in resp.get("Items", [])]
        return sorted(((str(r["sk"]), int(r.get("n") or 0)) for r in rows), key=lambda x: (-x[1], x[0]))

    def popular_ids(self, category: str, now: datetime) -> list[str]:
        key = category_key(category)
        if not key:
            return []
        lo = clock.iso(now - timedelta(days=POPULAR_DAYS))[:10]
        totals: Counter[str] = Counter()
        for row in ddb.query(self.ddb, self.table, f"POP#{key}", sk_between=(lo, "9999")):
            for name, n in row.items():
                if name.startswith("n:"):
                    totals[name[2:]] += int(n)
        return [pid for pid, _ in sorted(totals.items(), key=lambda x: (-x[1], x[0]))]


class Recommender:
    """Recommendations for one customer (one message, one preview): the bought set is read once."""

    def __init__(self, recs: Recommendations, *, customer_id: str | None, interests: Mapping[str, str] | None = None,
                 now: datetime | None = None, link_params: Mapping[str, str] | None = None,
                 consumable_categories: Mapping[str, int] | None = None) -> None:
        self.recs = recs
        self.consumable_categories = dict(consumable_categories or {})
        self.customer_id = customer_id
        self.interests = dict(interests or {})
        self.now = now or clock.now()
        self.link_params = dict(link_params or {})
        self._bought: set[str] | None = None
        self.calls: list[tuple[str, int]] = []  # (kind, how many returned): the send's "at least N" check
        self.shown: list[str] = []  # the product ids handed to the template (the ledger records them at `sent`)

    @property
    def bought(self) -> set[str]:
        if self._bought is None:
            self._bought = self.recs.bought(self.customer_id) if self.customer_id else set()
        return self._bought

    def recommend(self, kind: str, product: Any = None, limit: int = 4, category: Any = None) -> list[dict[str, Any]]:
        kind = check_kind(kind)
        limit = max(1, min(int(limit), MAX_LIMIT))
        anchor_id = str(product) if product not in (None, "") else None
        cards = self._candidates(kind, anchor_id, limit, str(category) if category else None)
        out = self._filter(cards, anchor_id, limit)
        self.calls.append((kind, len(out)))
        self.shown.extend(str(c["product_id"]) for c in out if c.get("product_id"))
        return [self._present(card, kind) for card in out]

    def _candidates(self, kind: str, anchor_id: str | None, limit: int, category: str | None) -> list[dict[str, Any]]:
        catalog = self.recs.catalog
        want = limit * 3 + 5
        anchor = catalog.get(anchor_id) if anchor_id else None
        if kind == "similar":
            if anchor is None:
                return []
            price = anchor.get("price")
            band = (price * PRICE_BAND[0], price * PRICE_BAND[1]) if isinstance(price, int | float) and price else None
            rows = catalog.in_category(str(anchor.get("category") or ""), price_band=band, limit=want * 2)
            if isinstance(price, int | float):
                rows.sort(key=lambda r: abs(float(r.get("price") or 0) - float(price)))
            return rows
        if kind == "accessories":
            if anchor is None:
                return []
            listed = [a for a in anchor.get("accessories") or [] if isinstance(a, str)]
            if listed:
                found = catalog.get_many(listed)
                rows = [found[a] for a in listed if a in found]
                if any(r.get("in_stock") for r in rows):
                    return rows
            return self._by_ids([pid for pid, _ in self.recs.co_purchased(anchor["product_id"])][:want])
        if kind == "bought_together":
            if not anchor_id:
                return []
            return self._by_ids([pid for pid, _ in self.recs.co_purchased(anchor_id)][:want])
        if kind == "popular":
            cat = category or (anchor or {}).get("category") or ""
            return self._by_ids(self.recs.popular_ids(str(cat), self.now)[:want])
        # personal: what goes with the customer's purchases, then what resembles his recent interests
        scores: Counter[str] = Counter()
        for pid in sorted(self.bought)[:3]:
            for other, n in self.recs.co_purchased(pid)[:20]:
                scores[other] += n
        recent = sorted(self.interests.items(), key=lambda x: x[1], reverse=True)[:3]
        similar: list[dict[str, Any]] = []
        for pid, _ in recent:
            if pid in scores or len(similar) >= want:
                continue
            similar += self._candidates("similar", pid, limit, None)
        ranked = self._by_ids([pid for pid, _ in scores.most_common(want)])
        return ranked + similar

    def _by_ids(self, ids: list[str]) -> list[dict[str, Any]]:
        found = self.recs.catalog.get_many(ids)
        return [found[i] for i in ids if i in found]

    def _filter(self, cards: Iterable[Mapping[str, Any]], anchor_id: str | None, limit: int) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        bought = None
        for card in cards:
            pid = str(card.get("product_id") or "")
            if not pid or pid == anchor_id or pid in seen or not card.get("in_stock"):
                continue
            if not is_consumable(card, self.consumable_categories):
                bought = self.bought if bought is None else bought
                if pid in bought:
                    continue
            seen.add(pid)
            out.append(card)
            if len(out) >= limit:
                break
        return out

    def _present(self, card: Mapping[str, Any], kind: str) -> dict[str, Any]:
        url = str(card.get("url") or "")
        if url and self.link_params:
            url = tag_url(url, {**self.link_params, "utm_content": f"rec-{kind}"})
        image = str(card.get("image_url") or "")
        return {"product_id": card.get("product_id"), "name": card.get("name") or "", "url": url,
                "image_url": image, "image": image, "price": card.get("price"),
                "currency": card.get("currency") or "RUB", "category": card.get("category") or "",
                "brand": card.get("brand") or ""}


def tag_url(url: str, params: Mapping[str, str]) -> str:
    """The product link with utm parameters and the ledger id, so the shop's analytics (and the engine,
    from a `Product Viewed` with that page url) attribute the click to the message."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def link_params(rule: str, step: int, channel: str, ledger_id: str) -> dict[str, str]:
    return {"utm_source": "retention", "utm_medium": channel, "utm_campaign": rule, "rtm_step": str(step),
            "rtm_lid": ledger_id}
