"""Products in messages: AWS requests and DynamoDB write/read units of the co-purchase update per order and
of a send with a recommendation block (and with a pool coupon), the library on moto in process, counted
by botocore hooks (bench.meter.Meter: capacity units from item sizes, the on-demand rules).

    python -m bench.products        # prints a table; writes bench/results/products.json and .md
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.meter import LEDGER_INDEX, Meter, moto_backend, patch_moto_transactions

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
RESULTS = Path(__file__).resolve().parent / "results"
ORDERS = 50
SENDS = 30

UNSUB = '<a href="{{ links.unsubscribe }}">unsubscribe</a>'
TEMPLATES = {
    "t-plain": "<p>Hello {{ customer.first_name }}</p>" + UNSUB,
    "t-recs": "<p>Hello {{ customer.first_name }}</p>{% for p in recommend('similar', product=trigger.product_id, "
              "limit=4) %}<a href=\"{{ p.url }}\">{{ p.name }}</a> {{ p.price }}{% endfor %}" + UNSUB,
    "t-together": "<p>Hello</p>{% for p in recommend('bought_together', product=trigger.product_id, limit=4) %}"
                  "<a href=\"{{ p.url }}\">{{ p.name }}</a>{% endfor %}" + UNSUB,
    "t-coupon": "<p>Code {{ coupon.code }}, {{ coupon.discount }} until {{ coupon.expires_at|date }}</p>" + UNSUB,
}


def _per(snap: dict[str, Any], n: int) -> dict[str, Any]:
    calls = snap["calls"]
    ddb = {k.split(".", 1)[1]: v / n for k, v in calls.items() if k.startswith("dynamodb.")}
    return {"samples": n, "ddb_requests": round(sum(ddb.values()), 2), "by_operation": ddb,
            "wru": round(snap["wru"] / n, 2), "rru": round(snap["rru"] / n, 2),
            "wru_by_table": {k.removeprefix("test-"): round(v / n, 2) for k, v in snap["wru_by_table"].items()}}


def _sum(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": {}, "wru": 0.0, "rru": 0.0, "wru_by_table": {}}
    for s in snaps:
        for k, v in s["calls"].items():
            out["calls"][k] = out["calls"].get(k, 0) + v
        for k, v in s["wru_by_table"].items():
            out["wru_by_table"][k] = out["wru_by_table"].get(k, 0) + v
        out["wru"] += s["wru"]
        out["rru"] += s["rru"]
    return out


def run(log: Any = print) -> dict[str, Any]:
    from retention.core import clock
    from retention.products.catalog import Catalog, Product
    from retention.products.coupons import Coupons
    from retention.products.recommend import Recommendations

    from tests.support import moto_stack

    patch_moto_transactions()
    clock.set_now(T0)
    rows: dict[str, Any] = {}
    with moto_stack() as s:
        d = s.deps
        meter = Meter(backend=moto_backend, gsi_keys={s.tables["messages"]: LEDGER_INDEX})
        for client in (d.dynamodb, d.sqs, d.sesv2, d.sns):
            meter.attach(client)
        meter.enabled = False
        catalog = Catalog(d.dynamodb, d.env.products_table)
        products = [Product(product_id=f"p{i}", name=f"Product {i}", url=f"https://shop.test/p/p{i}",
                            price=1000 + 37 * i, category=f"cat{i % 10}", in_stock=i % 7 != 0,
                            image_url=f"https://shop.test/i/p{i}.jpg") for i in range(500)]
        for start in range(0, len(products), 500):
            catalog.upsert(products[start:start + 500])
        recs = Recommendations(d.dynamodb, d.env.products_table)
        # history: co-purchase counts already exist (a busy product has partners)
        for i in range(300):
            recs.record_order(f"h{i}", [{"product_id": f"p{(i * 7 + k) % 500}", "category": "", "quantity": 1}
                                        for k in range(3)], T0 - timedelta(days=i % 40))
        meter.enabled = True

        # ---- the co-purchase update per order (retention.products.recommend.record_order)
        for n in (1, 2, 3, 5):
            snaps = []
            for i in range(ORDERS):
                items = [{"product_id": f"p{(i * 13 + k * 5) % 500}", "category": f"cat{(i * 13 + k * 5) % 10}",
                          "quantity": 1} for k in range(n)]
                meter.reset()
                recs.record_order(f"c{n}-{i}", items, T0)
                snaps.append(meter.snapshot())
            rows[f"co-purchase update, order of {n} product(s)"] = {**_per(_sum(snaps), ORDERS), "group": "order"}

        # ---- an ingested Order Completed (2 products), whole ingestion vs the products part
        for i in range(ORDERS):
            s.ingest([{"type": "identify", "userId": f"o{i}", "messageId": f"id-o{i}",
                       "traits": {"email": f"o{i}@example.com", "email_consent": True}}])
        snaps = []
        for i in range(ORDERS):
            meter.reset()
            s.ingest([{"type": "track", "userId": f"o{i}", "event": "Order Completed", "messageId": f"oc-{i}",
                       "properties": {"order_id": f"o{i}", "revenue": 2000, "currency": "RUB",
                                      "products": [{"product_id": f"p{i}", "price": 1000, "category": f"cat{i % 10}"},
                                                   {"product_id": f"p{i + 1}", "price": 1000,
                                                    "category": f"cat{(i + 1) % 10}"}]}}])
            snaps.append(meter.snapshot())
        rows["Order Completed (2 products), whole ingestion"] = {**_per(_sum(snaps), ORDERS), "group": "order"}

        # ---- sends: the same rule shape with and without a recommendation block, and with a pool coupon
        cfg = d.config
        for tid, html in TEMPLATES.items():
            cfg.apply("TEMPLATE", tid, {"id": tid, "category": "marketing", "default_locale": "en",
                                        "locales": {"en": {"subject": "Hi", "html": html}}})
        for tid in TEMPLATES:
            send: dict[str, Any] = {"channel": "email", "template": tid}
            if tid == "t-coupon":
                send["coupon"] = {"pool": "welcome"}
            cfg.apply("RULE", f"r-{tid}", {"id": f"r-{tid}", "trigger": {"event": f"Go {tid}"},
                                           "steps": [{"send": send}]})
        Coupons(d.dynamodb, d.env.products_table).upload("welcome", [f"W{i}" for i in range(SENDS + 5)], "10%", 7)
        cfg.put_settings({"frequency_caps": {}})
        for tid in TEMPLATES:
            meter.enabled = False
            msgs = []
            for i in range(SENDS):
                uid = f"s-{tid}-{i}"
                msgs += [{"type": "identify", "userId": uid, "messageId": f"i-{uid}",
                          "traits": {"email": f"{uid}@example.com", "email_consent": True, "first_name": "Ann"}},
                         {"type": "track", "userId": uid, "event": f"Go {tid}", "messageId": f"g-{uid}",
                          "properties": {"product_id": f"p{(i * 3) % 500}"}}]
            s.ingest(msgs)
            reqs = s.queued_sends()
            sender = s.sender()
            meter.enabled = True
            snaps, statuses = [], []
            for r in reqs:
                meter.reset()
                statuses.append(sender.send(r).status)
                snaps.append(meter.snapshot())
            label = {"t-plain": "send, no product block", "t-recs": "send with a recommendation block (similar, 4)",
                     "t-together": "send with a recommendation block (bought together, 4)",
                     "t-coupon": "send with a pool coupon"}[tid]
            rows[label] = {**_per(_sum(snaps), max(1, len(snaps))), "group": "send",
                           "sent": statuses.count("sent"), "statuses": sorted(set(statuses))}
    clock.reset()
    return {"rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| what | DynamoDB requests | write units (WRU) | read units (RRU) | operations |",
             "|---|---:|---:|---:|---|"]
    for label, row in result["rows"].items():
        ops = ", ".join(f"{k} {v:g}" for k, v in sorted(row["by_operation"].items()))
        lines.append(f"| {label} | {row['ddb_requests']:g} | {row['wru']:g} | {row['rru']:g} | {ops} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "products.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    text = markdown(result)
    (RESULTS / "products.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
