"""Daily counters per rule, step and variant (entered, sent, delivered, opened, converted, revenue …),
kept with atomic ADDs as things happen, in the messages table:

  S#<rule>#<shard> / <YYYY-MM-DD>#<step>#<variant>

Sharded COUNTER_SHARDS ways so a burst does not heat one item; readers sum the shards (row conventions:
retention.analytics.stats). This module is the only one that builds these keys."""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

from retention.core import clock, ddb

COUNTER_SHARDS = 8


def counter_updates(rule: str, step: int, variant: str, counters: dict[str, float], at: datetime,
                    shard_hint: str) -> dict[str, Any]:
    """UpdateItem arguments adding to a daily counter item (row convention of retention.analytics.stats)."""
    shard = zlib.crc32(shard_hint.encode()) % COUNTER_SHARDS
    day = clock.iso(at)[:10]
    names: dict[str, str] = {"#d": "date", "#st": "step", "#v": "variant", "#r": "rule"}
    values: dict[str, Any] = {":d": {"S": day}, ":st": {"N": str(step)}, ":v": {"S": variant}, ":r": {"S": rule}}
    adds = []
    for i, (name, amount) in enumerate(sorted(counters.items())):
        names[f"#c{i}"] = name
        values[f":c{i}"] = ddb.value(round(amount, 2) if isinstance(amount, float) else amount)
        adds.append(f"#c{i} :c{i}")
    return {"Key": ddb.key(f"S#{rule}#{shard}", f"{day}#{step:04d}#{variant}"),
            "UpdateExpression": "SET #d = :d, #st = :st, #v = :v, #r = :r ADD " + ", ".join(adds),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


def add_counters(client: Any, table: str, rule: str, step: int, variant: str, counters: dict[str, float],
                 at: datetime, shard_hint: str) -> None:
    if counters:
        client.update_item(TableName=table, **counter_updates(rule, step, variant, counters, at, shard_hint))


def read_counters(client: Any, table: str, rule: str, date_from: str | None = None,
                  date_to: str | None = None) -> list[dict[str, Any]]:
    lo = (date_from or "0000-00-00") + "#"
    hi = (date_to or "9999-99-99") + "#~"
    rows: list[dict[str, Any]] = []
    for shard in range(COUNTER_SHARDS):
        rows.extend(ddb.query(client, table, f"S#{rule}#{shard}", sk_between=(lo, hi)))
    return rows


# ---- events received per day: what the console's overview shows as "events today / last 30 days" --------
#   EV#<shard> / <YYYY-MM-DD>   n (ADD), ttl
# One ADD per ingestion request (not per message): a Segment client's batch of 100 costs one write unit more,
# a single-message request one more. The day is the day the engine stored the events (not their timestamps:
# an imported history counts on the day it was imported).
EVENT_COUNT_DAYS = 400


def add_event_count(client: Any, table: str, count: int, at: datetime, shard_hint: str) -> None:
    if count <= 0:
        return
    shard = zlib.crc32(shard_hint.encode()) % COUNTER_SHARDS
    day = clock.iso(at)[:10]
    client.update_item(
        TableName=table, Key=ddb.key(f"EV#{shard}", day),
        UpdateExpression="SET #d = :d, #t = if_not_exists(#t, :t) ADD #n :n",
        ExpressionAttributeNames={"#d": "date", "#n": "n", "#t": "ttl"},
        ExpressionAttributeValues={":d": {"S": day}, ":n": {"N": str(int(count))},
                                   ":t": {"N": str(int(at.timestamp()) + EVENT_COUNT_DAYS * 86400)}})


def read_event_counts(client: Any, table: str, date_from: str, date_to: str) -> dict[str, int]:
    """Events stored per day (YYYY-MM-DD → n) between two dates, both included: one Query per shard."""
    out: dict[str, int] = {}
    for shard in range(COUNTER_SHARDS):
        for row in ddb.query(client, table, f"EV#{shard}", sk_between=(date_from, date_to)):
            out[str(row["sk"])] = out.get(str(row["sk"]), 0) + int(row.get("n") or 0)
    return dict(sorted(out.items()))
