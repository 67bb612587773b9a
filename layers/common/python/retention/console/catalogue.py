"""Catalogue and coupons: the coupon pools (issued, redeemed, revenue, left; the last 30 days), code uploads
(editors), and a product card looked up by id — through retention.products, as the admin API does."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console.web import ROOT, allowed, app, arg, audited, form, redirect, render
from retention.core import clock
from retention.core.errors import RetentionError
from retention.core.runtime import deps


def _coupons() -> Any:
    from retention.products.coupons import Coupons
    d = deps()
    return Coupons(d.dynamodb, d.env.products_table)


def _page(status: int = 200, error: str | None = None, uploaded: dict[str, Any] | None = None) -> Response:
    from retention.products.catalog import Catalog
    d = deps()
    product_id = (arg("product") or "").strip()
    product = Catalog(d.dynamodb, d.env.products_table).get(product_id) if product_id else None
    card = {k: v for k, v in (product or {}).items() if k not in ("pk", "sk")}
    return render("catalogue.html", status=status, pools=_coupons().all_pools(days=30), product_id=product_id,
                  card=card, error=error, uploaded=uploaded)


@app.get("/console/catalogue")
def catalogue() -> Response:
    return _page()


@app.post("/console/catalogue/coupons")
def upload() -> Response:
    f = form()
    pool = (f.get("pool") or "").strip()
    admin_path = f"/admin/coupons/{pool}"
    allowed("POST", admin_path)
    codes = [c.strip() for c in (f.get("codes") or "").replace(",", "\n").splitlines() if c.strip()]
    try:
        answer = dict(_coupons().upload(pool, codes, f.get("discount") or None, f.get("valid_days") or 7,
                                        clock.now()))
    except RetentionError as exc:
        return _page(status=400, error=exc.message)
    audited("POST", admin_path, answer)
    return redirect(f"{ROOT}/catalogue")
