"""The minute tick reads what is due, not the customer base; double and late ticks change nothing twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.core import clock, ddb
from retention.customers.profile import Profile
from retention.schedule import due


def seed_profiles(stack: Any, n: int, now: Any) -> None:
    """n stored profiles (raw batch writes: fast), none of them due."""
    items = []
    for i in range(n):
        p = Profile(id=f"c{i}", created_at=now, traits={"email": f"c{i}@example.com"})
        items.append({"pk": f"C#c{i}", "sk": "P", "version": 1, "doc": p.to_doc(), "sends": []})
    ddb.batch_write(stack.deps.dynamodb, stack.tables["profiles"], puts=items)


def test_tick_reads_grow_with_due_items_not_customers(library_stack: Any, now: Any) -> None:
    s = library_stack
    seed_profiles(s, 10_000, now)
    env = s.deps.env
    items = [due.DueItem(at=now + timedelta(minutes=i % 30), kind="SEGMENT", customer_id=f"c{i * 37}", ref="segments")
             for i in range(50)]
    due.put(s.deps.dynamodb, env.due_table, items, env.due_shards)
    ticker = s.ticker()
    clock.set_now(now - timedelta(minutes=1))
    ticker.tick()  # sets the watermark; nothing due yet
    clock.set_now(now + timedelta(minutes=31))
    s.counter.reset()
    result = ticker.tick()
    assert result.due_items == 50
    reads = s.counter.count("dynamodb", *s.counter.DDB_READS)
    scans = s.counter.count("dynamodb", "Scan")
    assert scans == 0
    # 2 hour buckets x 4 shards of due queries + one profile read per due customer + config reads
    assert reads <= 50 + 2 * env.due_shards + 10, s.counter.calls
    # the same tick again: nothing left to do
    s.counter.reset()
    again = ticker.tick()
    assert again.due_items == 0
    assert s.counter.count("dynamodb", "GetItem") <= 3


def test_catch_up_after_an_outage(library_stack: Any, now: Any) -> None:
    s = library_stack
    env = s.deps.env
    seed_profiles(s, 3, now)
    ticker = s.ticker()
    ticker.tick()
    items = [due.DueItem(at=now + timedelta(hours=h), kind="SEGMENT", customer_id=f"c{h}", ref="segments")
             for h in (1, 5, 20)]
    due.put(s.deps.dynamodb, env.due_table, items, env.due_shards)
    clock.set_now(now + timedelta(days=1))  # the tick did not run for a day
    result = ticker.tick()
    assert result.due_items == 3


def test_a_journey_step_is_three_writes_and_a_crash_before_its_profile_write_sends_once(
        library_stack: Any, now: Any, monkeypatch: Any) -> None:
    """A step that only waits and sends (no segment move, no counter): its send is enqueued and its next due
    item put before the profile write, without a transaction or a SEND safety item. A crash before the
    profile write leaves the processed due item: the next tick runs the step again, and the second copy of
    the send is a duplicate at the ledger."""
    from tests.support import drain_sends
    s = library_stack
    identify = {"type": "identify", "userId": "w1", "messageId": "i1",
                "traits": {"email": "w1@example.com", "email_consent": True, "first_name": "Анна"}}
    s.ingest([identify])
    s.ingest([{"type": "track", "userId": "w1", "event": "Signed Up", "messageId": "su1"}])
    drain_sends(s)
    ticker = s.ticker()
    clock.set_now(now + timedelta(minutes=20))
    ticker.tick()  # the watermark, and the first sends' sweeper reminders
    drain_sends(s)
    clock.set_now(now + timedelta(days=1, minutes=5))
    real = s.deps.dynamodb.put_item
    crashed: list[int] = []

    def crash(**kwargs: Any) -> Any:
        if kwargs.get("TableName") == s.tables["profiles"] and not crashed:
            crashed.append(1)
            raise RuntimeError("the Lambda dies before the profile write")
        return real(**kwargs)

    monkeypatch.setattr(s.deps.dynamodb, "put_item", crash)
    with pytest.raises(RuntimeError):
        ticker.tick()
    monkeypatch.undo()
    assert crashed
    s.counter.reset()
    result = ticker.tick()
    assert result.sends >= 1
    assert s.counter.count("dynamodb", "TransactWriteItems") == 0
    outcomes = drain_sends(s)
    statuses = sorted(o.status for _, o in outcomes)
    assert statuses.count("sent") == result.sends and statuses.count("duplicate") == result.sends
    # the step is done: a later tick runs nothing again
    assert ticker.tick().sends == 0
