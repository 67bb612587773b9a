"""Raw events keyed by the client's own timestamp (issue 17: a plain event is one conditional put, 1 write
unit): the key is stable across the client's retries, so the raw event is its own dedupe; the transaction
path keeps its messageId marker and writes the raw event at the same key, before the transaction, with the
other writes that are idempotent and harmless without the commit (interest rows, SEGMENT / JOURNEY due
items). Each test here fails on the old write pattern or on a lost / doubled event or effect."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.ingestion.ingestor import STABLE_KEY_SKEW, Ingestor, event_key_at

from tests.integration.test_expiry_contracts import scan
from tests.integration.test_ingest import Crash, count_items, iso, parse, raw_events
from tests.support import advance

SOURCE = "src_test"


def track(uid: str, event: str, mid: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": uid, "event": event, "messageId": mid, "timestamp": iso(at),
            "properties": props}


def deliver(stack: Any, messages: list[dict[str, Any]], sent_at: datetime | None = None) -> Any:
    d = stack.deps
    return Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).ingest(parse(messages, sent_at),
                                                                                         SOURCE)


def rows_of(stack: Any, uid: str, mid: str) -> list[dict[str, Any]]:
    return [e for e in raw_events(stack, uid) if e["message_id"] == mid]


def existing(stack: Any, now: datetime, uid: str = "u1") -> list[dict[str, Any]]:
    """The customer exists since the day before (p-0, a transaction: its marker) and was seen half an hour
    ago (p-1, a keyed plain event: no marker), so the test's events move `last_seen_at` by less than an hour
    and are plain."""
    clock.set_now(now - timedelta(days=1))
    first = [track(uid, "Page Scrolled", "p-0", now - timedelta(days=1, minutes=30))]
    deliver(stack, first)
    clock.set_now(now)
    first.append(track(uid, "Page Scrolled", "p-1", now - timedelta(minutes=30)))
    deliver(stack, first[1:])
    return first


def crash_at(monkeypatch: pytest.MonkeyPatch, client: Any, operation: str, table: str, nth: int = 1) -> None:
    """The Lambda dies before the `nth` `operation` on `table`: nothing after it happens."""
    real = getattr(client, operation)
    seen: list[int] = []

    def flaky(**kwargs: Any) -> Any:
        names = {kwargs.get("TableName"), *(kwargs.get("RequestItems") or {}),
                 *(next(iter(i.values())).get("TableName") for i in kwargs.get("TransactItems") or [])}
        if table in names:
            seen.append(1)
            if len(seen) == nth:
                raise Crash(f"crash before {operation} #{nth} on {table}")
        return real(**kwargs)

    monkeypatch.setattr(client, operation, flaky)


# ---- the key rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ahead,keyed", [(0, True), (59, True), (60, True), (61, False), (-61, False)])
def test_the_client_timestamp_keys_the_raw_event_within_60_seconds_of_the_corrected_time(
        stack: Any, now: datetime, ahead: int, keyed: bool) -> None:
    at = now - timedelta(minutes=3)
    skew = timedelta(seconds=ahead)
    [msg] = parse([track("u1", "E", "m", at + skew)], sent_at=now + skew)
    assert msg.timestamp == at  # the corrected time, whatever the client's clock says
    settings = stack.deps.config.settings()
    assert timedelta(seconds=60) == STABLE_KEY_SKEW
    assert event_key_at(msg, settings, now) == (iso(at + skew) if keyed else None)


def test_no_client_timestamp_or_an_import_older_than_the_window_is_not_keyed(stack: Any, now: datetime) -> None:
    settings = stack.deps.config.settings()
    [bare] = parse([{"type": "track", "userId": "u1", "event": "E", "messageId": "m"}], sent_at=now)
    assert bare.original_timestamp is None and event_key_at(bare, settings, now) is None
    # its raw event would expire before the dedupe window ends: the marker dedupes it
    days = settings.event_retention_days - settings.dedupe_window_days
    [old] = parse([track("u1", "E", "o", now - timedelta(days=days, hours=1))])
    assert event_key_at(old, settings, now) is None
    [recent] = parse([track("u1", "E", "r", now - timedelta(days=days - 1))])
    assert event_key_at(recent, settings, now) is not None


# ---- plain events: one conditional put ----------------------------------------------------------------------


def test_a_plain_event_retried_with_a_new_sent_at_is_stored_once_without_a_marker(stack: Any, now: datetime) -> None:
    existing(stack, now)
    markers = count_items(stack, "idempotency")
    at = now - timedelta(minutes=10)
    event = [track("u1", "Button Clicked", "b-1", at, button="buy")]
    stack.counter.reset()
    assert deliver(stack, event, sent_at=now).duplicates == 0
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) == 2  # the raw event, the day's counter
    assert stack.counter.count("dynamodb", "PutItem") == 1
    # the client retries: same body, a new sentAt (the corrected time moves by 3 s)
    stack.counter.reset()
    retry = deliver(stack, event, sent_at=now + timedelta(seconds=3))
    assert (retry.accepted, retry.duplicates) == (1, 1)
    assert stack.counter.count("dynamodb", *stack.counter.DDB_WRITES) == 1  # the refused conditional put only
    [row] = rows_of(stack, "u1", "b-1")
    assert row["sk"] == f"{iso(at)}#{SOURCE}#b-1"
    assert row["timestamp"] == iso(at)  # the first attempt's corrected time (the same here: sentAt was now)
    assert count_items(stack, "idempotency") == markers  # no marker for a keyed plain event
    # the same messageId from another source is another message (dedupe is per source)
    d = stack.deps
    other = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).ingest(parse(event), "src_app")
    assert other.duplicates == 0
    assert len(rows_of(stack, "u1", "b-1")) == 2


def test_a_message_without_a_client_timestamp_is_still_deduped_by_its_marker(stack: Any, now: datetime) -> None:
    existing(stack, now)
    markers = count_items(stack, "idempotency")
    bare = [{"type": "track", "userId": "u1", "event": "Button Clicked", "messageId": "b-2"}]
    assert deliver(stack, bare, sent_at=now).duplicates == 0
    clock.set_now(now + timedelta(seconds=20))  # received later: its timestamp is the receive time
    assert deliver(stack, bare, sent_at=now + timedelta(seconds=20)).duplicates == 1
    [row] = rows_of(stack, "u1", "b-2")
    assert row["sk"] == f"{iso(now)}#b-2"  # the first attempt's time, as its marker recorded it
    assert count_items(stack, "idempotency") == markers + 1


@pytest.mark.parametrize("first,then,rows", [(45, 65, 1), (65, 45, 1), (20, 45, 1), (45, 20, 1), (0, 55, 1),
                                              (20, 65, 2)])
def test_a_plain_retry_whose_skew_crosses_the_60_s_boundary(stack: Any, now: datetime, first: int, then: int,
                                                            rows: int) -> None:
    """The skew of one message moves by the network's jitter between attempts. Past half of the 60 s (the
    band) a keyed plain event also writes its marker, so a retry on the other side of 60 s finds one or the
    other: stored once. Only a jump over the whole band (20 s → 65 s: the client's clock stepped between the
    attempts) stores a second raw row — of a plain event, which changes no KPI (the documented limit)."""
    existing(stack, now)
    kpis = stack.profile("u1").kpis
    client_ts = now - timedelta(minutes=10)
    event = [track("u1", "Button Clicked", "b-1", client_ts)]
    assert deliver(stack, event, sent_at=client_ts + timedelta(minutes=10, seconds=first)).duplicates == 0
    retry = deliver(stack, event, sent_at=client_ts + timedelta(minutes=10, seconds=then))
    assert retry.duplicates == (1 if rows == 1 else 0)
    assert len(rows_of(stack, "u1", "b-1")) == rows
    assert stack.profile("u1").kpis == kpis
    assert deliver(stack, event, sent_at=client_ts + timedelta(minutes=10, seconds=then)).duplicates == 1


def test_an_import_whose_raw_event_expires_within_twice_the_window_writes_its_marker(stack: Any, now: datetime) -> None:
    """Its raw event outlives the dedupe window (keyed) but not twice: a retry more days later may find it
    unkeyed, so the marker goes too (recording the keyed key)."""
    existing(stack, now)
    markers = count_items(stack, "idempotency")
    old = [track("u1", "Button Clicked", "b-old", now - timedelta(days=45))]
    deliver(stack, old)
    assert count_items(stack, "idempotency") == markers + 1
    clock.set_now(now + timedelta(days=20))  # the raw event expires within the window now: unkeyed
    assert deliver(stack, old).duplicates == 1
    assert len(rows_of(stack, "u1", "b-old")) == 1


# ---- a retry that changes path ---------------------------------------------------------------------------------


def test_a_retry_from_the_transaction_path_to_the_plain_path_finds_the_same_raw_event(
        stack: Any, now: datetime) -> None:
    existing(stack, now)
    order = [track("u1", "Order Completed", "o-1", now - timedelta(minutes=5), order_id="A1", revenue=100)]
    stack.counter.reset()
    assert deliver(stack, order, sent_at=now).duplicates == 0
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 1  # an order matters: the transaction
    # the retry folds an order the profile has already: nothing changes, the plain path; its conditional put
    # finds the raw event the transaction's attempt wrote (same key), no marker is read or written
    stack.counter.reset()
    retry = deliver(stack, order, sent_at=now + timedelta(seconds=7))
    assert retry.duplicates == 1
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 0
    assert stack.counter.count("dynamodb", "PutItem") == 1
    assert len(rows_of(stack, "u1", "o-1")) == 1
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"]) == (1, 100)


def test_a_retry_from_the_plain_path_to_the_transaction_path_is_stored_once_and_counted_once(
        stack: Any, now: datetime) -> None:
    existing(stack, now)
    click = track("u1", "Button Clicked", "b-1", now - timedelta(hours=3) + timedelta(minutes=10))
    stack.counter.reset()
    deliver(stack, [click], sent_at=now)
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 0  # plain: its raw event only
    # a client that re-batches: the retried click goes with a new order, in one transaction (the click has
    # no marker: the plain attempt had nothing else to take in; its raw event is written at the same key)
    order = track("u1", "Order Completed", "o-1", now - timedelta(minutes=5), order_id="A1", revenue=40)
    stack.counter.reset()
    deliver(stack, [click, order], sent_at=now + timedelta(seconds=5))
    assert stack.counter.count("dynamodb", "TransactWriteItems") == 1
    assert len(rows_of(stack, "u1", "b-1")) == 1
    assert len(rows_of(stack, "u1", "o-1")) == 1
    # a third delivery of both: duplicates, nothing counted twice
    third = deliver(stack, [click, order], sent_at=now + timedelta(seconds=9))
    assert third.duplicates == 2
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"]) == (1, 40)
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["b-1", "o-1", "p-0", "p-1"]


def test_a_retry_across_the_skew_boundary_on_the_transaction_path_keeps_one_raw_event(
        stack: Any, now: datetime) -> None:
    """The first attempt's client clock was 5 minutes off (the marker path, its raw event at the corrected
    time); the retry comes keyed (its skew under 60 s) in a transaction with a new order: the marker says
    duplicate and records the other key, so the keyed raw event written before the transaction goes again."""
    existing(stack, now)
    at = now - timedelta(minutes=10)
    ahead = timedelta(minutes=5)
    first = track("u1", "Order Completed", "o-1", at + ahead, order_id="A1", revenue=100)
    deliver(stack, [first], sent_at=now + ahead)
    [row] = rows_of(stack, "u1", "o-1")
    assert row["sk"] == f"{iso(at)}#o-1"
    second = track("u1", "Order Completed", "o-2", now - timedelta(minutes=1), order_id="A2", revenue=5)
    retry = deliver(stack, [first, second], sent_at=now + ahead - timedelta(seconds=290))  # skew 5 minutes → 10 s
    assert retry.duplicates == 1
    assert [r["sk"] for r in rows_of(stack, "u1", "o-1")] == [f"{iso(at)}#o-1"]
    assert len(rows_of(stack, "u1", "o-2")) == 1
    k = stack.profile("u1").kpis
    assert (k["orders_count"], k["revenue_total"]) == (2, 105)


# ---- a crash between any two writes of a transaction chunk --------------------------------------------------------


CRASHES = [("batch_write_item", "due", 1), ("update_item", "profiles", 1), ("put_item", "events", 1),
           ("put_item", "events", 2), ("transact_write_items", "profiles", 1), ("batch_write_item", "events", 1),
           ("update_item", "messages", 1), ("batch_write_item", "due", 2)]


@pytest.mark.parametrize("operation,role,nth", CRASHES,
                         ids=["before the early due items", "before the interest row", "before the early raw events",
                              "between the early raw events", "before the transaction",
                              "after the commit: segment moves",
                              "after the commit: counters", "after the commit: safety items"])
def test_a_crash_between_any_two_writes_is_completed_by_the_retry_without_loss_or_double_count(
        library_stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, operation: str, role: str,
        nth: int) -> None:
    stack = library_stack
    d = stack.deps
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-1", "timestamp": iso(now - timedelta(days=2)),
                     "traits": {"email": "u1@example.com", "email_consent": True}}])
    stack.queued_sends()
    batch = [track("u1", "Product Viewed", "v-1", now - timedelta(minutes=3), product_id="p1", price=10),
             track("u1", "Order Completed", "o-1", now - timedelta(minutes=2), order_id="A1", revenue=100,
                   products=[{"product_id": "p1", "price": 100, "quantity": 1}])]
    crash_at(monkeypatch, d.dynamodb, operation, stack.tables[role], nth)
    with pytest.raises(Crash):
        deliver(stack, batch, sent_at=now)
    monkeypatch.undo()
    retry = deliver(stack, batch, sent_at=now + timedelta(seconds=4))
    assert retry.accepted == 2
    third = deliver(stack, batch, sent_at=now + timedelta(seconds=9))
    assert third.duplicates == 2
    p = stack.profile("u1")
    assert (p.kpis["orders_count"], p.kpis["revenue_total"]) == (1, 100)
    # the view's corrected time: the attempt that stored it (a new sentAt moves it by seconds)
    assert abs(clock.parse_iso(p.interests["p1"]) - (now - timedelta(minutes=3))) <= timedelta(seconds=10)
    assert [r["customer_id"] for r in ddb.query(d.dynamodb, d.env.profiles_table, "PI#p1")] == ["u1"]
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["i-1", "o-1", "v-1"]
    # every journey the batch starts, started once: one entry each, one pending wait per entry
    journeys = {rule: j for rule, j in p.journeys.items() if j.get("state") in ("active", "control")}
    assert journeys and all(int(j.get("entries", 1)) == 1 for j in journeys.values())
    waits = [i for i in scan(stack, "due") if i["kind"] == "JOURNEY"]
    assert len(waits) == len({i["ref"] for i in waits})
    # the order confirmation: queued after the commit, or by the tick from its safety item when the request
    # died after the commit; the send ledger stops a second email
    advance(stack, minutes=10)
    ledger = [i for i in scan(stack, "messages") if str(i["pk"]).startswith("L#") and i.get("customer_id") == "u1"]
    confirmations = [i for i in ledger if i.get("rule") == "order-confirmation"]
    assert [i.get("status") for i in confirmations] == ["sent"], ledger


def test_a_journey_wait_written_before_a_transaction_that_never_commits_comes_due_as_a_no_op(
        library_stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JOURNEY and SEGMENT due items go before the transaction: the engine drops a JOURNEY item whose
    journey, entry or step is not in the profile, and a SEGMENT item re-checks the stored profile."""
    stack = library_stack
    d = stack.deps
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-1", "timestamp": iso(now - timedelta(days=2)),
                     "traits": {"email": "u1@example.com", "email_consent": True}}])
    stack.queued_sends()
    before = stack.profile("u1")
    crash_at(monkeypatch, d.dynamodb, "transact_write_items", stack.tables["profiles"])
    with pytest.raises(Crash):
        deliver(stack, [track("u1", "Product Viewed", "v-1", now - timedelta(minutes=3), product_id="p1")])
    monkeypatch.undo()
    early = [i for i in scan(stack, "due") if i["customer_id"] == "u1"]
    assert {i["kind"] for i in early} >= {"JOURNEY"}, early  # the browse-abandonment wait went first
    assert "browse-abandonment" not in stack.profile("u1").journeys  # the transaction never committed
    # the client never retries: the wait comes due and does nothing
    advance(stack, days=2)
    p = stack.profile("u1")
    assert "browse-abandonment" not in p.journeys
    assert p.kpis["orders_count"] == before.kpis["orders_count"]
    assert not [i for i in scan(stack, "due") if i["customer_id"] == "u1" and i["kind"] == "JOURNEY"]
    assert not [r for r in stack.queued_sends() if r.customer_id == "u1"]
    ledger = [i for i in scan(stack, "messages") if i.get("customer_id") == "u1" and str(i["pk"]).startswith("L#")]
    assert ledger == []  # nothing was sent


# ---- a rejected message leaves no raw event -----------------------------------------------------------------------


def test_a_message_refused_for_the_profile_size_leaves_no_raw_event(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB refuses the profile (over 400 KB: the size guard's estimate missed it) after the keyed raw
    event went before the transaction: the message is a `rejected` entry, and its raw event goes again."""
    from botocore.exceptions import ClientError
    client = stack.deps.dynamodb
    real = client.transact_write_items

    def too_large(**kwargs: Any) -> Any:
        if "'C#big'" in str(kwargs["TransactItems"]):
            raise ClientError({"Error": {"Code": "ValidationException",
                                         "Message": "Item size has exceeded the maximum allowed size"}},
                              "TransactWriteItems")
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", too_large)
    batch = [{"type": "identify", "userId": "big", "messageId": "g-1", "timestamp": iso(now - timedelta(minutes=1)),
              "traits": {"email": "big@example.com", "bio": "x" * 1000}},
             track("bystander", "Order Completed", "b-1", now - timedelta(minutes=1), order_id="B1", revenue=5)]
    result = deliver(stack, batch)
    monkeypatch.undo()
    assert [r.messageId for r in result.rejected] == ["g-1"]
    assert raw_events(stack, "big") == []
    assert not stack.profile("big").traits
    assert len(rows_of(stack, "bystander", "b-1")) == 1


# ---- concurrent attempts of one message ------------------------------------------------------------------------


def _conflict(items: int) -> Exception:
    from botocore.exceptions import ClientError
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                        "CancellationReasons": [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (items - 1)},
                       "TransactWriteItems")


@pytest.mark.parametrize("kind", ["order", "view starting a journey"])
def test_a_concurrent_retry_that_commits_while_the_first_attempt_conflicts_is_stored_once(
        library_stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Review finding 1 of issue 17. Attempt R1 of a message writes its keyed raw event before its
    transaction; the client's retry R2 of the same message commits meanwhile, and R1's transaction is
    cancelled by a TransactionConflict (no condition of R1 failed). R1 reads the profile again and folds the
    message once more: a product view whose journey R2 started is no transaction any more (the interest rows
    and the raw event's put), and R1's raw event is its own — R1 must still learn from the marker that R2
    took the message: exactly one of the two answers it fresh (the events counter, product learning)."""
    stack = library_stack
    existing(stack, now)
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-1", "timestamp": iso(now - timedelta(minutes=20)),
                     "traits": {"email": "u1@example.com", "email_consent": True}}])
    if kind == "order":
        order = [track("u1", "Order Completed", "o-1", now - timedelta(minutes=5), order_id="A1", revenue=100)]
    else:
        order = [track("u1", "Product Viewed", "o-1", now - timedelta(minutes=5), product_id="p1", price=100)]
    client = stack.deps.dynamodb
    real = client.transact_write_items
    inner: list[Any] = []

    def racing(**kwargs: Any) -> Any:
        if not inner and "'C#u1'" in str(kwargs["TransactItems"]):
            inner.append(None)
            inner[0] = deliver(stack, order, sent_at=now + timedelta(seconds=2))  # R2 commits first
            raise _conflict(len(kwargs["TransactItems"]))
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", racing)
    first = deliver(stack, order, sent_at=now)
    monkeypatch.undo()
    second = inner[0]
    assert (first.accepted, second.accepted) == (1, 1)
    assert first.duplicates + second.duplicates == 1  # one of the two took it in
    assert len(rows_of(stack, "u1", "o-1")) == 1
    if kind == "order":
        k = stack.profile("u1").kpis
        assert (k["orders_count"], k["revenue_total"]) == (1, 100)
    else:
        assert "browse-abandonment" in stack.profile("u1").journeys
    assert deliver(stack, order, sent_at=now + timedelta(seconds=9)).duplicates == 1


def test_a_concurrent_retry_that_stored_the_message_plain_is_not_written_over_nor_counted_twice(
        library_stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of the fix above: R1 folds a product view at version 1 (it starts a journey: a transaction).
    Before R1's early writes, another view W starts the journey (version 2) and the client's retry R2 of
    the view, plain at version 2, stores its raw event. R1's early put finds it (a conditional put: it is not
    written over, and not R1's), R1's transaction fails on the version, and R1's plain retry is a duplicate."""
    stack = library_stack
    existing(stack, now)
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-1", "timestamp": iso(now - timedelta(minutes=20)),
                     "traits": {"email": "u1@example.com", "email_consent": True}}])
    m = [track("u1", "Product Viewed", "m-1", now - timedelta(minutes=5), product_id="p1", price=100)]
    w = [track("u1", "Product Viewed", "w-1", now - timedelta(minutes=2), product_id="p1", price=100)]
    real = Ingestor._write_early
    box: list[Any] = []

    def hooked(self: Any, early: Any, own: set[str]) -> None:
        if not box and any(msg.message_id == "m-1" for msg, _ in early.events):
            box.append(deliver(stack, w, sent_at=now))  # W commits: the journey starts (version 2)
            box.append(deliver(stack, m, sent_at=now + timedelta(seconds=2)))  # R2: plain at version 2
        real(self, early, own)

    monkeypatch.setattr(Ingestor, "_write_early", hooked)
    first = deliver(stack, m, sent_at=now)
    monkeypatch.undo()
    second = box[1]
    assert box[0].duplicates == 0 and (first.accepted, second.accepted) == (1, 1)
    assert first.duplicates + second.duplicates == 1
    assert len(rows_of(stack, "u1", "m-1")) == 1


def test_a_customer_erased_during_a_request_and_re_created_by_it_keeps_the_guard(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request read the profile, the customer is erased before its transaction, and the request's
    reload finds no profile: it creates the customer again, and reads the erasure record first — so a
    later retry of an erased keyed event is a duplicate, not written back."""
    from retention.customers.erasure import Eraser
    from retention.customers.profile import ERASED_BEFORE
    first = existing(stack, now)  # p-1: a keyed plain event, no marker
    client = stack.deps.dynamodb
    real = client.transact_write_items
    done: list[int] = []

    def racing(**kwargs: Any) -> Any:
        if not done and "'C#u1'" in str(kwargs["TransactItems"]):
            done.append(1)
            Eraser(stack.deps).erase("u1")
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", racing)
    order = [track("u1", "Order Completed", "o-9", now - timedelta(hours=2), order_id="Z1", revenue=5)]
    deliver(stack, order, sent_at=now + timedelta(minutes=5))
    monkeypatch.undo()
    assert done and stack.profile("u1").meta.get(ERASED_BEFORE)
    assert deliver(stack, first[1:]).duplicates == 1
    assert rows_of(stack, "u1", "p-1") == []


def test_the_erasure_guard_reads_nothing_for_existing_or_anonymous_customers_and_lapses_with_the_window(
        stack: Any, now: datetime) -> None:
    from retention.customers.erasure import Eraser
    from retention.customers.profile import ERASED_BEFORE
    existing(stack, now)
    stack.counter.reset()
    deliver(stack, [track("u1", "Button Clicked", "b-1", now - timedelta(minutes=1))])  # existing: no read
    assert stack.counter.count("dynamodb", "BatchGetItem") == 1  # the profile only
    stack.counter.reset()
    deliver(stack, [{"type": "page", "anonymousId": "a-1", "messageId": "pg-1", "timestamp": iso(now)}])
    assert stack.counter.count("dynamodb", "BatchGetItem") == 2  # the alias and the profile: no erasure read
    Eraser(stack.deps).erase("u1")
    deliver(stack, [track("u1", "Signed Up", "s-1", now)])
    assert stack.profile("u1").meta.get(ERASED_BEFORE) == iso(now)
    # past the dedupe window no retry of an erased event is left: the mark goes with the next profile write
    window = stack.deps.config.settings().dedupe_window_days
    clock.set_now(now + timedelta(days=window + 1))
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-9", "timestamp": iso(clock.now()),
                     "traits": {"first_name": "Ann"}}])
    assert ERASED_BEFORE not in stack.profile("u1").meta


def _near_the_cap_without(stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, trait: str) -> int:
    """u1's profile changed since an identify set `trait` (the trait is taken out of the stored profile) and
    its size cap is now 500 bytes above the stored item, so the identify's retry would pass it. The cap."""
    import retention.ingestion.ingestor as ingestor
    from retention.customers.store import ProfileRepo
    repo = ProfileRepo(stack.deps.dynamodb, stack.tables["profiles"])
    sp = repo.load("u1", now)
    sp.profile.traits.pop(trait)
    sp.profile.trait_ts.pop(trait, None)
    repo.save(sp, now)
    stored = ddb.get(stack.deps.dynamodb, stack.tables["profiles"], "C#u1", "P")
    cap = ddb.item_size(ddb.serialize(stored or {})) + 500
    monkeypatch.setattr(ingestor, "MAX_PROFILE_ITEM_BYTES", cap)
    return cap


def test_a_retry_that_the_grown_profile_refuses_keeps_the_raw_event_of_the_attempt_that_stored_it(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 5 of issue 17: an identify was stored (its transaction: marker, keyed raw event). The
    profile changed since (here: the trait it set was taken out of the profile) and grew near its size cap,
    and the client's retry of the identify, which sets the trait again, would pass the cap. The retry is a
    duplicate — its marker says it was taken in — not a refusal that deletes the first attempt's raw event."""
    import retention.ingestion.ingestor as ingestor
    existing(stack, now)
    ident = [{"type": "identify", "userId": "u1", "messageId": "g-1", "timestamp": iso(now - timedelta(minutes=1)),
              "traits": {"email": "u1@example.com", "bio": base64.b64encode(os.urandom(1500)).decode()}}]
    assert deliver(stack, ident, sent_at=now).duplicates == 0
    assert len(rows_of(stack, "u1", "g-1")) == 1
    cap = _near_the_cap_without(stack, now, monkeypatch, "bio")
    retry = deliver(stack, ident, sent_at=now + timedelta(seconds=4))
    monkeypatch.undo()
    assert retry.rejected == [] and retry.duplicates == 1
    assert len(rows_of(stack, "u1", "g-1")) == 1
    # a new message that passes the cap is refused, and leaves no raw event
    monkeypatch.setattr(ingestor, "MAX_PROFILE_ITEM_BYTES", cap)
    big = [{**ident[0], "messageId": "g-2", "traits": {"bio": base64.b64encode(os.urandom(2000)).decode()}}]
    refused = deliver(stack, big, sent_at=now + timedelta(seconds=5))
    monkeypatch.undo()
    assert [r.messageId for r in refused.rejected] == ["g-2"] and rows_of(stack, "u1", "g-2") == []


@pytest.mark.parametrize("keyed", [True, False])
def test_a_refused_retry_of_a_message_an_identify_stored_without_a_transaction_is_a_duplicate(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, keyed: bool) -> None:
    """The first attempt of a trait-only identify went without a transaction: keyed, its raw event alone
    (no marker); unkeyed (no client timestamp), its marker — and the Lambda died before its raw event. The
    profile changed and grew since, and the retry would pass the size cap: a duplicate either way (the
    keyed raw event found, the marker found), and the unkeyed raw event is written where the marker says."""
    existing(stack, now)
    ident = {"type": "identify", "userId": "u1", "messageId": "g-1",
             "traits": {"bio": base64.b64encode(os.urandom(1500)).decode()}}
    if keyed:
        ident["timestamp"] = iso(now - timedelta(minutes=1))
        assert deliver(stack, [ident], sent_at=now).duplicates == 0
    else:
        crash_at(monkeypatch, stack.deps.dynamodb, "batch_write_item", stack.tables["events"])
        with pytest.raises(Crash):
            deliver(stack, [ident], sent_at=now)
        monkeypatch.undo()
        assert rows_of(stack, "u1", "g-1") == []
    _near_the_cap_without(stack, now, monkeypatch, "bio")
    retry = deliver(stack, [ident], sent_at=now + timedelta(seconds=4))
    monkeypatch.undo()
    assert retry.rejected == [] and retry.duplicates == 1
    assert len(rows_of(stack, "u1", "g-1")) == 1


# ---- erasure: a retried message does not re-create the person ------------------------------------------------------


def test_a_keyed_message_retried_after_an_erasure_does_not_re_create_the_person(stack: Any, now: datetime) -> None:
    """A keyed plain event has no marker; erasure writes the markers of the raw events it deletes (received
    within the dedupe window), so the client's retry of one after the erasure is a duplicate."""
    from retention.customers.erasure import Eraser
    first = existing(stack, now)
    click = [track("u1", "Button Clicked", "b-1", now - timedelta(minutes=10))]
    deliver(stack, click, sent_at=now)
    assert count_items(stack, "idempotency") == 1  # p-0's (it created the customer); p-1 and the click: keyed
    Eraser(stack.deps).erase("u1")
    markers = scan(stack, "idempotency")
    # the three raw events' markers and the erasure's record: hashed, no customer id
    assert sorted(str(m["pk"])[:2] for m in markers) == ["E#", "M#", "M#", "M#"]
    assert not any("u1" in json.dumps(m) for m in markers)
    retry = deliver(stack, [*click, *first],
                    sent_at=now + timedelta(seconds=30))
    assert retry.duplicates == 3
    assert raw_events(stack, "u1") == []
    assert not stack.profile("u1").traits and ddb.get(stack.deps.dynamodb, stack.tables["profiles"], "C#u1", "P") is None
    # a new message of the same id after the erasure is a new customer (the shop sent it again)
    clock.set_now(now + timedelta(minutes=2))
    deliver(stack, [track("u1", "Signed Up", "s-1", now - timedelta(minutes=20))])  # sent late, after the erasure
    assert [e["message_id"] for e in raw_events(stack, "u1")] == ["s-1"]
    # review finding 4 of issue 17: the person is back (a profile that exists, seen before the click: the
    # click is a plain event for it), and the client retries the erased click once more; the new profile
    # read the erasure's record when it was created (`erased_before`), so the click, from before the
    # erasure, takes the marker path and finds the erasure's marker instead of writing its raw event back
    clock.set_now(now + timedelta(minutes=5))
    assert deliver(stack, click, sent_at=now + timedelta(minutes=5)).duplicates == 1
    assert [e["message_id"] for e in raw_events(stack, "u1")] == ["s-1"]
    # the re-created person's own events after its first minute are keyed plain events again: no marker
    markers = count_items(stack, "idempotency")
    later = [track("u1", "Button Clicked", "b-2", now + timedelta(minutes=4))]
    assert deliver(stack, later, sent_at=now + timedelta(minutes=5)).duplicates == 0
    assert count_items(stack, "idempotency") == markers
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["b-2", "s-1"]


@pytest.mark.parametrize("when", ["after the early writes", "before the early writes"])
def test_an_anonymous_event_whose_profile_is_merged_during_its_transaction_lands_once_on_the_customer(
        stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """The visitor is identified (merge: tombstone) while its event is being stored: the transaction fails on
    the tombstone and the event goes to the customer, once, stored (not a duplicate). Merged after the keyed
    raw event went first, the merge copied it; merged before it, the raw event left in the visitor's
    partition is deleted again."""
    d = stack.deps
    client = d.dynamodb
    deliver(stack, [{"type": "track", "anonymousId": "a1", "event": "Page Scrolled", "messageId": "p-0",
                     "timestamp": iso(now - timedelta(minutes=30))}])
    deliver(stack, [{"type": "identify", "userId": "u1", "messageId": "i-1", "timestamp": iso(now - timedelta(days=1)),
                     "traits": {"email": "u1@example.com"}}])
    real = client.transact_write_items
    real_early = Ingestor._write_early
    merged: list[int] = []

    def link() -> None:
        merged.append(1)
        assert Ingestor(ddb_client=client, sqs=d.sqs, env=d.env, config=d.config).link("a1", "u1", clock.now())

    def merge_first(**kwargs: Any) -> Any:
        if not merged and "'C#anon:a1'" in str(kwargs["TransactItems"]):
            link()
        return real(**kwargs)

    def merge_before_early(self: Any, early: Any, own: set[str]) -> None:
        if not merged and any(e["pk"] == "C#anon:a1" for _, e in early.events):
            link()
        real_early(self, early, own)

    if when == "after the early writes":
        monkeypatch.setattr(client, "transact_write_items", merge_first)
    else:
        monkeypatch.setattr(Ingestor, "_write_early", merge_before_early)
    result = deliver(stack, [{"type": "track", "anonymousId": "a1", "event": "Button Clicked", "messageId": "b-1",
                              "timestamp": iso(now - timedelta(minutes=5))}])
    monkeypatch.undo()
    assert merged and result.accepted == 1 and result.duplicates == 0
    assert raw_events(stack, "anon:a1") == []
    assert sorted(e["message_id"] for e in raw_events(stack, "u1")) == ["b-1", "i-1", "p-0"]
