"""Issue 17 on moto: a customer's orders are items of their own (`C#<id>` / `O#<order id>` in the profiles
table), the profile keeps the KPI aggregates, and the cost of an event does not grow with the history."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb
from retention.customers.profile import Order, compute_kpis, stats_of
from retention.customers.store import ORDER_PREFIX, ProfileRepo, decode_doc, order_from_item, order_item

from tests.integration.test_identity import anon_track, identify
from tests.integration.test_ingest import WriteUnits, expected_story_kpis, order_story, track


def order_items(stack: Any, uid: str) -> list[Order]:
    return [order_from_item(i) for i in ddb.query(stack.deps.dynamodb, stack.tables["profiles"], f"C#{uid}",
                                                  sk_prefix=ORDER_PREFIX)]


def stored_doc(stack: Any, uid: str) -> dict[str, Any]:
    item = ddb.get(stack.deps.dynamodb, stack.tables["profiles"], f"C#{uid}", "P", consistent=True)
    assert item is not None
    return dict(json.loads(decode_doc(item["doc"])))


def test_orders_are_items_and_the_profile_keeps_the_aggregates(stack: Any, now: datetime) -> None:
    base = now - timedelta(days=50)
    for msg in order_story("one", base):  # one message per request: every fold sees only its own order
        stack.ingest([msg])
    kpis = stack.profile("one").kpis
    assert {k: kpis[k] for k in expected_story_kpis(base)} == expected_story_kpis(base)
    orders = order_items(stack, "one")
    assert sorted(o.order_id for o in orders) == ["o1", "o2", "o3", "o4", "o5"]
    doc = stored_doc(stack, "one")
    assert "orders" not in doc
    assert doc["order_stats"]["known"] == 5
    assert stack.profile("one").order_stats == stats_of(orders)


def test_refunding_the_last_order_reads_the_orders_to_find_the_one_before(stack: Any, now: datetime) -> None:
    base = now - timedelta(days=40)
    for i in range(4):
        stack.ingest([track("u1", "Order Completed", f"c{i}", base + timedelta(days=10 * i), order_id=f"o{i}",
                            revenue=10)])
    stack.counter.reset()
    stack.ingest([track("u1", "Order Refunded", "r1", now - timedelta(hours=1), order_id="o1", amount=4)])
    assert stack.counter.count("dynamodb", "Query") == 0  # a middle order: only its item was read
    stack.ingest([track("u1", "Order Cancelled", "x3", now - timedelta(minutes=30), order_id="o3")])
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"]) == (3, 26)
    assert k["last_order_at"] == clock.iso(base + timedelta(days=20))
    assert k["average_days_between_orders"] == 10.0
    # a replayed completion of the cancelled order changes nothing
    stack.ingest([track("u1", "Order Completed", "c3-again", base + timedelta(days=30), order_id="o3",
                        revenue=10)])
    assert stack.profile("u1").kpis == k


def test_a_profile_doc_that_still_holds_its_orders_is_migrated(stack: Any, now: datetime) -> None:
    """Profiles stored before the orders became items: read as before, written out at the next event."""
    base = now - timedelta(days=30)
    stack.ingest([track("old", "Order Completed", f"c{i}", base + timedelta(days=i), order_id=f"o{i}", revenue=10)
                  for i in range(3)])
    repo = ProfileRepo(stack.deps.dynamodb, stack.tables["profiles"])
    sp = repo.load("old", now)
    repo.load_all_orders(sp)
    doc = json.loads(sp.profile.to_doc())
    doc["orders"] = {k: json.loads(o.model_dump_json()) for k, o in sp.profile.orders.items()}
    del doc["order_stats"]
    item = ddb.get(stack.deps.dynamodb, stack.tables["profiles"], "C#old", "P", consistent=True)
    assert item is not None
    item["doc"] = json.dumps(doc)
    ddb.batch_write(stack.deps.dynamodb, stack.tables["profiles"],
                    puts=[item], deletes=[("C#old", f"O#o{i}") for i in range(3)])
    assert order_items(stack, "old") == []
    kpis_before = stack.profile("old").kpis
    assert kpis_before["orders_count"] == 3  # read from the doc as before
    # even a plain event migrates it (once: the doc is written without the orders)
    stack.ingest([track("old", "Page Scrolled", "s1", now - timedelta(hours=2))])
    assert sorted(o.order_id for o in order_items(stack, "old")) == ["o0", "o1", "o2"]
    assert "orders" not in stored_doc(stack, "old")
    assert {**stack.profile("old").kpis, "last_seen_at": None} == {**kpis_before, "last_seen_at": None}
    stack.counter.reset()
    stack.ingest([track("old", "Page Scrolled", "s2", now - timedelta(hours=2))])
    assert stack.counter.count("dynamodb", "PutItem") == 1  # the raw event's conditional put only (no marker)
    stack.ingest([track("old", "Order Refunded", "r2", now - timedelta(hours=1), order_id="o2")])
    k = stack.profile("old").kpis
    assert (k["orders_count"], k["revenue_total"], k["last_order_at"]) == (2, 20, clock.iso(base + timedelta(days=1)))


def test_identify_unites_a_guest_s_orders_with_the_customer_s(stack: Any, now: datetime) -> None:
    t0 = now - timedelta(days=3)
    stack.ingest([track("u9", "Order Completed", "k1", t0, order_id="K1", revenue=60, shop="A")])
    stack.ingest([anon_track("g9", "Order Completed", "g1", t0 + timedelta(hours=1), order_id="G1", revenue=40,
                             shop="B")])
    assert [o.order_id for o in order_items(stack, "anon:g9")] == ["G1"]
    stack.ingest([identify("u9", "id-1", t0 + timedelta(hours=2), anon="g9")])
    k = stack.profile("u9").kpis
    assert (k["orders_count"], k["revenue_total"], k["distinct_shops_count"]) == (2, 100, 2)
    assert sorted(o.order_id for o in order_items(stack, "u9")) == ["G1", "K1"]
    assert order_items(stack, "anon:g9") == []  # moved, not copied
    # the guest's order refunded later, under the customer
    stack.ingest([track("u9", "Order Refunded", "g1-r", t0 + timedelta(hours=3), order_id="G1")])
    k = stack.profile("u9").kpis
    assert (k["orders_count"], k["revenue_total"]) == (1, 60)


def _seed_orders(stack: Any, uid: str, n: int, now: datetime) -> None:
    """n completed orders written as items with their aggregates (ingesting them would only be slower)."""
    repo = ProfileRepo(stack.deps.dynamodb, stack.tables["profiles"])
    sp = repo.load(uid, now)
    orders = [Order(order_id=f"h{i:05d}", at=now - timedelta(days=3 * (n - i) + 1), revenue=25.0, shop=f"s{i % 5}",
                    status="completed") for i in range(n)]
    ddb.batch_write(stack.deps.dynamodb, stack.tables["profiles"], puts=[order_item(uid, o) for o in orders])
    sp.profile.order_stats = stats_of(orders)
    sp.profile.kpis = compute_kpis(sp.profile, now)
    repo.save(sp, now)


def test_an_event_costs_the_same_with_400_orders_as_with_one(stack: Any, now: datetime) -> None:
    units: dict[int, list[int]] = {}
    for n in (1, 400):
        uid = f"h{n}"
        stack.ingest([identify(uid, f"{uid}-id", now - timedelta(hours=3), email=f"{uid}@example.com")])
        _seed_orders(stack, uid, n, now)
        row = []
        for event, mid, at, props in (
                ("Page Scrolled", "plain", now - timedelta(hours=3), {}),  # within the hour: not stored
                ("Page Scrolled", "later", now - timedelta(hours=1), {}),  # last_seen_at moves: stored
                ("Order Completed", "new", now - timedelta(minutes=30), {"order_id": "N1", "revenue": 10}),
                ("Order Refunded", "ref", now - timedelta(minutes=20), {"order_id": "h00000", "amount": 5})):
            meter = WriteUnits()
            stack.deps.dynamodb.meta.events.register("before-parameter-build.dynamodb.*", meter)
            stack.ingest([track(uid, event, f"{uid}-{mid}", at, **props)])
            stack.deps.dynamodb.meta.events.unregister("before-parameter-build.dynamodb.*", meter)
            row.append(meter.units)
        units[n] = row
        assert stack.profile(uid).kpis["orders_count"] == n + 1
    print(f"write units (plain, plain an hour later, order, refund): {units}")
    assert units[1] == units[400], units
    # a plain event alone in its request: the raw event's conditional put (its own dedupe: keyed by the client's
    # timestamp, no marker) and the day's events counter
    assert units[1][0] == 2
