"""Broadcasts (rules with a `schedule` trigger) and the recompute queue's work item.

The tick notices that a rule's cron fired (`fire_due`) and fans the audience out through the recompute
queue: one `WorkItem` per parallel-scan segment, carrying a typed `Broadcast` (rule and firing). Each
recompute worker turns its page of customers into TRIGGER due items spread over time (`pace`), so the
whole send stays under the rule's rate. The journey entry id is derived from the firing, so a repeated
fan-out starts nobody twice.

This module imports neither the tick nor the recompute worker: both import it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, model_validator

from retention.core import clock
from retention.core.config import ConfigStore
from retention.journeys.catalogue import Catalogue
from retention.schedule import due

DEFAULT_SEGMENTS = 16
BROADCAST_REASON = "broadcast"


class Broadcast(BaseModel):
    """One firing of a scheduled rule."""

    model_config = {"defer_build": True}  # built at the first broadcast, not at every tick's cold start

    rule: str
    fired: datetime

    @property
    def ref(self) -> str:
        """The due items' ref (and so the journey entry's trigger key): one per rule and firing."""
        return f"{self.rule}|{clock.iso(self.fired)}"


class WorkItem(BaseModel):
    """One parallel-scan segment of the profiles table: re-evaluate its customers' segments, or, with a
    `broadcast`, schedule that broadcast for them."""

    model_config = {"defer_build": True}

    segment: int
    total: int
    reason: str = "definition_change"
    broadcast: Broadcast | None = None
    start_key: dict[str, Any] | None = None
    done: int = 0  # customers of this scan segment already handled (broadcast pacing)

    @model_validator(mode="before")
    @classmethod
    def _legacy_reason(cls, data: Any) -> Any:
        """A message queued before the typed broadcast (`reason = "broadcast|<rule>|<iso>"`) still works."""
        if isinstance(data, dict) and not data.get("broadcast") and str(data.get("reason", "")).startswith(
                f"{BROADCAST_REASON}|"):
            _, rule, fired = str(data["reason"]).split("|", 2)
            data = {**data, "reason": BROADCAST_REASON, "broadcast": {"rule": rule, "fired": fired}}
        return data


def fan_out(sqs: Any, queue_url: str, *, reason: str, broadcast: Broadcast | None = None,
            total: int = DEFAULT_SEGMENTS) -> int:
    """One work item per scan segment on the recompute queue."""
    items = [WorkItem(segment=i, total=total, reason=BROADCAST_REASON if broadcast else reason, broadcast=broadcast)
             for i in range(total)]
    for start in range(0, len(items), 10):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i.segment), "MessageBody": i.model_dump_json()} for i in items[start:start + 10]])
    return len(items)


def scheduled_rules(config: ConfigStore) -> list[Any]:
    return [r for r in Catalogue(config).enabled_rules() if r.trigger.kind == "schedule"]


def fire_due(config: ConfigStore, sqs: Any, queue_url: str, since: datetime, now: datetime) -> int:
    """Scheduled rules whose cron fired in (since, now]: each fans its audience out. Returns how many fired."""
    fired = 0
    for rule in scheduled_rules(config):
        at = rule.trigger.next_at(since)
        if at is None or at > now:
            continue
        fan_out(sqs, queue_url, reason=BROADCAST_REASON, broadcast=Broadcast(rule=rule.id, fired=at))
        fired += 1
    return fired


def next_broadcast_at(config: ConfigStore, after: datetime) -> datetime | None:
    """The next firing of an enabled scheduled rule after `after` (for a virtual clock that must stop there)."""
    times = [t for r in scheduled_rules(config) if (t := r.trigger.next_at(after)) is not None]
    return min(times) if times else None


def pace(config: ConfigStore, item: WorkItem, customer_ids: list[str], now: datetime) -> list[due.DueItem]:
    """TRIGGER due items for one scan page, spread over time so the whole send stays under the rule's rate
    (each scan segment takes its share of the per-minute budget); `item.done` moves past the page."""
    assert item.broadcast is not None
    broadcast = item.broadcast
    rule = Catalogue(config).rules().get(broadcast.rule)
    if rule is None:
        return []
    fired = clock.iso(broadcast.fired)
    # a fan-out that runs late (a tick catching up) is paced from now, not from the missed firing
    start = max(broadcast.fired, now)
    per_segment = rule.trigger.rate_per_minute / item.total
    offset = item.done
    items = [due.DueItem(at=start + timedelta(minutes=(offset + i) / per_segment), kind="TRIGGER", customer_id=cid,
                         ref=broadcast.ref,
                         payload={"rule": broadcast.rule, "name": broadcast.rule, "properties": {"broadcast": fired}})
             for i, cid in enumerate(customer_ids)]
    item.done = offset + len(customer_ids)
    return items
