"""The product catalogue: upserts from the admin API and the CLI's feed import, and what events teach it
(`Product Back in Stock`, `Product Price Dropped`, product properties in events).

Keys in PRODUCTS_TABLE (owned here):
- `P#<product_id>` / `P` — the product card.
- `CAT#<category key>` / `<price in cents, 12 digits>#<product_id>` — the card again, in its category
  sorted by price: "similar" is one Query over a price band, never a scan. The old row is deleted when
  the price or the category changes (the card's own item says where its row is).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from retention.core import clock, ddb
from retention.core.errors import BadRequestError
from retention.customers.profile import category_key as category_key  # one comparison of categories

MAX_PRODUCTS_PER_REQUEST = 1000
MAX_CONSUMABLE_DAYS = 3650
CARD_FIELDS = ("product_id", "name", "url", "image_url", "price", "currency", "category", "brand", "in_stock")


class Product(BaseModel):
    """One catalogue entry (DESIGN §3 Products)."""

    product_id: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=500)
    url: str = Field(default="", max_length=2000)
    image_url: str = Field(default="", max_length=2000)
    price: float | None = Field(default=None, ge=0)
    currency: str = Field(default="RUB", max_length=8)
    category: str = Field(default="", max_length=300)
    brand: str = Field(default="", max_length=200)
    in_stock: bool = True
    accessories: list[str] = Field(default_factory=list, max_length=100)
    consumable: bool = False  # bought again and again (food, cartridges): may be recommended after a purchase
    # days until it runs out: a `Product Replenishment Due` event that many days after each order (it
    # overrides the category's default in the `consumable_categories` setting; it makes the product consumable)
    consumable_days: int | None = Field(default=None, ge=1, le=MAX_CONSUMABLE_DAYS)

    model_config = {"extra": "ignore"}

    @field_validator("product_id", "name", "url", "image_url", "category", "brand", "currency", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        if isinstance(value, str):
            value = value.replace(",", ".").replace(" ", "").replace("\u00a0", "")
            for suffix in ("RUB", "USD", "EUR", "KZT", "BYN", "UAH"):
                value = value.removesuffix(suffix).strip()
        price = float(value)
        if not math.isfinite(price):
            raise ValueError("the price is not a number")
        return price

    @field_validator("in_stock", mode="before")
    @classmethod
    def _stock(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower().replace("_", " ")
            if lowered in ("true", "1", "yes", "in stock", "available", "да"):
                return True
            if lowered in ("false", "0", "no", "out of stock", "not available", "нет", "preorder", ""):
                return False
        return value

    @field_validator("consumable_days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if value in (None, "", 0, "0"):
            return None
        if isinstance(value, str):
            value = value.strip().lower().removesuffix("days").removesuffix("d").strip()
            if not value.isdigit():
                raise ValueError("consumable_days is a whole number of days")
        return value

    @model_validator(mode="after")
    def _consumable(self) -> Product:
        if self.consumable_days is not None:
            self.consumable = True
        return self

    @field_validator("accessories", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
        return [str(v) for v in value]

    def card(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CARD_FIELDS}




def replenish_days(card: Mapping[str, Any], categories: Mapping[str, int] | None = None) -> int | None:
    """Days until a bought product runs out: the card's own `consumable_days`, else its category's default
    (the `consumable_categories` setting, {category: days}); None when it is not consumable on a schedule."""
    own = card.get("consumable_days")
    if isinstance(own, int | float) and not isinstance(own, bool) and own >= 1:
        return int(own)
    if categories:
        wanted = category_key(str(card.get("category") or ""))
        for name, days in categories.items():
            if category_key(name) == wanted and wanted:
                return int(days)
    return None


def is_consumable(card: Mapping[str, Any], categories: Mapping[str, int] | None = None) -> bool:
    """Bought again and again: the card says so, or its category is in `consumable_categories`."""
    return bool(card.get("consumable")) or replenish_days(card, categories) is not None


def product_key(product_id: str) -> tuple[str, str]:
    return (f"P#{product_id}", "P")


def price_sk(price: float | None, product_id: str) -> str:
    cents = 0 if price is None else min(round(price * 100), 10**12 - 1)
    return f"{cents:012d}#{product_id}"


def _category_row(card: Mapping[str, Any]) -> tuple[str, str] | None:
    category = category_key(str(card.get("category") or ""))
    if not category:
        return None
    return (f"CAT#{category}", price_sk(card.get("price"), str(card["product_id"])))


class Catalog:
    def __init__(self, client: Any, table: str) -> None:
        self.ddb = client
        self.table = table

    # ---- reads -----------------------------------------------------------------------------------
    def get(self, product_id: str) -> dict[str, Any] | None:
        return ddb.get(self.ddb, self.table, *product_key(product_id))

    def get_many(self, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = [product_key(p) for p in dict.fromkeys(product_ids) if p]
        if not keys:
            return {}
        found = ddb.batch_get(self.ddb, self.table, keys)
        return {item["product_id"]: item for item in found.values()}

    def in_category(self, category: str, *, price_band: tuple[float, float] | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
        """In-stock cards of a category (cheapest first), within a price band when given: one Query."""
        key = category_key(category)
        if not key:
            return []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "Limit": limit,
            "KeyConditionExpression": "pk = :p" + (" AND sk BETWEEN :a AND :b" if price_band else ""),
            "FilterExpression": "in_stock = :t",
            "ExpressionAttributeValues": {":p": {"S": f"CAT#{key}"}, ":t": {"BOOL": True}},
        }
        if price_band:
            kwargs["ExpressionAttributeValues"][":a"] = {"S": price_sk(price_band[0], "")}
            kwargs["ExpressionAttributeValues"][":b"] = {"S": price_sk(price_band[1], "~")}
        resp = self.ddb.query(**kwargs)
        return [ddb.deserialize(raw) or {} for raw in resp.get("Items", [])]

    # ---- writes ----------------------------------------------------------------------------------
    def upsert(self, products: list[Product], now: datetime | None = None) -> dict[str, int]:
        """Upsert cards (and their category rows). Returns {"created", "updated", "unchanged"}."""
        now = now or clock.now()
        if len(products) > MAX_PRODUCTS_PER_REQUEST:
            raise BadRequestError(f"at most {MAX_PRODUCTS_PER_REQUEST} products per request, got {len(products)}")
        latest: dict[str, Product] = {}
        for product in products:  # the last one of a product_id wins, as in a feed
            latest[product.product_id] = product
        existing = self.get_many(latest)
        puts: list[dict[str, Any]] = []
        deletes: list[tuple[str, str]] = []
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for pid, product in latest.items():
            old = existing.get(pid)
            doc = product.model_dump()
            if old is not None:
                old_doc = {k: old.get(k) for k in doc}
                if _same(old_doc, doc):
                    counts["unchanged"] += 1
                    continue
                counts["updated"] += 1
            else:
                counts["created"] += 1
            puts.extend(self._items(doc, old, now))
            old_row = _category_row(old) if old else None
            if old_row and old_row != _category_row(doc):
                deletes.append(old_row)
        ddb.batch_write(self.ddb, self.table, puts, deletes)
        return counts

    def _items(self, doc: dict[str, Any], old: Mapping[str, Any] | None, now: datetime) -> list[dict[str, Any]]:
        pk, sk = product_key(doc["product_id"])
        stamp = clock.iso(now)
        item = {"pk": pk, "sk": sk, **doc, "updated_at": stamp,
                "created_at": (old or {}).get("created_at") or stamp}
        items = [item]
        row = _category_row(doc)
        if row:
            items.append({"pk": row[0], "sk": row[1], **{k: doc[k] for k in CARD_FIELDS}})
        return items

    def delete(self, product_id: str) -> dict[str, Any] | None:
        """The card and its category row go (so "similar" and every lookup by id stop finding it); returns the
        card that was deleted, None for an unknown product."""
        old = ddb.get(self.ddb, self.table, *product_key(product_id), consistent=True)
        if old is None:
            return None
        row = _category_row(old)
        ddb.batch_write(self.ddb, self.table, deletes=[product_key(product_id), *([row] if row else [])])
        return old

    def learn(self, product_id: str, *, price: float | None = None, in_stock: bool | None = None,
              now: datetime | None = None) -> bool:
        """What an event says about a known product (price, stock). Unknown products are not created from
        events: the catalogue comes from the shop. Returns True when the card changed."""
        if price is None and in_stock is None:
            return False
        old = self.get(product_id)
        if old is None:
            return False
        doc = {k: old.get(k) for k in Product.model_fields}
        if price is not None:
            doc["price"] = price
        if in_stock is not None:
            doc["in_stock"] = in_stock
        if _same({k: old.get(k) for k in doc}, doc):
            return False
        try:
            product = Product.model_validate(doc)
        except ValueError:
            return False
        new = product.model_dump()
        deletes = []
        old_row = _category_row(old)
        if old_row and old_row != _category_row(new):
            deletes.append(old_row)
        ddb.batch_write(self.ddb, self.table, self._items(new, old, now or clock.now()), deletes)
        return True


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    for k in b:
        x, y = a.get(k), b.get(k)
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            if abs(float(x) - float(y)) > 1e-9:
                return False
        elif (x or None) != (y or None) and not (x is False and y is False):
            return False
    return True


def parse_products(body: Any) -> list[Product]:
    """The body of `PUT /admin/catalog`: {"products": [...]}; each error names its index."""
    if not isinstance(body, dict) or not isinstance(body.get("products"), list):
        raise BadRequestError('the body is {"products": [{"product_id", "name", "url", "price", ...}]}')
    out: list[Product] = []
    errors: list[str] = []
    for index, raw in enumerate(body["products"]):
        try:
            out.append(Product.model_validate(raw))
        except ValueError as exc:
            errors.append(f"products[{index}]: {_first_error(exc)}")
    if errors:
        raise BadRequestError("; ".join(errors[:20]) + (f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""))
    return out


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0] if errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    return str(exc)
