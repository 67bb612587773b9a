"""Expiry values of what the engine writes (moto never expires items, so the TTL attribute itself is what
a test can check), the history horizon end to end, and an unknown time zone reaching the sender.

Written against planted bugs the suite let through (issue 21): each docstring names the one it catches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.messaging.requests import SendRequest, ledger_key
from retention.schedule import due

DAY = 86400
RULES = {
    "cart": {"id": "cart", "trigger": {"event": "Checkout Started"},
             "steps": [{"wait": "4h"}, {"send": {"channel": "email", "template": "t-plain"}}]},
    "sms-now": {"id": "sms-now", "trigger": {"event": "Ping"},
                "steps": [{"send": {"channel": "sms", "template": "t-plain"}}]},
    "bday": {"id": "bday", "trigger": {"date_attribute": "birthday", "at": "10:00"},
             "steps": [{"send": {"channel": "email", "template": "t-plain"}}]},
}
PLAIN = {"id": "t-plain", "category": "marketing", "default_locale": "ru",
         "locales": {"ru": {"subject": "Привет", "text": "Текст {{ links.unsubscribe }}", "sms": "Привет"}}}


@pytest.fixture
def s(stack: Any) -> Any:
    cfg = stack.deps.config
    cfg.apply("TEMPLATE", PLAIN["id"], PLAIN)
    for rule_id, body in RULES.items():
        cfg.apply("RULE", rule_id, body)
    return stack


def scan(stack: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": stack.tables[table]}
    while True:
        resp = stack.deps.dynamodb.scan(**kwargs)
        items += [ddb.deserialize(i) for i in resp.get("Items", [])]
        if not resp.get("LastEvaluatedKey"):
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def identify(uid: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}", "traits": traits}


def track(uid: str, event: str, mid: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props,
            "timestamp": clock.iso(at)}


# ---- TTL values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [None, 7])
def test_dedupe_markers_expire_after_the_dedupe_window(s: Any, now: datetime, days: int | None) -> None:
    """Bug caught: the messageId markers' TTL computed from the event-retention setting (400 days of
    markers cost as much as the events) or from the message's own timestamp (an import's markers
    expire at once and a retried import stores the events twice)."""
    if days:
        s.deps.config.put_settings({"dedupe_window_days": days})
    s.ingest([track("u1", "Page Viewed", "m-old", now - timedelta(days=3)), track("u1", "Page Viewed", "m-new", now)])
    # the marker keys hash the messageId (erasure: a marker must not name the person), so count them
    markers = [i for i in scan(s, "idempotency") if i["pk"].startswith("M#")]
    assert len(markers) == 2
    expected = int(now.timestamp()) + (days or 30) * DAY
    assert [int(i["ttl"]) for i in markers] == [expected, expected]


@pytest.mark.parametrize("days", [None, 60])
def test_the_send_ledger_expires_after_the_ledger_retention(s: Any, now: datetime, days: int | None) -> None:
    """Bug caught: the ledger TTL (exactly-once memory) off by a unit (hours for days) or taken from
    another setting: a redelivered SQS message after expiry would be sent twice."""
    if days:
        s.deps.config.put_settings({"ledger_retention_days": days})
    s.ingest([identify("u1", email="u1@example.com", email_consent=True)])
    req = SendRequest(customer_id="u1", rule="cart", entry="e1", step=1, channel="email", template="t-plain")
    assert s.sender().send(req).status == "sent"
    item = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert item is not None and item["status"] == "sent"
    assert int(item["ttl"]) == int(now.timestamp()) + (days or 400) * DAY
    # a skipped message's ledger item expires the same way
    skipped = SendRequest(customer_id="nobody", rule="cart", entry="e1", step=1, channel="email", template="t-plain")
    assert s.sender().send(skipped).status == "skipped"
    item = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, *ledger_key(skipped.ledger_id), consistent=True)
    assert item is not None and int(item["ttl"]) == int(now.timestamp()) + (days or 400) * DAY


def test_due_items_expire_30_days_after_they_are_due(s: Any, now: datetime) -> None:
    """Bug caught: the due item's TTL counted from now instead of from its due time (a yearly birthday
    item would vanish before it came due) or missing."""
    s.ingest([identify("u1", email="u1@example.com", email_consent=True, birthday="1990-03-15"),
              track("u1", "Checkout Started", "cs1", now)])
    items = scan(s, "due")
    by_kind = {i["kind"]: i for i in items}
    assert {"JOURNEY", "TRIGGER"} <= set(by_kind), items
    for item in items:
        at = clock.parse_iso(item["at"])
        assert int(item["ttl"]) == int((at + timedelta(days=30)).timestamp()), item
    journey = by_kind["JOURNEY"]
    assert clock.parse_iso(journey["at"]) == now + timedelta(hours=4)
    birthday = clock.parse_iso(by_kind["TRIGGER"]["at"])
    assert birthday > now + timedelta(days=100)  # next March: the TTL must follow the due time, not now
    assert int(by_kind["TRIGGER"]["ttl"]) > int((now + timedelta(days=100)).timestamp())


def test_a_due_item_written_late_is_due_now_and_expires_from_now(now: datetime) -> None:
    item = due.DueItem(at=now - timedelta(hours=2), kind="SEND", customer_id="c1", ref="r")
    raw = item.to_item(4)
    assert raw["at"] == clock.iso(now) and raw["pk"].startswith(clock.iso(now)[:13] + "#")
    assert raw["ttl"] == int((now + timedelta(days=30)).timestamp())


def test_internal_events_and_segment_history_follow_the_event_retention(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.deps.config.put_settings({"event_retention_days": 90})
    s.ingest([identify("u1", email="u1@example.com", email_consent=True),
              track("u1", "Order Completed", "o1", now - timedelta(hours=1), order_id="o1", revenue=100)])
    rows = [i for i in scan(s, "events") if i.get("internal")]
    assert rows, "a first order moves the customer between segments"
    assert {int(r["ttl"]) for r in rows} == {int(now.timestamp()) + 90 * DAY}


# ---- the history horizon, through ingestion --------------------------------------------------------------


@pytest.mark.parametrize(("age", "starts"), [
    (timedelta(hours=1), True), (timedelta(hours=23), True),
    (timedelta(hours=25), False), (timedelta(days=200), False),
])
def test_history_horizon_through_ingestion(s: Any, now: datetime, age: timedelta, starts: bool) -> None:
    """An event 1–24 h old starts its journey (its wait counted from now); an older one updates the
    profile only."""
    s.ingest([identify("u1", email="u1@example.com", email_consent=True),
              track("u1", "Checkout Started", "cs1", now - age)])
    p = s.profile("u1")
    assert ("cart" in p.journeys) is starts
    assert p.kpis["last_seen_at"] is not None
    assert any(i["kind"] == "JOURNEY" for i in scan(s, "due")) is starts


# ---- an unknown time zone reaching the sender -----------------------------------------------------------------


def force_trait(stack: Any, uid: str, **traits: Any) -> None:
    from retention.customers.store import ProfileRepo, to_item
    sp = ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table).load(uid, clock.now())
    sp.profile.traits.update(traits)
    stack.deps.dynamodb.put_item(TableName=stack.deps.env.profiles_table, Item=ddb.serialize(to_item(sp, clock.now())))
    assert stack.profile(uid).traits["timezone"] == traits["timezone"]


def test_an_unknown_timezone_falls_back_to_the_shops_zone_not_utc(s: Any, now: datetime) -> None:
    """Bug caught: an unknown zone on the profile (`Mars/Olympus`, kept as the shop sent it) makes the
    quiet-hours check fall back to UTC instead of the shop's default zone. 19:00 UTC is 22:00 in Moscow:
    quiet for SMS there, not in UTC."""
    s.deps.config.put_settings({"default_timezone": "Europe/Moscow",
                                "quiet_hours": {"sms": {"start": "21:00", "end": "09:00"}, "email": None}})
    s.ingest([identify("u1", phone="+79161112233", sms_consent=True, timezone="Mars/Olympus")])
    assert "timezone" not in s.profile("u1").traits  # ingestion refuses it …
    # … but one can still reach the sender: a profile stored before the check, a zone dropped from tzdata
    force_trait(s, "u1", timezone="Mars/Olympus")
    clock.set_now(datetime(2026, 11, 24, 19, 0, tzinfo=UTC))
    req = SendRequest(customer_id="u1", rule="sms-now", entry="e1", step=0, channel="sms", template="t-plain")
    out = s.sender().send(req)
    assert (out.status, out.reason) == ("deferred", "quiet_hours")
    item = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, *ledger_key(req.ledger_id), consistent=True)
    assert item is not None and item["not_before"] == "2026-11-25T06:00:00.000000Z"  # 09:00 Moscow
    # a zone that exists is used as it is: 19:00 UTC is 05:00 in Vladivostok, quiet until 09:00 there
    s.ingest([identify("u2", phone="+79161112244", sms_consent=True, timezone="Asia/Vladivostok")])
    req2 = SendRequest(customer_id="u2", rule="sms-now", entry="e1", step=0, channel="sms", template="t-plain")
    assert s.sender().send(req2).status == "deferred"
    item = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, *ledger_key(req2.ledger_id), consistent=True)
    assert item is not None and item["not_before"] == "2026-11-24T23:00:00.000000Z"
