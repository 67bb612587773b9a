"""The due index: every time-based decision is an item in an hour bucket, so the minute tick reads only
what came due (reads grow with due items, never with customers).

pk = <YYYY-MM-DDTHH>#<shard>, sk = <iso due at>#<kind>#<customer>#<ref>
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb

KINDS = ("JOURNEY", "SEGMENT", "SEND", "TRIGGER", "FANOUT", "PENDING", "EVENT")
"""FANOUT: a product event's fan-out not yet done; PENDING: a send-ledger claim to reconcile (the sweeper);
EVENT: an event the engine records for the customer when it comes due (payload {name, properties,
message_id}: a replenishment reminder, retention.products.replenish)."""


def bucket(at: datetime) -> str:
    return clock.iso(at)[:13]


def shard_of(customer_id: str, shards: int) -> int:
    return zlib.crc32(customer_id.encode()) % max(1, shards)


@dataclass
class DueItem:
    at: datetime
    kind: str
    customer_id: str
    ref: str
    payload: dict[str, Any] = field(default_factory=dict)

    def keys(self, shards: int) -> tuple[str, str]:
        return (f"{bucket(self.at)}#{shard_of(self.customer_id, shards)}",
                f"{clock.iso(self.at)}#{self.kind}#{self.customer_id}#{self.ref}")

    def to_item(self, shards: int) -> dict[str, Any]:
        # an item due in the past is due now: it must land in a bucket the tick has not passed yet
        if self.at < clock.now():
            self.at = clock.now()
        pk, sk = self.keys(shards)
        # expire long after it was due: an item the tick never saw must not live forever
        return {"pk": pk, "sk": sk, "kind": self.kind, "customer_id": self.customer_id, "ref": self.ref,
                "payload": json.dumps(self.payload, default=str), "at": clock.iso(self.at),
                "ttl": int((self.at + timedelta(days=30)).timestamp())}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> DueItem:
        return cls(at=clock.parse_iso(item["at"]), kind=item["kind"], customer_id=item["customer_id"],
                   ref=item["ref"], payload=json.loads(item.get("payload") or "{}"))


def put(client: Any, table: str, items: list[DueItem], shards: int) -> int:
    if not items:
        return 0
    return ddb.batch_write(client, table, puts=[i.to_item(shards) for i in items])


def delete(client: Any, table: str, items: list[DueItem], shards: int) -> int:
    if not items:
        return 0
    return ddb.batch_write(client, table, deletes=[i.keys(shards) for i in items])


def read_due(client: Any, table: str, since: datetime, now: datetime, shards: int,
             max_hours: int = 24 * 45) -> Iterator[DueItem]:
    """Items due at or before `now`, from the hour of `since` on. Buckets before `since` were emptied
    by earlier ticks; catch-up after an outage walks the missed hours (bounded by max_hours)."""
    start = max(since, now - timedelta(hours=max_hours)).replace(minute=0, second=0, microsecond=0)
    upper = clock.iso(now) + "~"
    hour = start
    while hour <= now:
        b = bucket(hour)
        for s in range(shards):
            for item in ddb.query(client, table, f"{b}#{s}", sk_lte=upper):
                yield DueItem.from_item(item)
        hour += timedelta(hours=1)
