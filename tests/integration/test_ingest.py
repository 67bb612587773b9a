"""Ingestion on moto: exactly-once storage, KPIs under out-of-order and repeated events, the events
timeline, the product-interest index, history imports, and the cost per event."""

from __future__ import annotations

import json
import math
import random
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.customers.kpis import KPI_KEYS
from retention.ingestion.ingestor import CHUNK, Ingestor

# ---- helpers ------------------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return clock.iso(at)


def track(uid: str, event: str, mid: str, at: datetime | None = None, **props: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props}
    if at is not None:
        msg["timestamp"] = iso(at)
    return msg


def timeline(stack: Any, customer: str) -> list[dict[str, Any]]:
    return list(ddb.query(stack.deps.dynamodb, stack.tables["events"], f"C#{customer}"))


def raw_events(stack: Any, customer: str) -> list[dict[str, Any]]:
    return [e for e in timeline(stack, customer) if not e.get("internal")]


def count_items(stack: Any, role: str) -> int:
    return int(stack.deps.dynamodb.scan(TableName=stack.tables[role], Select="COUNT")["Count"])


def ingestor(stack: Any) -> Ingestor:
    d = stack.deps
    return Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config)


def parse(messages: list[dict[str, Any]], sent_at: datetime | None = None) -> list[Any]:
    from retention.ingestion import wire
    body: dict[str, Any] = {"batch": messages}
    if sent_at is not None:
        body["sentAt"] = iso(sent_at)
    parsed = wire.parse_request("batch", json.dumps(body).encode(), clock.now())
    assert not parsed.rejected, parsed.rejected
    return parsed.messages


# ---- what moto answers on a cancelled transaction (the duplicate detection depends on it) -------------


def test_moto_reports_cancellation_reasons_per_item_in_request_order(stack: Any) -> None:
    client = stack.deps.dynamodb
    marker = {"pk": {"S": "M#src#m1"}, "sk": {"S": "M"}}
    client.put_item(TableName=stack.tables["idempotency"], Item=marker)
    items = [
        {"Put": {"TableName": stack.tables["idempotency"], "Item": {"pk": {"S": "M#src#m0"}, "sk": {"S": "M"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": stack.tables["idempotency"], "Item": marker,
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": stack.tables["events"], "Item": {"pk": {"S": "C#u"}, "sk": {"S": "x"}}}},
    ]
    with pytest.raises(client.exceptions.TransactionCanceledException) as caught:
        client.transact_write_items(TransactItems=items)
    reasons = caught.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed", "None"]
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    # all or nothing: the first marker and the event were rolled back
    assert count_items(stack, "idempotency") == 1
    assert count_items(stack, "events") == 0


# ---- exactly once ---------------------------------------------------------------------------------------


def test_a_retried_batch_is_stored_once_even_with_a_new_sent_at(stack: Any, now: datetime) -> None:
    batch = [track("u1", "Order Completed", "o-1", now - timedelta(minutes=5), order_id="A1", revenue=100),
             track("u1", "Product Viewed", "v-1", now - timedelta(minutes=4), product_id="p1"),
             track("u2", "Order Completed", "o-2", now - timedelta(minutes=3), order_id="B1", revenue=40)]
    ing = ingestor(stack)
    first = ing.ingest(parse(batch, sent_at=now), "src_test")
    assert (first.accepted, first.duplicates) == (3, 0)
    # the client retries: same messageIds, sentAt regenerated (so the corrected timestamps move)
    second = ing.ingest(parse(batch, sent_at=now + timedelta(seconds=30)), "src_test")
    assert (second.accepted, second.duplicates) == (3, 3)
    third = ing.ingest(parse(batch), "src_test")
    assert third.duplicates == 3
    assert len(raw_events(stack, "u1")) == 2
    assert len(raw_events(stack, "u2")) == 1
    assert stack.profile("u1").kpis["orders_count"] == 1
    assert stack.profile("u1").kpis["revenue_total"] == 100
    assert count_items(stack, "idempotency") == 3


def test_a_retry_costs_no_profile_write_and_no_read(stack: Any, now: datetime) -> None:
    batch = [track(f"c{i}", "Button Clicked", f"r-{i}") for i in range(10)]
    stack.ingest(batch)
    stack.counter.reset()
    result = stack.ingest(batch)
    assert result.duplicates == 10
    # plain events: per message the failed marker put (it hands back the old marker, no read) and the raw
    # event written again at its recorded key (what completes a crash between the two); no profile write
    assert stack.counter.count("dynamodb", "PutItem") == 10
    assert stack.counter.count("dynamodb", "BatchWriteItem") == 10
    assert stack.counter.count("dynamodb", "TransactWriteItems", "UpdateItem") == 0
    assert stack.counter.count("dynamodb", "GetItem") == 0


def test_duplicates_inside_one_batch_are_stored_once(stack: Any, now: datetime) -> None:
    batch = [track("u1", "Order Completed", "same", now - timedelta(minutes=2), order_id="A1", revenue=10),
             track("u1", "Order Completed", "same", now - timedelta(minutes=1), order_id="A1", revenue=10),
             track("u1", "Order Completed", "other", now - timedelta(minutes=1), order_id="A2", revenue=5),
             track("u2", "Order Completed", "same", now - timedelta(minutes=1), order_id="Z9", revenue=999)]
    result = stack.ingest(batch)
    assert result.accepted == 4 and result.duplicates == 2
    assert {e["message_id"] for e in raw_events(stack, "u1")} == {"same", "other"}
    assert raw_events(stack, "u2") == []  # the first occurrence of a messageId wins
    assert stack.profile("u1").kpis["orders_count"] == 2
    assert stack.profile("u1").kpis["revenue_total"] == 15


def test_the_same_message_id_from_two_sources_is_two_messages(stack: Any, now: datetime) -> None:
    msgs = parse([track("u1", "Order Completed", "m-1", now, order_id="A", revenue=1)])
    ing = ingestor(stack)
    ing.ingest(msgs, "src_web")
    assert ing.ingest(msgs, "src_app").duplicates == 0  # dedupe keys are per source, like Segment's


def test_two_concurrent_deliveries_of_one_batch_store_one_copy(stack: Any, now: datetime) -> None:
    batch = []
    for c in range(6):
        for k in range(4):
            batch.append(track(f"c{c}", "Order Completed", f"o-{c}-{k}", now - timedelta(days=k, minutes=c),
                               order_id=f"O{c}{k}", revenue=10 * (k + 1), shop=f"s{k % 2}"))
        batch.append(track(f"c{c}", "Product Viewed", f"v-{c}", now - timedelta(minutes=1), product_id="p1"))
    random.Random(7).shuffle(batch)
    msgs = parse(batch)
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            results.append(ingestor(stack).ingest(msgs, "src_test"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(r.accepted == len(batch) for r in results)
    assert sum(r.duplicates for r in results) == len(batch)  # each message stored by exactly one delivery
    for c in range(6):
        events = raw_events(stack, f"c{c}")
        assert len(events) == 5
        assert len({e["message_id"] for e in events}) == 5
        k = stack.profile(f"c{c}").kpis
        assert k["orders_count"] == 4
        assert k["revenue_total"] == 100
        assert k["distinct_shops_count"] == 2
    assert count_items(stack, "idempotency") == len(batch)


def test_concurrent_batches_of_one_customer_lose_no_update(stack: Any, now: datetime) -> None:
    batches = [parse([track("u1", "Order Completed", f"o-{t}-{k}", now - timedelta(hours=t * 5 + k),
                            order_id=f"O{t}{k}", revenue=1) for k in range(5)]) for t in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def deliver(msgs: list[Any]) -> None:
        try:
            barrier.wait()
            ingestor(stack).ingest(msgs, "src_test")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    p = stack.profile("u1")
    assert p.kpis["orders_count"] == 20
    assert p.kpis["revenue_total"] == 20
    assert len(raw_events(stack, "u1")) == 20


# ---- profiles and KPIs ------------------------------------------------------------------------------------


def order_story(uid: str, base: datetime) -> list[dict[str, Any]]:
    """Five orders over 40 days in two shops with a partial refund, a full refund, a cancellation, pickups
    (30 h and 18 h in storage) and one unclaimed parcel; an NPS answer; assorted browsing."""
    d = lambda days, hours=0: base + timedelta(days=days, hours=hours)  # noqa: E731
    p = f"{uid}-"
    return [
        track(uid, "Product Viewed", p + "view", d(-1), product_id="sku-1"),
        track(uid, "Order Completed", p + "o1", d(0), order_id="o1", revenue=100, currency="rub", shop="A"),
        track(uid, "Order Ready for Pickup", p + "o1-ready", d(1), order_id="o1"),
        track(uid, "Order Picked Up", p + "o1-picked", d(1, 30), order_id="o1"),
        track(uid, "Order Completed", p + "o2", d(10), order_id="o2", total=50, shop="B"),
        track(uid, "Order Refunded", p + "o2-refund", d(12), order_id="o2", amount=20),
        track(uid, "Order Completed", p + "o3", d(20), order_id="o3",
              products=[{"product_id": "sku-2", "price": 15, "quantity": 2}], affiliation="A"),
        track(uid, "Order Ready for Pickup", p + "o3-ready", d(21), order_id="o3"),
        track(uid, "Order Unclaimed", p + "o3-unclaimed", d(28), order_id="o3"),
        track(uid, "Order Completed", p + "o4", d(30), order_id="o4", revenue=70, shop="C"),
        track(uid, "Order Cancelled", p + "o4-cancel", d(30, 2), order_id="o4"),
        track(uid, "Order Completed", p + "o5", d(40), order_id="o5", revenue=80, shop="B"),
        track(uid, "Order Ready for Pickup", p + "o5-ready", d(41), order_id="o5"),
        track(uid, "Order Picked Up", p + "o5-picked", d(41, 18), order_id="o5"),
        track(uid, "Order Refunded", p + "o5-refund", d(45), order_id="o5"),
        track(uid, "NPS Answered", p + "nps", d(42), score=9, comment="ok"),
        track(uid, "Page Scrolled", p + "last", d(46)),
    ]


def expected_story_kpis(base: datetime) -> dict[str, Any]:
    # counted: o1 (100), o2 (50 − 20 refunded), o3 (2 × 15); o4 cancelled, o5 fully refunded
    first, last = base, base + timedelta(days=20)
    return {
        "orders_count": 3,
        "revenue_total": 160.0,
        "average_order_value": 53.33,
        "first_order_at": iso(first),
        "last_order_at": iso(last),
        "average_days_between_orders": 10.0,
        "repeat_orders_count": 2,
        "nps_last_score": 9,
        "average_pickup_storage_hours": 24.0,  # (30 + 18) / 2
        "unclaimed_orders_percent": 33.33,  # o3 of o1, o3, o5
        "distinct_shops_count": 2,  # A and B (C was cancelled)
        "contacts_30d": 0,
        "contacts_90d": 0,
        "last_contact_at": None,
        "messages_received_30d": 0,
        "last_message_at": None,
        "open_rate": None,
        "click_rate": None,
        "last_seen_at": iso(base + timedelta(days=46)),
    }


def test_every_kpi_is_right_in_order_shuffled_split_and_repeated(stack: Any, now: datetime) -> None:
    base = now - timedelta(days=50)
    in_order = order_story("calm", base)
    stack.ingest(in_order)

    shuffled = order_story("chaos", base)
    rng = random.Random(2026)
    rng.shuffle(shuffled)
    replays = rng.sample(shuffled, 6)
    batches = [shuffled[:5], shuffled[5:9] + replays[:2], shuffled[9:], replays, list(reversed(shuffled))]
    for batch in batches:
        stack.ingest(batch)

    expected = expected_story_kpis(base)
    assert set(expected) == set(KPI_KEYS)
    for uid in ("calm", "chaos"):
        kpis = stack.profile(uid).kpis
        assert set(KPI_KEYS) <= set(kpis)
        assert {k: kpis[k] for k in KPI_KEYS} == expected, uid
        assert len(raw_events(stack, uid)) == len(in_order)


def test_refund_and_cancel_before_the_order_and_a_replayed_completion(stack: Any, now: datetime) -> None:
    t = now - timedelta(days=3)
    stack.ingest([track("u1", "Order Cancelled", "c1", t + timedelta(hours=2), order_id="X"),
                  track("u1", "Order Refunded", "r1", t + timedelta(hours=3), order_id="Y", amount=30)])
    k = stack.profile("u1").kpis
    assert k["orders_count"] == 0 and k["revenue_total"] == 0  # nothing completed yet
    stack.ingest([track("u1", "Order Completed", "x1", t, order_id="X", revenue=500),
                  track("u1", "Order Completed", "y1", t, order_id="Y", revenue=100)])
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"]) == (1, 70)
    # the shop re-sends the completion with a new messageId: still one order, still cancelled
    stack.ingest([track("u1", "Order Completed", "x1-again", t, order_id="X", revenue=500),
                  track("u1", "Order Refunded", "r2", t + timedelta(hours=5), order_id="Y", amount=70)])
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"], k["average_order_value"]) == (0, 0, None)


def test_average_days_between_orders_needs_two_orders(stack: Any, now: datetime) -> None:
    stack.ingest([track("u1", "Order Completed", "a", now - timedelta(days=9), order_id="1", revenue=1)])
    k = stack.profile("u1").kpis
    assert k["average_days_between_orders"] is None and k["repeat_orders_count"] == 0
    stack.ingest([track("u1", "Order Completed", "b", now - timedelta(days=3), order_id="2", revenue=1),
                  track("u1", "Order Completed", "c", now - timedelta(days=6), order_id="3", revenue=1)])
    k = stack.profile("u1").kpis
    assert k["average_days_between_orders"] == 3.0 and k["repeat_orders_count"] == 2


def test_events_of_one_customer_update_the_profile_once_per_batch(stack: Any, now: datetime) -> None:
    batch = [track("u1", "Product Viewed", f"v{i}", now - timedelta(minutes=i), product_id=f"p{i}")
             for i in range(10)]
    stack.deps.config.secrets("suppression-salt")  # created once per deployment, on first use
    stack.counter.reset()
    stack.ingest(batch)
    # interest rows matter: the markers and the profile in one transaction; before it, what is idempotent and
    # harmless without the commit: the raw events (keyed by their client timestamps: conditional puts, on 4
    # threads, so another attempt's raw event is never written over) and the ten interest rows (upserts),
    # then the day's events counter (one ADD per request)
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 1
    assert stack.counter.count("dynamodb", "PutItem") == 10
    assert stack.counter.count("dynamodb", "DeleteItem", "BatchWriteItem") == 0
    assert stack.counter.count("dynamodb", "UpdateItem") == 10 + 1
    item = ddb.get(stack.deps.dynamodb, stack.tables["profiles"], "C#u1", "P")
    assert item is not None and item["version"] == 1
    # past CHUNK messages, at most one conditional profile write per CHUNK (a transaction holds ≤ 100 items):
    # the first chunk creates the profile, the second is plain (one conditional put of each raw event)
    many = [track("u2", "Page Scrolled", f"s{i}", now - timedelta(seconds=i)) for i in range(CHUNK + 6)]
    stack.counter.reset()
    stack.ingest(many)
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 1
    item = ddb.get(stack.deps.dynamodb, stack.tables["profiles"], "C#u2", "P")
    assert item is not None and item["version"] <= 2
    assert len(raw_events(stack, "u2")) == CHUNK + 6


def test_a_message_with_hundreds_of_products_is_kept(stack: Any, now: datetime) -> None:
    products = [{"product_id": f"p{i}", "price": 1} for i in range(150)]
    batch = [track("u1", "Product Added", "big", now - timedelta(minutes=1), products=products)]
    batch += [track("u1", "Product Viewed", f"v{i}", now - timedelta(minutes=2, seconds=i),
                    products=[{"product_id": f"q{i}-{j}"} for j in range(5)]) for i in range(CHUNK - 1)]
    result = stack.ingest(batch)
    assert result.accepted == CHUNK
    assert len(raw_events(stack, "u1")) == CHUNK
    rows = list(ddb.query(stack.deps.dynamodb, stack.tables["profiles"], "PI#q3-4"))
    assert [r["customer_id"] for r in rows] == ["u1"]


# ---- the events timeline ----------------------------------------------------------------------------------


def test_timeline_is_in_time_order_and_expires_after_the_retention(stack: Any, now: datetime) -> None:
    from retention.core.config import Settings
    assert Settings().event_retention_days == 90  # the default: the raw events are the bulk of the storage bill
    stack.deps.config.put_settings({"event_retention_days": 400})
    times = [now - timedelta(days=d) for d in (3, 1, 200, 2, 0)]
    batch = [track("u1", "Page Scrolled", f"m{i}", at, n=i) for i, at in enumerate(times)]
    batch.append(track("u1", "Order Completed", "ancient", now - timedelta(days=500), order_id="old", revenue=9))
    stack.ingest(batch)
    events = raw_events(stack, "u1")
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps) == sorted(iso(t) for t in times)
    for e in events:
        expected_ttl = int(clock.parse_iso(e["timestamp"]).timestamp()) + 400 * 86400
        assert e["ttl"] == expected_ttl
        assert json.loads(e["properties"])["n"] == [iso(t) for t in times].index(e["timestamp"])
    # older than the retention: no raw event, but it counts in the KPIs
    assert "ancient" not in {e["message_id"] for e in events}
    k = stack.profile("u1").kpis
    assert k["orders_count"] == 1 and k["first_order_at"] == iso(now - timedelta(days=500))


def test_retention_is_a_setting(stack: Any, now: datetime) -> None:
    stack.deps.config.put_settings({"event_retention_days": 30})
    stack.ingest([track("u1", "Page Scrolled", "a", now - timedelta(days=10)),
                  track("u1", "Page Scrolled", "b", now - timedelta(days=40))])
    events = raw_events(stack, "u1")
    assert [e["message_id"] for e in events] == ["a"]
    assert events[0]["ttl"] == int((now - timedelta(days=10)).timestamp()) + 30 * 86400


# ---- product events: the interest index -------------------------------------------------------------------


def test_product_events_fan_out_through_the_interest_index(library_stack: Any, now: datetime) -> None:
    s = library_stack
    # the library ships this rule (DESIGN §5): its absence is a failure, not a reason to skip
    assert "back-in-stock" in s.deps.config.current("RULE"), "the scenario library lost its back-in-stock rule"
    s.ingest([
        track("viewer", "Product Viewed", "v1", now - timedelta(days=2), product_id="p1"),
        track("carter", "Product Added", "a1", now - timedelta(days=1), product_id="p1", price=5),
        track("other", "Product Viewed", "v2", now - timedelta(days=1), product_id="p2"),
        track("stale", "Product Viewed", "v3", now - timedelta(days=45), product_id="p1"),
        track("lister", "Product Viewed", "v4", now - timedelta(hours=3),
              products=[{"product_id": "p9"}, {"sku": "p1"}]),
    ])
    index = list(ddb.query(s.deps.dynamodb, s.tables["profiles"], "PI#p1"))
    assert {r["customer_id"] for r in index} == {"viewer", "carter", "lister"}  # 45 days ago: never indexed
    s.counter.reset()
    event = track("shop", "Product Back in Stock", "bis-1", now, product_id="p1")
    s.ingest([event])
    assert s.counter.count("dynamodb", "Scan") == 0
    queries = s.counter.count("dynamodb", "Query")
    assert queries >= 1
    due_rows = [ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    triggers = [r for r in due_rows if r and r["kind"] == "TRIGGER" and "back-in-stock" in r["ref"]]
    assert {r["customer_id"] for r in triggers} == {"viewer", "carter", "lister"}
    # a retried delivery of the product event fans out nothing more
    s.ingest([event])
    due_rows = [ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    assert len([r for r in due_rows if r and r["kind"] == "TRIGGER"]) == len(triggers)


def test_an_imported_product_event_fans_out_nothing(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.ingest([track("viewer", "Product Viewed", "v1", now - timedelta(hours=1), product_id="p1")])
    s.ingest([track("shop", "Product Back in Stock", "old-bis", now - timedelta(days=3), product_id="p1")])
    rows = [ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    assert not [r for r in rows if r and r["kind"] == "TRIGGER"]


# ---- history imports ----------------------------------------------------------------------------------------


def test_history_updates_profile_kpis_and_segments_but_starts_no_journey(library_stack: Any, now: datetime) -> None:
    s = library_stack
    old = now - timedelta(days=3)
    s.ingest([
        {"type": "identify", "userId": "imp", "messageId": "imp-id", "timestamp": iso(old - timedelta(days=1)),
         "traits": {"email": "imp@example.com", "email_consent": True}},
        track("imp", "Signed Up", "imp-su", old),
        track("imp", "Checkout Started", "imp-co", old + timedelta(hours=1), order_id="c1"),
        track("imp", "Product Viewed", "imp-pv", old + timedelta(hours=2), product_id="p1"),
        track("imp", "Order Completed", "imp-o", old + timedelta(days=1), order_id="A", revenue=10),
    ])
    p = s.profile("imp")
    assert p.kpis["orders_count"] == 1 and p.kpis["revenue_total"] == 10
    assert p.segments.get("lifecycle"), p.segments  # segments were evaluated
    assert p.journeys == {}
    assert s.queued_sends() == []
    due_rows = [ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]]
    assert not [r for r in due_rows if r and r["kind"] in ("JOURNEY", "SEND", "TRIGGER")]
    # the same story live starts the welcome journey
    s.ingest([
        {"type": "identify", "userId": "live", "messageId": "live-id",
         "traits": {"email": "live@example.com", "email_consent": True}},
        track("live", "Signed Up", "live-su", now - timedelta(minutes=1)),
    ])
    assert "welcome" in s.profile("live").journeys


def test_the_history_horizon_is_a_setting(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.deps.config.put_settings({"history_horizon_hours": 1})
    s.ingest([{"type": "identify", "userId": "u", "messageId": "i", "traits": {"email": "u@example.com",
                                                                             "email_consent": True}},
              track("u", "Signed Up", "su", now - timedelta(hours=2))])
    assert s.profile("u").journeys == {}


# ---- cost ---------------------------------------------------------------------------------------------------


class WriteUnits:
    """Estimates DynamoDB write request units from the requests themselves (item size rounded up to 1 KB;
    transactional writes cost two units per item)."""

    def __init__(self) -> None:
        self.units = 0

    def __call__(self, params: dict[str, Any] | None = None, model: Any = None, **_: Any) -> None:
        if model is None or params is None:
            return
        if model.name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (_op, body), = entry.items()
                self.units += 2 * max(1, math.ceil(_size(body.get("Item") or body.get("Key") or {}) / 1024))
        elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.units += max(1, math.ceil(_size(params.get("Item") or params.get("Key") or {}) / 1024))
        elif model.name == "BatchWriteItem":
            for ops in params["RequestItems"].values():
                for op in ops:
                    body = op.get("PutRequest", {}).get("Item") or op.get("DeleteRequest", {}).get("Key") or {}
                    self.units += max(1, math.ceil(_size(body) / 1024))


def _size(item: dict[str, Any]) -> int:
    def raw(o: Any) -> str:  # binary attributes (the compressed profile) count their bytes
        return "x" * len(o) if isinstance(o, bytes | bytearray) else str(o)
    return sum(len(k) + len(json.dumps(v, default=raw)) for k, v in item.items())


@pytest.mark.parametrize("with_library", [False, True], ids=["bare", "scenario-library"])
def test_cost_of_a_plain_track_event(stack: Any, now: datetime, with_library: bool) -> None:
    s = stack
    if with_library:
        s.apply_library()
    # customers who exist already (their first event moved them into their first segments)
    s.ingest([track(f"c{i:03d}", "Page Scrolled", f"warm-{i}", now - timedelta(minutes=10)) for i in range(100)])
    batch = [track(f"c{i:03d}", "Button Clicked", f"plain-{i}", now - timedelta(seconds=i), button="buy",
                   page="/catalog") for i in range(100)]
    before = ddb.get(s.deps.dynamodb, s.tables["profiles"], "C#c017", "P")
    assert before is not None
    version_before = before["version"]
    units = WriteUnits()
    s.deps.dynamodb.meta.events.register("before-parameter-build.dynamodb.*", units)
    s.counter.reset()
    result = s.ingest(batch)
    s.deps.dynamodb.meta.events.unregister("before-parameter-build.dynamodb.*", units)
    assert result.accepted == 100
    writes = s.counter.count("dynamodb", *s.counter.DDB_WRITES)
    reads = s.counter.count("dynamodb", *s.counter.DDB_READS)
    per_event = writes / 100
    print(f"\n[{'library' if with_library else 'bare'}] per plain track event: {per_event:.2f} DynamoDB write "
          f"requests, {reads / 100:.2f} read requests, ≈{units.units / 100:.1f} write units "
          f"(all: {dict(s.counter.calls)})")
    assert per_event <= 3
    # per customer ONE conditional put of the raw event, keyed by the client's timestamp (its own dedupe, no
    # messageId marker); the profile is not rewritten for an event that changes nothing but `last_seen_at`
    # within the hour; one ADD for the request on the day's events counter (the console's "events today")
    assert writes == 101
    assert s.counter.count("dynamodb", "PutItem") == 100
    # DESIGN §10: ≤ 3 write units per plain event (issue 17's goal: 2); 1.01 here (the hook's sum is not
    # atomic across the ingestor's threads: it may only miss units)
    assert units.units <= 101
    assert s.counter.count("dynamodb", "TransactWriteItems") == 0
    after = ddb.get(s.deps.dynamodb, s.tables["profiles"], "C#c017", "P")
    assert after is not None and after["version"] == version_before
    assert reads <= 3  # one BatchGetItem for the profiles; definitions are cached
    assert s.counter.count("dynamodb", "Scan") == 0


def test_first_events_of_new_customers_stay_within_the_cost_bar(stack: Any, now: datetime) -> None:
    stack.counter.reset()
    stack.ingest([track(f"n{i:03d}", "Button Clicked", f"new-{i}", now - timedelta(seconds=i)) for i in range(100)])
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) / 100 <= 3


# ---- a crash between the writes of one delivery -------------------------------------------------------------


class Crash(RuntimeError):
    """The Lambda dies here: nothing after this call happens."""


def crash_once(monkeypatch: pytest.MonkeyPatch, client: Any, operation: str, table: str) -> None:
    real = getattr(client, operation)
    fired: list[int] = []

    def flaky(**kwargs: Any) -> Any:
        names = {kwargs.get("TableName"), *(kwargs.get("RequestItems") or {}),
                 *(next(iter(i.values())).get("TableName") for i in kwargs.get("TransactItems") or [])}
        if table in names and not fired:
            fired.append(1)
            raise Crash(f"crash before {operation} on {table}")
        return real(**kwargs)

    monkeypatch.setattr(client, operation, flaky)


@pytest.mark.parametrize("where", ["in the transaction", "right after the transaction"])
def test_a_crash_between_the_writes_is_completed_by_the_retry_once(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Orders and refunds matter: markers, raw events and the profile go in one transaction, so a crash
    leaves all of it or none; the retry takes the messages in once, a third delivery changes nothing."""
    import retention.ingestion.ingestor as ingestor_module

    client = stack.deps.dynamodb
    stack.ingest([track("u1", "Order Completed", "o-1", now - timedelta(days=3), order_id="A1", revenue=100)])
    batch = [track("u1", "Order Completed", "o-2", now - timedelta(minutes=5), order_id="A2", revenue=40,
                   shop="B"),
             track("u1", "Order Refunded", "r-1", now - timedelta(minutes=4), order_id="A1", amount=30)]
    if where == "in the transaction":
        crash_once(monkeypatch, client, "transact_write_items", stack.tables["profiles"])
    else:  # the Lambda dies after the commit, before the sends, counters and product learning
        def die(*args: Any, **kwargs: Any) -> int:
            raise Crash("crash after the commit")
        monkeypatch.setattr(ingestor_module, "after_commit", die)
    with pytest.raises(Crash):
        stack.ingest(batch)
    monkeypatch.undo()
    committed = where != "in the transaction"
    assert count_items(stack, "idempotency") == (3 if committed else 1)
    assert stack.profile("u1").kpis["orders_count"] == (2 if committed else 1)
    retry = stack.ingest(batch)
    assert retry.accepted == 2 and retry.duplicates == (2 if committed else 0)
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"], k["distinct_shops_count"]) == (2, 110, 1)
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["o-1", "o-2", "r-1"]
    # and a third delivery changes nothing
    version = ddb.get(client, stack.tables["profiles"], "C#u1", "P")["version"]  # type: ignore[index]
    third = stack.ingest(batch)
    assert third.duplicates == 2
    assert ddb.get(client, stack.tables["profiles"], "C#u1", "P")["version"] == version  # type: ignore[index]
    assert stack.profile("u1").kpis == k
    assert len(raw_events(stack, "u1")) == 3


def test_a_crash_after_the_marker_of_an_unkeyed_plain_event_keeps_its_raw_event(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose clock is 5 minutes ahead: its timestamp is too far from the corrected time to key the
    raw event (STABLE_KEY_SKEW), so the messageId marker records the key; a crash between the marker and
    the raw event is completed by the retry, at the first attempt's key."""
    client = stack.deps.dynamodb
    stack.ingest([track("u1", "Page Scrolled", "p-0", now - timedelta(minutes=30))])
    later = now - timedelta(minutes=20)
    ahead = timedelta(minutes=5)
    first = parse([track("u1", "Button Clicked", "p-1", later + ahead)], sent_at=now + ahead)
    assert first[0].timestamp == later
    crash_once(monkeypatch, client, "batch_write_item", stack.tables["events"])
    with pytest.raises(Crash):
        ingestor(stack).ingest(first, "src_test")
    monkeypatch.undo()
    assert count_items(stack, "idempotency") == 2  # p-0's (it created the customer) and p-1's
    # the retry's corrected timestamp moved (a new sentAt): the event still lands once, at the first key
    again = parse([track("u1", "Button Clicked", "p-1", later + ahead)], sent_at=now + ahead + timedelta(seconds=40))
    assert ingestor(stack).ingest(again, "src_test").duplicates == 1
    assert ingestor(stack).ingest(again, "src_test").duplicates == 1
    events = [e for e in raw_events(stack, "u1") if e["message_id"] == "p-1"]
    assert len(events) == 1
    assert events[0]["sk"] == f"{iso(first[0].timestamp)}#p-1"


def skewed(msg: dict[str, Any], ahead: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    """`msg` from a client whose clock is `ahead`: the same corrected time, but the client timestamp is too
    far from it to key the raw event (the messageId marker path)."""
    at = clock.parse_iso(msg["timestamp"])
    return {**msg, "timestamp": iso(at + ahead), "sentAt": iso(clock.now() + ahead)}


def crash_then_complete(stack: Any, monkeypatch: pytest.MonkeyPatch, operation: str, role: str,
                        batch: list[dict[str, Any]]) -> Any:
    """`batch` crashes at the first `operation` on the `role` table, its retry is accepted: the profile's
    version after the retry."""
    client = stack.deps.dynamodb
    crash_once(monkeypatch, client, operation, stack.tables[role])
    with pytest.raises(Crash):
        stack.ingest(batch)
    monkeypatch.undo()
    assert stack.ingest(batch).accepted == 1
    return ddb.get(client, stack.tables["profiles"], "C#u1", "P")["version"]  # type: ignore[index]


@pytest.mark.parametrize("operation,role,keyed", [
    ("update_item", "profiles", True), ("put_item", "profiles", True), ("put_item", "events", True),
    ("update_item", "profiles", False), ("put_item", "profiles", False), ("put_item", "idempotency", False),
    ("batch_write_item", "events", False)],
    ids=["before the interest row", "before the profile", "before the raw event's conditional put",
         "unkeyed: before the interest row", "unkeyed: before the profile", "unkeyed: before the marker",
         "unkeyed: before the raw event"])
def test_a_product_view_needs_no_transaction_and_a_crash_anywhere_is_completed_once(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, operation: str, role: str, keyed: bool) -> None:
    """A product view changes only latest times (the interest, the browsing time, last seen): its writes are
    idempotent and all come before its dedupe (the raw event's conditional put; the marker for a message
    whose raw event is not keyed by its client timestamp), so the retry after a crash folds it again and
    completes what is missing, and a third delivery changes nothing."""
    client = stack.deps.dynamodb
    stack.ingest([track("u1", "Page Scrolled", "p-0", now - timedelta(hours=3))])
    view = [track("u1", "Product Viewed", "v-1", now - timedelta(minutes=20), product_id="p1")]
    if not keyed:
        view = [skewed(view[0])]
    stack.counter.reset()
    stack.ingest([track("u1", "Product Viewed", "v-0", now - timedelta(hours=2), product_id="p0")])
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 0
    # interest row, profile, the raw event's conditional put (no marker), and the day's events counter
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) == 4
    version = crash_then_complete(stack, monkeypatch, operation, role, view)
    again = stack.ingest(view)
    assert again.duplicates == 1
    assert ddb.get(client, stack.tables["profiles"], "C#u1", "P")["version"] == version  # type: ignore[index]
    p = stack.profile("u1")
    assert p.interests == {"p0": iso(now - timedelta(hours=2)), "p1": iso(now - timedelta(minutes=20))}
    assert p.meta["activity"]["last_product_viewed_at"] == (now - timedelta(minutes=20)).isoformat()
    row = ddb.get(client, stack.tables["profiles"], "PI#p1", "C#u1")
    assert row is not None and row["viewed_at"] == iso(now - timedelta(minutes=20))
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["p-0", "v-0", "v-1"]
    assert count_items(stack, "idempotency") == (1 if keyed else 2)  # p-0 created the customer: a transaction


@pytest.mark.parametrize("operation,role,keyed", [
    ("put_item", "profiles", True), ("put_item", "events", True),
    ("put_item", "profiles", False), ("put_item", "idempotency", False), ("batch_write_item", "events", False)],
    ids=["before the profile", "before the raw event's conditional put", "unkeyed: before the profile",
         "unkeyed: before the marker", "unkeyed: before the raw event"])
def test_a_trait_change_needs_no_transaction_and_a_crash_anywhere_is_completed_once(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, operation: str, role: str, keyed: bool) -> None:
    """Traits are kept with the time of the message that set them: folding the same identify again sets
    nothing new, so a known customer's trait change is a profile put and the raw event's conditional put
    (a marker first when the raw event is not keyed by the client's timestamp)."""
    client = stack.deps.dynamodb

    def identify(mid: str, at: datetime, **traits: Any) -> dict[str, Any]:
        return {"type": "identify", "userId": "u1", "messageId": mid, "timestamp": iso(at), "traits": traits}

    stack.ingest([identify("i-0", now - timedelta(hours=3), first_name="Анна", city="Тверь")])
    stack.counter.reset()
    stack.ingest([identify("i-1", now - timedelta(hours=2), city="Москва")])
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 0
    # profile, the raw event's conditional put (no marker), and the day's events counter (one ADD per request)
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) == 3
    later = [identify("i-2", now - timedelta(minutes=20), first_name="Мария")]
    if not keyed:
        later = [skewed(later[0])]
    version = crash_then_complete(stack, monkeypatch, operation, role, later)
    assert stack.ingest(later).duplicates == 1
    # an older identify delivered late changes nothing either
    stack.ingest([identify("i-old", now - timedelta(minutes=150), city="Тула")])
    assert ddb.get(client, stack.tables["profiles"], "C#u1", "P")["version"] == version  # type: ignore[index]
    p = stack.profile("u1")
    assert (p.traits["first_name"], p.traits["city"]) == ("Мария", "Москва")
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["i-0", "i-1", "i-2", "i-old"]


def test_last_seen_is_stored_when_it_moves_by_an_hour(stack: Any, now: datetime) -> None:
    t0 = now - timedelta(hours=5)
    stack.ingest([track("u1", "Page Scrolled", "s0", t0)])
    stack.ingest([track("u1", "Page Scrolled", "s1", t0 + timedelta(minutes=50))])
    assert stack.profile("u1").last_seen_at == t0  # within the hour: no profile write
    stack.ingest([track("u1", "Page Scrolled", "s2", t0 + timedelta(minutes=61))])
    p = stack.profile("u1")
    assert p.last_seen_at == t0 + timedelta(minutes=61)
    assert p.kpis["last_seen_at"] == iso(t0 + timedelta(minutes=61))
    assert len(raw_events(stack, "u1")) == 3  # the raw events keep every exact time
