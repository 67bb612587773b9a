"""The effects writer: what the engine decided for a customer (retention.journeys.engine.Effects), written
in two halves, the same for ingestion, identity merges and the minute tick.

1. Inside the caller's transaction (`transaction_items`): the due items, one SEND safety item per send (so
   a send stays durable in the due index until the queue has it), the STATS safety item, and the internal
   events other than segment moves.
2. After the commit (`after_commit`), ONE sequence: the segment moves' `Segment Entered` / `Segment Exited`
   events on the timeline (a move's history: the admin view and the CLI show it), segment sizes and flows,
   enqueue the sends, delete their safety items, then the daily counters, summed over the whole request (one
   ADD per rule, step and variant, not one per customer). A crash in between leaves the safety items for
   the tick, and the send ledger stops a second send.

The counters, segment flows and segment-move events of a commit have a safety item of their own (`STATS`,
one per customer commit, written in the same transaction): a request that dies after its commit (a timeout,
a crash) would otherwise lose them for good, since its retry finds every message a duplicate. A move's event
is the same item whoever writes it (retention.journeys.engine.segment_event), so the replay writes it again
at its key; outside the transaction it costs 1 write unit instead of 2. `after_commit` deletes the
item once the counters are added; the tick replays an item left behind (claimed by a conditional delete,
so two ticks never add it twice). The one window left is a crash between the counter writes and the
item's delete (milliseconds): the tick then adds them a second time — at least once, never silently lost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.analytics import segstats
from retention.analytics.counters import add_counters
from retention.core import ddb
from retention.core.settings import Env
from retention.customers.store import timeline_key
from retention.journeys.engine import Effects, segment_event
from retention.messaging.requests import SendRequest
from retention.schedule import due

ATTEMPTS = 6
SAFETY_DELAY = timedelta(minutes=5)


def safety_items(sends: list[SendRequest], now: datetime) -> list[due.DueItem]:
    """A send stays durable in the due index until the queue has it (deleted right after the enqueue; a
    crash in between leaves it for the tick, and the send ledger stops a second send)."""
    return [due.DueItem(at=now + SAFETY_DELAY, kind="SEND", customer_id=s.customer_id, ref=s.ledger_id,
                        payload=json.loads(s.model_dump_json())) for s in sends]


def stats_item(cid: str, fx: Effects, now: datetime) -> due.DueItem | None:
    """The safety item of a commit's counters and segment transitions (None when it has none); the same
    item, key included, for the same (customer, effects, time), so `after_commit` can delete it."""
    if not fx.counters and not fx.transitions:
        return None
    payload: dict[str, Any] = {
        "at": now.isoformat(),
        "counters": [[rule, step, variant, values] for rule, step, variant, values in fx.counters],
        "transitions": [[t.group, t.segment, t.kind, t.reason] for t in fx.transitions]}
    moves = [ev for ev in fx.events if ev.get("segment_move")]
    if moves:
        payload["events_ttl"] = int(moves[0]["ttl"])
    ref = hashlib.sha256(json.dumps([cid, payload], sort_keys=True, default=str).encode()).hexdigest()[:20]
    return due.DueItem(at=now + SAFETY_DELAY, kind="STATS", customer_id=cid, ref=ref, payload=payload)


def transaction_items(env: Env, cid: str, fx: Effects, now: datetime, retention_s: int) -> list[dict[str, Any]]:
    """What the engine decided for one customer, as transaction items: internal events (segment
    transitions) on the timeline, due items and the sends' safety items. `fx.history` is not written on its
    own: it said what the internal events say (group, segment, entered/exited, reason, time) with the same
    expiry, and nothing read it (2 write units per segment move inside the transaction)."""
    expires = int(now.timestamp()) + retention_s
    items: list[dict[str, Any]] = []
    for ev in fx.events:
        if ev.get("segment_move"):
            continue  # after the commit (`after_commit`), replayed from the STATS item
        items.append({"Put": {"TableName": env.events_table, "Item": ddb.serialize(timeline_item(cid, ev, expires))}})
    stats = stats_item(cid, fx, now)
    for d in [*fx.due, *safety_items(fx.sends, now), *([stats] if stats else [])]:
        items.append({"Put": {"TableName": env.due_table, "Item": ddb.serialize(d.to_item(env.due_shards))}})
    return items


def timeline_item(cid: str, ev: dict[str, Any], expires: int) -> dict[str, Any]:
    """An internal event as the events table keeps it."""
    pk, sk = timeline_key(cid, ev["timestamp"], ev["message_id"])
    return {"pk": pk, "sk": sk, "customer_id": cid, "type": "track", "event": ev["event"],
            "properties": json.dumps(ev["properties"]), "message_id": ev["message_id"], "timestamp": ev["timestamp"],
            "internal": True, "ttl": int(ev.get("ttl") or expires)}


def enqueue(sqs: Any, queue_url: str, sends: list[SendRequest]) -> None:
    if sends and not queue_url:
        from retention.core.settings import SettingsError
        raise SettingsError(f"SEND_QUEUE_URL is not set: cannot queue {len(sends)} sends")
    for start in range(0, len(sends), 10):
        chunk = sends[start:start + 10]
        entries = [{"Id": str(i), "MessageBody": s.model_dump_json()} for i, s in enumerate(chunk)]
        for attempt in range(ATTEMPTS):
            resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = {f["Id"] for f in resp.get("Failed", [])}
            if not failed:
                break
            entries = [e for e in entries if e["Id"] in failed]
            ddb.backoff(attempt + 1)
        else:
            raise RuntimeError(f"could not enqueue {len(entries)} sends")


@dataclass
class Committed:
    """What committed transactions (one customer's, or a batch of customers') leave to do after the commit."""

    sends: list[SendRequest] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # segment moves' timeline items
    counters: list[tuple[str, int, str, dict[str, float], str]] = field(default_factory=list)
    transitions: list[list[Any]] = field(default_factory=list)  # per customer (flows pair within one)
    stats: list[due.DueItem] = field(default_factory=list)  # the safety items of the counters above

    def add(self, customer_id: str, fx: Effects, now: datetime) -> None:
        self.sends += fx.sends
        self.events += [timeline_item(customer_id, ev, int(ev["ttl"])) for ev in fx.events if ev.get("segment_move")]
        self.counters += [(*c, customer_id) for c in fx.counters]
        if fx.transitions:
            self.transitions.append(list(fx.transitions))
        stats = stats_item(customer_id, fx, now)
        if stats:
            self.stats.append(stats)

    def extend(self, other: Committed) -> None:
        self.sends += other.sends
        self.events += other.events
        self.counters += other.counters
        self.transitions += other.transitions
        self.stats += other.stats


def after_commit(client: Any, sqs: Any, env: Env, done: Committed, now: datetime) -> int:
    """The one after-commit sequence: segment stats, enqueue, delete the safety items, counters.
    Returns the number of sends enqueued."""
    if done.events:
        ddb.batch_write(client, env.events_table, puts=done.events)
    if done.transitions:
        segstats.record(client, env.messages_table, done.transitions, now)
    if done.sends:
        enqueue(sqs, env.send_queue_url, done.sends)
        due.delete(client, env.due_table, safety_items(done.sends, now), env.due_shards)
    for (rule, step, variant), (values, hint) in summed_counters(done.counters).items():
        add_counters(client, env.messages_table, rule, step, variant, values, now, hint)
    due.delete(client, env.due_table, done.stats, env.due_shards)
    return len(done.sends)


def summed_counters(counters: list[tuple[str, int, str, dict[str, float], str]]
                    ) -> dict[tuple[str, int, str], tuple[dict[str, float], str]]:
    """The counters of a request summed per (rule, step, variant): one ADD each (a batch of 100 customers
    entering one rule was 100 updates of the same daily item, one write unit each). The shard is the first
    contributor's: a request's sum is one write whichever shard takes it."""
    out: dict[tuple[str, int, str], tuple[dict[str, float], str]] = {}
    for rule, step, variant, values, hint in counters:
        summed, first = out.get((rule, step, variant), ({}, hint))
        for name, amount in values.items():
            summed[name] = summed.get(name, 0) + amount
        out[(rule, step, variant)] = (summed, first)
    return out


def replay_stats(client: Any, env: Env, item: due.DueItem) -> bool:
    """A STATS safety item a dead request left behind: claim it (a conditional delete: a second tick, or a
    request that finished late, finds it gone) and add its counters and flows on the day they happened."""
    from retention.language.segments import Transition
    pk, sk = item.keys(env.due_shards)
    try:
        client.delete_item(TableName=env.due_table, Key=ddb.key(pk, sk), ConditionExpression="attribute_exists(pk)")
    except Exception as exc:
        if ddb.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    at = datetime.fromisoformat(str(item.payload["at"]))
    moves = [[*t, "replayed"][:4] for t in item.payload.get("transitions") or []]
    transitions = [Transition(group=g, segment=s, kind=k, at=at, reason="replayed") for g, s, k, _ in moves]
    if item.payload.get("events_ttl"):  # the moves' timeline events, as the dead request would have written them
        ttl = int(item.payload["events_ttl"])
        ddb.batch_write(client, env.events_table, puts=[
            timeline_item(item.customer_id, segment_event(item.customer_id, g, s, k, why, at, ttl), ttl)
            for g, s, k, why in moves])
    if transitions:
        segstats.record(client, env.messages_table, [transitions], at)
    for rule, step, variant, values in item.payload.get("counters") or []:
        add_counters(client, env.messages_table, rule, int(step), variant, values, at, item.customer_id)
    return True


def event_retention_seconds(settings: Any) -> int:
    return int(timedelta(days=settings.event_retention_days).total_seconds())

