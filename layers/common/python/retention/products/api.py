"""The admin API's products resource (a Powertools Router the admin handler includes):

- `PUT /admin/catalog` {"products": [...]} — upsert (retention.products.catalog)
- `GET /admin/catalog/<product_id>` — one card; `DELETE` — out of the catalogue and every recommendation
- `POST /admin/coupons/<pool>` {"codes", "discount", "valid_days"} — upload codes to a pool
- `GET /admin/coupons/<pool>?days=30` — issued, redeemed, revenue, left (all time, codes of the pool), the
  signed fallback codes' `fallback` {issued, redeemed, revenue}, and `window` {days, from, to, the same
  counters} over the last `days` days; `GET /admin/coupons` — every pool
- `GET /admin/customers/<customer_id>/recommendations?kind=&product=&limit=` — a preview
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.api_gateway import Router

from retention.core import clock
from retention.core.errors import BadRequestError, NotFoundError
from retention.core.runtime import deps

router = Router()


def _body() -> dict[str, Any]:
    raw = router.current_event.decoded_body or ""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("the body is a JSON object")
    return body


def _query(name: str) -> str | None:
    return (router.current_event.query_string_parameters or {}).get(name)


def _coupons() -> Any:
    from retention.products.coupons import Coupons
    d = deps()
    return Coupons(d.dynamodb, d.env.products_table)


@router.put("/admin/catalog")
def put_catalog() -> dict[str, Any]:
    from retention.products.catalog import Catalog, parse_products
    products = parse_products(_body())
    d = deps()
    counts = Catalog(d.dynamodb, d.env.products_table).upsert(products, clock.now())
    return {"products": len(products), **counts}


@router.get("/admin/catalog/<product_id>")
def get_product(product_id: str) -> dict[str, Any]:
    from retention.products.catalog import Catalog
    d = deps()
    item = Catalog(d.dynamodb, d.env.products_table).get(unquote(product_id))
    if item is None:
        raise NotFoundError(f"no product {unquote(product_id)!r} in the catalogue")
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}


@router.delete("/admin/catalog/<product_id>")
def delete_product(product_id: str) -> dict[str, Any]:
    """Editor role, audited (`delete` of kind `catalog`); recommendations stop naming it at once."""
    from retention.products.catalog import Catalog
    from retention.products.recommend import Recommendations
    d = deps()
    pid = unquote(product_id)
    card = Catalog(d.dynamodb, d.env.products_table).delete(pid)
    if card is None:
        raise NotFoundError(f"no product {pid!r} in the catalogue")
    removed = Recommendations(d.dynamodb, d.env.products_table).forget_product(
        pid, str(card.get("category") or ""), clock.now())
    return {"product_id": pid, "deleted": True, **removed}


def _days() -> int:
    from retention.products.coupons import WINDOW_DAYS
    raw = _query("days")
    try:
        return int(raw) if raw else WINDOW_DAYS
    except ValueError as exc:
        raise BadRequestError(f"days is a whole number of days, got {raw!r}") from exc


@router.get("/admin/coupons")
def list_pools() -> dict[str, Any]:
    return {"pools": _coupons().all_pools(days=_days())}


@router.post("/admin/coupons/<pool>")
def upload_codes(pool: str) -> dict[str, Any]:
    body = _body()
    unknown = set(body) - {"codes", "discount", "valid_days"}
    if unknown:
        raise BadRequestError(f"unknown fields {sorted(unknown)}: the body is {{codes, discount, valid_days}}")
    return dict(_coupons().upload(unquote(pool), body.get("codes"), body.get("discount"), body.get("valid_days", 7),
                                  clock.now()))


@router.get("/admin/coupons/<pool>")
def pool_stats(pool: str) -> dict[str, Any]:
    return dict(_coupons().stats(unquote(pool), days=_days()))


@router.get("/admin/customers/<customer_id>/recommendations")
def customer_recommendations(customer_id: str) -> dict[str, Any]:
    from retention.customers.store import ProfileRepo
    from retention.products.kinds import check_kind
    from retention.products.recommend import Recommendations, Recommender
    d = deps()
    now = clock.now()
    cid = unquote(customer_id)
    kind = check_kind(_query("kind") or "personal")
    try:
        limit = int(_query("limit") or 4)
    except ValueError as exc:
        raise BadRequestError("limit is a number") from exc
    sp = ProfileRepo(d.dynamodb, d.env.profiles_table).load(cid, now)
    if not sp.exists or sp.profile.erased:
        raise NotFoundError(f"customer '{cid}' not found")
    interests = sp.profile.interests
    product = _query("product") or (max(interests.items(), key=lambda x: x[1])[0] if interests else None)
    recommender = Recommender(Recommendations(d.dynamodb, d.env.products_table), customer_id=cid,
                              interests=interests, now=now,
                              consumable_categories=d.config.settings().consumable_categories)
    products = recommender.recommend(kind, product=product, limit=limit, category=_query("category"))
    return {"customer_id": cid, "kind": kind, "product": product, "products": products}
