"""Section 4: work grows with what is due, not with the customer base — one tick with 1,000 / 10,000 /
100,000 stored profiles and a fixed 100 due items (segment re-checks), on moto in process. Counted:
requests, DynamoDB items read (items in GetItem / BatchGetItem / Query / Scan responses) and read units.

Profiles are seeded with raw BatchWriteItem calls (as tests/integration/test_tick.py does): copies of one
realistic profile item (a customer identified, with an order) under new ids.

The configuration cache refreshes as deployed: its clock (retention.core.clock.monotonic) follows the
virtual clock, and ticks are a minute apart while the cache keeps 30 s, so every measured tick reads the
configuration again (settings and definitions: a few items, the same at every size). Before, the cache ran
on the wall clock: seeding 90,000 profiles took longer than 30 s, so only the 100k tick refreshed it — the
6 extra items of "201 / 201 / 207" were that refresh, not the profiles."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.meter import Meter, moto_backend, patch_moto_transactions

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DUE = 100
SIZES = (1_000, 10_000, 100_000)


def run(log: Any = print, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    from retention.core import clock, ddb
    from retention.customers.store import PROFILE_SK, profile_pk
    from retention.ingestion import wire
    from retention.ingestion.ingestor import Ingestor
    from retention.schedule import due

    from tests.support import moto_stack

    patch_moto_transactions()
    started = time.perf_counter()
    out: dict[str, Any] = {"due_items": DUE, "rows": []}
    clock.set_now(T0)
    clock.set_monotonic(lambda: (clock.now() - T0).total_seconds())  # the config cache ages with the ticks
    try:
        with moto_stack() as s:
            d = s.deps
            meter = Meter(backend=moto_backend)
            s.apply_library()
            # one realistic stored profile, copied under new ids
            ing = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config, workers=1)
            msgs = [{"type": "identify", "userId": "tmpl", "messageId": "t1",
                     "traits": {"email": "tmpl@example.com", "email_consent": True, "first_name": "Анна",
                                "timezone": "Europe/Moscow"}},
                    {"type": "track", "userId": "tmpl", "event": "Order Completed", "messageId": "t2",
                     "properties": {"order_id": "o1", "revenue": 2580, "currency": "RUB",
                                    "products": [{"product_id": "p1", "price": 1290}]}}]
            ing.ingest(wire.parse_request("batch", json.dumps({"batch": msgs}).encode(), T0).messages, "src")
            tmpl = ddb.get(d.dynamodb, d.env.profiles_table, profile_pk("tmpl"), PROFILE_SK, consistent=True)
            assert tmpl
            from retention.customers.store import decode_doc
            doc = decode_doc(tmpl["doc"]).replace('"tmpl"', '"__ID__"').replace("tmpl@example.com",
                                                                                 "__ID__@example.com")
            out["profile_item_bytes"] = len(doc) + 60
            for client in (d.dynamodb, d.sqs):
                meter.attach(client)
            meter.enabled = False
            seeded = 0
            now = T0
            ticker = s.ticker()
            for n in sizes:
                t_seed = time.perf_counter()
                items = [{"pk": profile_pk(f"c{i}"), "sk": PROFILE_SK, "version": 1,
                          "doc": doc.replace("__ID__", f"c{i}"), "sends": [],
                          "updated_at": clock.iso(T0)} for i in range(seeded, n)]
                ddb.batch_write(d.dynamodb, d.env.profiles_table, puts=items)
                seeded = n
                seed_s = time.perf_counter() - t_seed
                now += timedelta(hours=1)
                clock.set_now(now)
                ticker.tick()  # the watermark: nothing due yet
                step = n // DUE
                due.put(d.dynamodb, d.env.due_table,
                        [due.DueItem(at=now + timedelta(minutes=3), kind="SEGMENT", customer_id=f"c{i * step}",
                                     ref="segments") for i in range(DUE)], d.env.due_shards)
                clock.set_now(now + timedelta(minutes=5))
                meter.reset()
                meter.enabled = True
                t_tick = time.perf_counter()
                result = ticker.tick()
                tick_s = time.perf_counter() - t_tick
                meter.enabled = False
                snap = meter.snapshot()
                row = {"profiles": n, "due_items": result.due_items, "customers": result.customers,
                       "requests": sum(snap["calls"].values()), "items_read": snap["items_read"],
                       "items_read_by_table": {k.removeprefix("test-"): v
                                               for k, v in snap["items_read_by_table"].items()},
                       "rru": snap["rru"], "calls": snap["calls"], "tick_wall_s": round(tick_s, 3),
                       "seed_s": round(seed_s, 1),
                       "scans": sum(v for k, v in snap["calls"].items() if k.endswith(".Scan"))}
                out["rows"].append(row)
                log(f"  tick: {n:>7} profiles: {row['requests']} requests, {row['items_read']} items read, "
                    f"{row['rru']:.1f} RRU, tick {tick_s:.2f}s (seeding {seed_s:.1f}s)")
    finally:
        clock.set_monotonic(None)
        clock.reset()
    rows = out["rows"]
    out["flat"] = bool(rows) and max(r["items_read"] for r in rows) == min(r["items_read"] for r in rows)
    out["max_over_min_items_read"] = (max(r["items_read"] for r in rows) / max(1, min(r["items_read"] for r in rows))
                                      if rows else None)
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
