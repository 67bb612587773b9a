"""The send brake on moto: windows (last N sends, rolling 24 h), the 100-send floor, per identity, deferral of
marketing while paused, transactional mail flowing, resume with a fresh window, feedback feeding it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.messaging.brake import Brake, sending_identity
from retention.messaging.feedback import Feedback

from tests.integration.test_sender import apply, customer, emails, ledger, request, sender

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def brake(stack: Any) -> Brake:
    return Brake(stack.deps.dynamodb, stack.deps.env.messages_table, stack.deps.config)


def counts(stack: Any, identity: str, hour_offset: float, sent: int, bounced: int = 0, complained: int = 0,
           epoch: int = 0) -> None:
    """Hourly counters as the sender and the feedback function leave them (one shard)."""
    at = clock.iso(clock.now() - timedelta(hours=hour_offset))[:13]
    stack.deps.dynamodb.put_item(TableName=stack.deps.env.messages_table, Item=ddb.serialize(
        {"pk": f"BRAKE#{identity}#{epoch}", "sk": f"H#{at}#0", "sent": sent, "bounced": bounced,
         "complained": complained}))


def test_identity_is_the_from_domain() -> None:
    assert sending_identity("Shop <News@Shop.Example>") == "shop.example"
    assert sending_identity("news@shop.example") == "shop.example"


def test_fewer_than_100_sends_never_trip_then_the_100th_does(stack: Any) -> None:
    b = brake(stack)
    now = clock.now()
    for i in range(99):
        b.count_send("shop.example", now, f"l{i}")
    for i in range(3):
        assert b.record_feedback("shop.example", "complained", now, f"l{i}") is None
    assert b.status("shop.example")["marketing"] == "active"
    b.count_send("shop.example", now, "l99")
    paused = b.record_feedback("shop.example", "complained", now, "l3")
    assert paused is not None and paused["marketing"] == "paused"
    status = b.status("shop.example")
    assert status["marketing"] == "paused" and status["since"] == clock.iso(now)
    assert status["complaint_rate"] == 0.04 and status["window"]["sent"] == 100
    assert "complaint rate 4.00 % over the last 100 sends passed 0.05 %" in status["reason"]
    assert b.status("other.example")["marketing"] == "active"  # per sending identity
    assert b.record_feedback("shop.example", "complained", now, "l4") is None  # paused once
    audit = [e for e in ddb.query(stack.deps.dynamodb, stack.deps.env.config_table, "AUDIT")]
    assert [(e["who"], e["action"], e["id"]) for e in audit] == [("brake", "pause", "shop.example")]


def test_last_n_sends_and_rolling_24h_windows(stack: Any) -> None:
    b = brake(stack)
    # 1,000 clean sends two days ago, then 200 sends with 6 bounces today: 3 % over 24 h trips the brake
    # although the last 1,000 sends hold only 0.6 %
    counts(stack, "a.example", 48, 1000)
    counts(stack, "a.example", 1, 200, bounced=6)
    ev = b.evaluate("a.example", clock.now())
    by_kind = {w["kind"]: w for w in ev["windows"]}
    assert by_kind["last_sends"]["sent"] == 1200 and by_kind["last_sends"]["bounce_rate"] == 0.005
    assert by_kind["24h"]["sent"] == 200 and by_kind["24h"]["bounce_rate"] == 0.03
    assert ev["trip"] and ev["window"]["kind"] == "24h" and "bounce rate 3.00 %" in ev["reason"]
    # 20 bounces in the last 1,000 sends spread over three days: 2 % (under), then 30: 3 % (over)
    for hours, sent, bounced in ((70, 400, 8), (40, 300, 6), (10, 300, 6)):
        counts(stack, "b.example", hours, sent, bounced=bounced)
    assert not b.evaluate("b.example", clock.now())["trip"]
    counts(stack, "b.example", 70, 400, bounced=18)
    ev = b.evaluate("b.example", clock.now())
    assert ev["trip"] and ev["window"]["kind"] == "last_sends" and ev["window"]["sent"] == 1000


def test_paused_marketing_is_deferred_transactional_flows_resume_starts_a_fresh_window(stack: Any) -> None:
    apply(stack)
    customer(stack, "u1")
    s = sender(stack)
    assert s.identity == "example.com"
    counts(stack, "example.com", 0, 150, complained=1)
    assert brake(stack).record_feedback("example.com", "complained", clock.now(), "x") is not None
    promo, order = request("u1"), request("u1", rule="order", event={"properties": {"order_id": "1"}})
    outcome = s.send(promo)
    assert (outcome.status, outcome.reason) == ("deferred", "sending_paused")
    assert ledger(stack, promo)["status"] == "deferred" and not emails()
    assert s.send(order).status == "sent" and len(emails()) == 1
    assert ledger(stack, order)["status"] == "sent"
    # the deferral comes back in 30 minutes (the earliest due item is the sent order's 15-minute pending sweep)
    kinds = {(r["kind"]["S"], r["at"]["S"]) for r in stack.deps.dynamodb.scan(
        TableName=stack.deps.env.due_table)["Items"]}
    assert ("SEND", clock.iso(clock.now() + timedelta(minutes=30))) in kinds
    resumed = brake(stack).resume("example.com", by="anna")
    assert resumed["marketing"] == "active" and resumed["was"] == "paused" and resumed["epoch"] == 1
    status = brake(stack).status("example.com")
    assert status["marketing"] == "active" and status["window"]["sent"] == 0  # the old complaints are gone
    stack.deps.config.invalidate()
    assert sender(stack).send(promo).status == "sent"  # the deferred message, when it comes due again
    assert len(emails()) == 2


def test_feedback_counts_each_complaint_once_and_pauses(stack: Any) -> None:
    apply(stack)
    customer(stack, "u1")
    counts(stack, "example.com", 0, 300)
    req = request("u1", rule="order", event={"properties": {"order_id": "1"}})
    assert sender(stack).send(req).status == "sent"
    event = {"eventType": "Complaint", "mail": {"messageId": "m1", "source": "Shop <news@example.com>",
                                                "destination": ["anna@example.com"],
                                                "tags": {"ledger": [req.ledger_id]}},
             "complaint": {"complainedRecipients": [{"emailAddress": "anna@example.com"}]}}
    fb = Feedback(stack.deps)
    assert fb.handle(event) == "complained"
    assert fb.paused and fb.paused[0]["sk"] == "example.com"
    assert Feedback(stack.deps).handle(event) == "duplicate"
    status = brake(stack).status("example.com")
    assert status["marketing"] == "paused" and status["window"]["complained"] == 1
    assert status["window"]["sent"] == 301
