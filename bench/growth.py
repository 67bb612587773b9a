"""Section: cost flat with history (DESIGN §10) — write units and CPU per plain event, per sent email and per
SES feedback for a customer with 0, 1, 100, 500 and 2,000 orders on record (each order with 2 products), the
library on moto in process, the scenario library applied. The orders are written as the ingestor stores them
(one item per order under the customer's partition, their aggregates in the profile) directly: ingesting
2,000 orders per size would only slow the bench; every measured step then runs through the same code as
production (Ingestor, Sender, Feedback).

CPU is the process time of the profile work of one plain event with AWS excluded: decode the stored item,
fold the event (engine.process), and the "does it matter" comparison (two encodes). A sub-millisecond
median taken size after size measures the machine's load as much as the work (a shared machine: 1.26x
came out of that once), so the sizes are measured interleaved: CPU_ROUNDS rounds, each timing CPU_BLOCK
events of every size back to back in a rotating order; a size's figure is the median of its rounds' block
medians, and the growth ratio is the median of the per-round ratios (2,000 orders vs 1, paired in time)."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from bench.aws_requests import T0, Bench, _identify, _per, _track
from bench.meter import LEDGER_INDEX, Meter, item_size, moto_backend, patch_moto_transactions

SIZES = (0, 1, 100, 500, 2000)
CPU_ROUNDS = 41
CPU_BLOCK = 15


def _orders(n: int) -> dict[str, Any]:
    from retention.customers.profile import Order
    out = {}
    for i in range(n):
        at = T0 - timedelta(days=3 * (n - i), hours=i % 7)
        out[f"ord-{i:05d}"] = Order(order_id=f"ord-{i:05d}", at=at, revenue=2580.0, currency="RUB",
                                    shop=f"shop-{i % 9}", status="completed")
    return out


def run(log: Any = print) -> dict[str, Any]:
    import retention.core.config as rconfig
    from retention.core import clock, ddb
    from retention.customers.profile import compute_kpis, stats_of
    from retention.customers.store import PROFILE_SK, ProfileRepo, from_item, order_item, profile_pk
    from retention.ingestion import ingestor as ing_mod
    from retention.ingestion import wire
    from retention.ingestion.ingestor import definitions
    from retention.journeys.engine import Engine
    from retention.messaging.feedback import Feedback

    from tests.support import moto_stack

    patch_moto_transactions()
    started = time.perf_counter()
    rows: dict[str, Any] = {}
    clock.set_now(T0)
    saved_cache = rconfig.CACHE_SECONDS
    rconfig.CACHE_SECONDS = 1e9
    try:
        with moto_stack() as s:
            meter = Meter(backend=moto_backend, gsi_keys={s.tables["messages"]: LEDGER_INDEX})
            d = s.deps
            for client in (d.dynamodb, d.sqs, d.sesv2, d.sns):
                meter.attach(client)
            s.apply_library()
            b = Bench(s, meter)
            repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
            fb = Feedback(d)
            defs = definitions(d.config)
            engine = Engine(defs)
            cases: dict[int, tuple[str, Any, Any, Any]] = {}
            for n in SIZES:
                uid = f"g{n}"
                clock.set_now(T0)
                b.ingest([_identify(uid)])
                b.drain()
                sp = repo.load(uid, clock.now())
                orders = _orders(n)
                # as the ingestor stores them: one item per order, the aggregates in the profile
                ddb.batch_write(d.dynamodb, d.env.profiles_table, puts=[order_item(uid, o) for o in orders.values()])
                sp.profile.order_stats = stats_of(orders.values())
                sp.profile.kpis = compute_kpis(sp.profile, clock.now())
                repo.save(sp, clock.now())
                raw = ddb.get(d.dynamodb, d.env.profiles_table, profile_pk(uid), PROFILE_SK)
                size = item_size(ddb.serialize(raw or {}))
                row: dict[str, Any] = {"orders": n, "profile_item_bytes": size}
                # one event settles the segments the new order history moves the customer into
                clock.set_now(T0 + timedelta(minutes=1))
                b.ingest([_track(uid, "Store Visited", f"g-settle-{n}", store="moscow-1")])
                b.drain()
                # a plain event within the hour of the last one stored (the common case), then one an hour later
                clock.set_now(T0 + timedelta(minutes=10))
                meter.reset()
                b.ingest([_track(uid, "Store Visited", f"g-pl-{n}", store="moscow-1")])
                row["plain_event"] = _per(meter.snapshot(), 1)
                clock.set_now(T0 + timedelta(hours=2))
                meter.reset()
                b.ingest([_track(uid, "Store Visited", f"g-pl2-{n}", store="moscow-1")])
                row["plain_event_hour_later"] = _per(meter.snapshot(), 1)
                b.drain()
                # a sent email (the welcome chain's first message) and its SES Delivery feedback
                b.ingest([_track(uid, "Signed Up", f"g-su-{n}")])
                sent = [x for x in b.drain() if x[0].channel == "email" and x[1].status == "sent"]
                if sent:
                    req, outcome, snap = sent[0]
                    row["sent_email"] = _per(snap, 1)
                    note = {"eventType": "Delivery", "mail": {"messageId": outcome.provider_id, "destination": ["x"],
                                                              "tags": {"ledger": [req.ledger_id]}}, "delivery": {}}
                    meter.reset()
                    fb.handle(note)
                    row["feedback"] = _per(meter.snapshot(), 1)
                # the profile work of one plain event, AWS excluded: timed below, all sizes interleaved
                raw = ddb.get(d.dynamodb, d.env.profiles_table, profile_pk(uid), PROFILE_SK)
                msgs = wire.parse_request("batch", ing_mod.json.dumps({"batch": [_track(
                    uid, "Store Visited", "g-cpu", store="moscow-1")]}).encode(), clock.now()).messages
                cases[n] = (uid, raw, msgs, clock.now())
                rows[str(n)] = row
                log(f"  growth {n} orders: profile {size / 1024:.1f} KB, plain {row['plain_event']['wru']:.1f} WU, "
                    f"send {row.get('sent_email', {}).get('wru', float('nan')):.1f} WU, feedback "
                    f"{row.get('feedback', {}).get('wru', float('nan')):.1f} WU")

            def plain_event_cpu_ns(case: tuple[str, Any, Any, Any]) -> int:
                uid, raw, msgs, now = case
                t0 = time.process_time_ns()
                sp = from_item(uid, raw, now)
                before = sp.profile.to_doc()
                seen = sp.profile.last_seen_at
                engine.process(sp, messages=msgs, now=now)
                ing_mod._matters(sp.profile, before, seen)
                return time.process_time_ns() - t0

            for case in cases.values():  # warm-up: caches, first-use model builds
                plain_event_cpu_ns(case)
            blocks: dict[int, list[float]] = {n: [] for n in cases}
            for r in range(CPU_ROUNDS):
                order = list(cases)[r % len(cases):] + list(cases)[:r % len(cases)]
                for n in order:
                    blocks[n].append(statistics.median(plain_event_cpu_ns(cases[n]) for _ in range(CPU_BLOCK)) / 1e6)
            for n, values in blocks.items():
                rows[str(n)]["plain_event_cpu_ms"] = round(statistics.median(values), 4)
                rows[str(n)]["plain_event_cpu_ms_rounds"] = [round(v, 4) for v in values]
            log("  growth cpu (interleaved, median of round medians): "
                + ", ".join(f"{n} orders {rows[str(n)]['plain_event_cpu_ms']} ms" for n in cases))
    finally:
        rconfig.CACHE_SECONDS = saved_cache
        clock.reset()

    def ratio(metric: str, base: str) -> float | None:
        one, big = rows.get(base, {}).get(metric), rows.get(str(SIZES[-1]), {}).get(metric)
        if not one or not big:
            return None
        return round(big["wru"] / max(one["wru"], 1e-9), 2)

    metrics = ("plain_event", "plain_event_hour_later", "sent_email", "feedback")
    ratios = {m: ratio(m, "1") for m in metrics}  # DESIGN §10: 2,000 orders vs 1 order
    ratios_0 = {m: ratio(m, "0") for m in metrics}  # vs a customer without orders (no aggregates stored)
    paired = [big / max(one, 1e-9) for one, big in zip(rows["1"]["plain_event_cpu_ms_rounds"],
                                                          rows[str(SIZES[-1])]["plain_event_cpu_ms_rounds"],
                                                          strict=True)]
    return {"rows": rows, "write_unit_ratio_2000_vs_1": ratios, "write_unit_ratio_2000_vs_0": ratios_0,
            "cpu_ratio_2000_vs_1": round(statistics.median(paired), 2),
            "cpu_ratio_2000_vs_1_quartiles": [round(q, 2) for q in statistics.quantiles(paired, n=4)],
            "cpu_rounds": CPU_ROUNDS, "cpu_block": CPU_BLOCK,
            "worst_write_unit_ratio": max(v for v in ratios.values() if v is not None),
            "worst_write_unit_ratio_vs_0": max(v for v in ratios_0.values() if v is not None),
            "elapsed_s": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=1, default=str))
