"""No silent loss (issue 15, items 5 and 6): a product event stored by a request that then died still fans
out (its safety item went in with the messageId marker), and a send claim left `pending` by a crash or a
lost provider answer is reconciled by the sweeper with a metric, never left for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.ingestion.ingestor import Ingestor
from retention.messaging.requests import ledger_key

from tests.integration.test_ingest import track


def due_rows(s: Any) -> list[dict[str, Any]]:
    return [r for r in (ddb.deserialize(i) for i in s.deps.dynamodb.scan(TableName=s.tables["due"])["Items"]) if r]


def test_a_product_event_of_a_failed_request_fans_out_on_the_retry(library_stack: Any, now: datetime,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    s = library_stack
    if "back-in-stock" not in s.deps.config.current("RULE"):
        pytest.skip("the scenario library has no back-in-stock rule")
    s.ingest([track("viewer", "Product Viewed", "v1", now - timedelta(hours=5), product_id="p1")])
    event = track("shop", "Product Back in Stock", "bis-1", now, product_id="p1")
    real = Ingestor.fan_out_product_event

    def dies(self: Any, *a: Any, **kw: Any) -> int:
        raise TimeoutError("the Lambda timed out after the transaction")

    monkeypatch.setattr(Ingestor, "fan_out_product_event", dies)
    with pytest.raises(TimeoutError):
        s.ingest([event])
    monkeypatch.setattr(Ingestor, "fan_out_product_event", real)
    assert s.ingest([event]).duplicates == 1  # the client's retry: a duplicate, as before
    assert not [r for r in due_rows(s) if r["kind"] == "TRIGGER"]  # the fan-out was lost here before
    assert [r["ref"] for r in due_rows(s) if r["kind"] == "FANOUT"] == ["bis-1"]
    clock.set_now(now + timedelta(minutes=6))
    assert s.ticker().tick().fanouts == 1
    triggers = [r for r in due_rows(s) if r["kind"] == "TRIGGER" and "back-in-stock" in r["ref"]]
    assert [r["customer_id"] for r in triggers] == ["viewer"]
    assert not [r for r in due_rows(s) if r["kind"] == "FANOUT"]


def test_a_done_fan_out_leaves_no_safety_item(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.ingest([track("viewer", "Product Viewed", "v1", now - timedelta(hours=5), product_id="p1")])
    s.ingest([track("shop", "Product Back in Stock", "bis-2", now, product_id="p1")])
    assert not [r for r in due_rows(s) if r["kind"] == "FANOUT"]


def _customer_and_send(s: Any) -> Any:
    from retention.messaging.requests import SendRequest
    s.ingest([{"type": "identify", "userId": "u1", "messageId": "i1",
               "traits": {"email": "u1@example.com", "email_consent": True, "first_name": "Anna"}}])
    s.queued_sends()
    return SendRequest(customer_id="u1", rule="welcome", entry="e-test", step=0, template="welcome",
                       channel="email")


def test_a_claim_left_pending_by_a_lost_answer_is_swept(library_stack: Any, now: datetime,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    s = library_stack
    req = _customer_and_send(s)
    sender = s.sender()

    def lost(*a: Any, **kw: Any) -> Any:
        raise ConnectionResetError("read timeout after the request went out")

    monkeypatch.setattr(sender, "_call_provider", lost)
    assert sender.send(req).status == "unknown"
    row = ddb.get(s.deps.dynamodb, s.tables["messages"], *ledger_key(req.ledger_id))
    assert row and row["status"] == "pending"
    assert [r["ref"] for r in due_rows(s) if r["kind"] == "PENDING"] == [req.ledger_id]
    clock.set_now(now + timedelta(minutes=16))
    result = s.ticker().tick()
    assert result.pending_unknown == 1
    row = ddb.get(s.deps.dynamodb, s.tables["messages"], *ledger_key(req.ledger_id))
    assert row and row["status"] == "unknown"
    assert not [r for r in due_rows(s) if r["kind"] == "PENDING"]
    # a redelivery still never sends twice
    assert s.sender().send(req).status == "duplicate"


def test_a_sent_messages_sweeper_item_is_a_no_op_and_goes(library_stack: Any, now: datetime) -> None:
    """`sent` does not delete the reminder (2 write units inside its transaction): the tick reads the
    ledger when it comes due, finds it sent, and deletes it."""
    s = library_stack
    req = _customer_and_send(s)
    assert s.sender().send(req).status == "sent"
    clock.set_now(now + timedelta(minutes=16))
    assert s.ticker().tick().pending_unknown == 0
    assert not [r for r in due_rows(s) if r["kind"] == "PENDING"]
    row = ddb.get(s.deps.dynamodb, s.tables["messages"], *ledger_key(req.ledger_id))
    assert row and row["status"] == "sent"


def test_the_handler_reports_the_metric() -> None:
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "functions/evaluate_triggers/handler.py").read_text()
    assert "PendingSendsUnknown" in text


_ = datetime


def test_a_render_gets_only_the_time_left_in_the_invocation(library_stack: Any, now: datetime) -> None:
    """Issue 15 item 6: a slow template must fail its own message, not time out the batch."""
    s = library_stack
    req = _customer_and_send(s)
    sender = s.sender()
    sender.time_left = lambda: 4.0  # less than the 5 s kept for the provider call and the ledger
    out = sender.send(req)
    assert (out.status, out.reason) == ("failed", "render_error")
    row = ddb.get(s.deps.dynamodb, s.tables["messages"], *ledger_key(req.ledger_id))
    assert row and "took longer" in row.get("detail", "")


# ---- counters and segment flows of a request that died after its commit (issue 15, item 5) -------------------


def _entered(s: Any, rule: str) -> float:
    from retention.analytics.counters import read_counters
    return sum(float(r.get("entered", 0)) for r in read_counters(s.deps.dynamodb, s.tables["messages"], rule))


def _segment_sizes(s: Any) -> dict[str, int]:
    from retention.analytics import segstats
    sizes: dict[str, int] = {}
    for group in ("lifecycle",):
        daily, _ = segstats.history(s.deps.dynamodb, s.tables["messages"], group, clock.now().date(),
                                    clock.now().date())
        sizes.update({f"{group}/{r['segment']}": r["count"] for r in daily})
    return sizes


SUBSCRIBER = [{"type": "identify", "userId": "c-stats", "messageId": "id-stats",
               "traits": {"email": "stats@example.com", "email_consent": True, "first_name": "Olga"}},
              {"type": "track", "userId": "c-stats", "messageId": "su-stats", "event": "Signed Up"}]


def test_counters_of_a_request_that_died_after_its_commit_are_replayed_once(
        library_stack: Any, now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    import retention.ingestion.ingestor as ingestor_module
    s = library_stack
    real = ingestor_module.after_commit

    def dies(*a: Any, **kw: Any) -> int:
        raise TimeoutError("the Lambda timed out after the transaction")

    monkeypatch.setattr(ingestor_module, "after_commit", dies)
    with pytest.raises(TimeoutError):
        s.ingest(SUBSCRIBER)
    monkeypatch.setattr(ingestor_module, "after_commit", real)
    assert s.ingest(SUBSCRIBER).duplicates == 2  # the client's retry: a duplicate, which adds nothing
    assert _entered(s, "welcome") == 0 and _segment_sizes(s) == {}  # lost for good here before
    assert _moves(s, "c-stats") == []  # a move's timeline event is written after the commit too
    [stats] = [r for r in due_rows(s) if r["kind"] == "STATS"]
    assert stats["customer_id"] == "c-stats"
    clock.set_now(now + timedelta(minutes=6))
    first, second = s.ticker().tick(), s.ticker().tick()
    assert (first.stats_replayed, second.stats_replayed) == (1, 0)  # claimed once, never added twice
    assert _entered(s, "welcome") == 1
    assert sum(_segment_sizes(s).values()) >= 1  # the lifecycle move is counted too
    assert not [r for r in due_rows(s) if r["kind"] == "STATS"]
    # and its Segment Entered events are on the timeline, as the request would have written them
    replayed = _moves(s, "c-stats")
    assert replayed and all(e["event"] == "Segment Entered" for e in replayed)
    s.ingest([{**SUBSCRIBER[0], "messageId": "id-stats-2", "userId": "c-other"}])
    assert [e["sk"].split("#", 1)[1][:4] for e in _moves(s, "c-other")] == ["seg-"] * len(_moves(s, "c-other"))


def _moves(s: Any, cid: str) -> list[dict[str, Any]]:
    return [e for e in ddb.query(s.deps.dynamodb, s.tables["events"], f"C#{cid}") if e.get("internal")
            and str(e.get("event", "")).startswith("Segment ")]


def test_a_finished_request_leaves_no_stats_item_and_counts_once(library_stack: Any, now: datetime) -> None:
    s = library_stack
    s.ingest(SUBSCRIBER)
    assert _entered(s, "welcome") == 1
    moves = _moves(s, "c-stats")
    assert moves  # written after the commit, once
    assert not [r for r in due_rows(s) if r["kind"] == "STATS"]
    clock.set_now(now + timedelta(minutes=6))
    assert s.ticker().tick().stats_replayed == 0
    assert _entered(s, "welcome") == 1
    assert _moves(s, "c-stats") == moves
