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
