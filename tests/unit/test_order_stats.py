"""Issue 17: the orders are items of their own and the profile keeps their KPI aggregates, maintained per
order event. Here the storage is a dict and the profile goes through its doc between events (so it holds
only the orders an event touches, as in the ingestor): the KPIs must equal those of a profile that holds
every order in memory, whatever the order, the replays, the refunds and cancellations of the first or last
order."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.customers.profile import (
    Order,
    Profile,
    apply_message,
    extreme_orders,
    merge_profiles,
    order_event_ids,
    stats_of,
)
from retention.ingestion.wire import Message

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = NOW - timedelta(days=200)


def track(event: str, mid: str, at: datetime, **props: Any) -> Message:
    return Message(type="track", message_id=mid, user_id="u1", event=event, properties=props, timestamp=at,
                   received_at=at)


class Store:
    """The profile doc and the order items, as the ingestor reads and writes them."""

    def __init__(self) -> None:
        self.doc = Profile(id="u1").to_doc()
        self.items: dict[str, str] = {}
        self.full_loads = 0

    def apply(self, msgs: list[Message]) -> Profile:
        for attempt in range(2):
            p = Profile.from_doc(self.doc)
            touched, removing = order_event_ids(msgs)
            p.add_loaded_orders(Order.model_validate_json(self.items[i]) for i in touched if i in self.items)
            if attempt or p.order_stats.stale or removing & extreme_orders(p):
                self.full_loads += 1
                p.add_loaded_orders((Order.model_validate_json(v) for v in self.items.values()), complete=True)
            for m in msgs:
                apply_message(p, m, NOW)
            if p.order_stats.stale and not p.orders_complete():
                continue  # the ingestor reloads and folds again with every order at hand
            break
        for order in p.dirty_orders():
            self.items[order.order_id] = order.model_dump_json()
        p.orders_written()
        doc = json.loads(p.to_doc())
        assert "orders" not in doc
        self.doc = p.to_doc()
        return p


def story(rng: random.Random, n: int) -> list[Message]:
    msgs: list[Message] = []
    for i in range(n):
        at = BASE + timedelta(days=i * 3, hours=rng.randrange(24))
        oid = f"o{i}"
        msgs.append(track("Order Completed", f"c{i}", at, order_id=oid, revenue=rng.choice([10, 25.5, 99.99, 140]),
                          shop=rng.choice(["A", "B", "C", None])))
        roll = rng.random()
        if roll < 0.2:
            msgs.append(track("Order Refunded", f"r{i}", at + timedelta(days=1), order_id=oid))
        elif roll < 0.35:
            msgs.append(track("Order Refunded", f"p{i}", at + timedelta(days=1), order_id=oid,
                              amount=rng.choice([5, 10.1])))
        elif roll < 0.45:
            msgs.append(track("Order Cancelled", f"x{i}", at + timedelta(hours=2), order_id=oid))
        if rng.random() < 0.4:
            msgs.append(track("Order Ready for Pickup", f"y{i}", at + timedelta(days=1), order_id=oid))
            if rng.random() < 0.7:
                msgs.append(track("Order Picked Up", f"z{i}", at + timedelta(days=1, hours=rng.randrange(1, 50)),
                                  order_id=oid))
            else:
                msgs.append(track("Order Unclaimed", f"u{i}", at + timedelta(days=8), order_id=oid))
    # the first and the last orders leave, then come back as replays (which must not resurrect them)
    msgs.append(track("Order Cancelled", "x-first", BASE + timedelta(days=300), order_id="o0"))
    msgs.append(track("Order Refunded", "r-last", BASE + timedelta(days=300), order_id=f"o{n - 1}"))
    msgs.append(track("Order Completed", "c0-again", BASE, order_id="o0", revenue=10))
    return msgs


@pytest.mark.parametrize("seed", range(6))
def test_the_aggregates_equal_the_kpis_of_every_order_at_hand(seed: int) -> None:
    rng = random.Random(seed)
    msgs = story(rng, 25)
    shuffled = msgs[:]
    rng.shuffle(shuffled)
    delivery = shuffled + rng.sample(shuffled, 10)  # replays
    whole = Profile(id="u1")
    for m in msgs:
        apply_message(whole, m, NOW)
    store = Store()
    i = 0
    while i < len(delivery):
        size = rng.choice([1, 1, 2, 5])
        p = store.apply(delivery[i:i + size])
        i += size
    assert p.kpis == whole.kpis
    assert p.order_stats.model_dump(exclude={"stale"}) == stats_of(whole.orders.values()).model_dump(
        exclude={"stale"})
    assert len(store.items) == 25
    # the doc holds no order: its size does not depend on how many there are
    assert len(store.doc) < 2500


def test_refunding_the_last_order_finds_the_one_before() -> None:
    store = Store()
    for i in range(4):
        store.apply([track("Order Completed", f"c{i}", BASE + timedelta(days=10 * i), order_id=f"o{i}", revenue=10)])
    assert store.full_loads == 0
    p = store.apply([track("Order Refunded", "r3", BASE + timedelta(days=50), order_id="o3")])
    assert store.full_loads == 1  # the last order left: every order was read to find the next one
    assert p.kpis["last_order_at"] == (BASE + timedelta(days=20)).isoformat().replace("+00:00", ".000000Z")
    assert p.kpis["orders_count"] == 3
    p = store.apply([track("Order Refunded", "r1", BASE + timedelta(days=50), order_id="o1", amount=3)])
    assert store.full_loads == 1  # a partial refund of a middle order: only that order is read
    assert p.kpis["revenue_total"] == 27


def test_a_doc_that_still_holds_its_orders_is_read_as_before() -> None:
    old = Profile(id="u1")
    for i in range(3):
        apply_message(old, track("Order Completed", f"c{i}", BASE + timedelta(days=i), order_id=f"o{i}",
                                 revenue=5), NOW)
    legacy = json.loads(old.to_doc())
    legacy["orders"] = {k: json.loads(o.model_dump_json()) for k, o in old.orders.items()}
    del legacy["order_stats"]
    p = Profile.from_doc(json.dumps(legacy))
    assert p.orders_legacy() and p.orders_complete()
    assert p.order_stats == old.order_stats
    assert "orders" in json.loads(p.to_doc())  # kept until the ingestor has written them as items
    p.orders_written(migrated=True)
    assert "orders" not in json.loads(p.to_doc())


def test_a_merge_unites_the_orders_and_the_aggregates() -> None:
    anon = Profile(id="anon:a1")
    known = Profile(id="u1")
    apply_message(anon, track("Order Completed", "a", BASE + timedelta(days=5), order_id="g1", revenue=40,
                              shop="Z"), NOW)
    apply_message(known, track("Order Completed", "b", BASE, order_id="k1", revenue=60, shop="A"), NOW)
    apply_message(known, track("Order Cancelled", "c", BASE + timedelta(days=6), order_id="g1"), NOW)
    merge_profiles(known, anon, NOW)
    assert known.kpis["orders_count"] == 1 and known.kpis["revenue_total"] == 60
    assert known.kpis["distinct_shops_count"] == 1
    assert {o.order_id for o in known.dirty_orders()} == {"g1", "k1"}


def test_the_profile_doc_codec_reads_docs_with_and_without_the_preset_dictionary() -> None:
    import zlib

    from retention.customers.store import decode_doc, encode_doc
    p = Profile(id="u1")
    for i in range(3):
        apply_message(p, track("Order Completed", f"c{i}", BASE + timedelta(days=i), order_id=f"o{i}",
                               revenue=5, shop="A"), NOW)
    p.traits = {"email": "someone@example.com", "first_name": "Анна"}
    doc = p.to_doc()
    stored = encode_doc(doc)
    assert isinstance(stored, bytes) and len(stored) < len(zlib.compress(doc.encode(), 6))
    assert decode_doc(stored) == doc
    assert decode_doc(zlib.compress(doc.encode(), 6)) == doc  # written before the dictionary
    assert decode_doc("{}") == "{}"
