"""Messages between the journey engine and the sender, the send ledger and the daily counters."""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from retention.core import clock, ddb

COUNTER_SHARDS = 8


class SendRequest(BaseModel):
    """One message to send: exactly once per (customer, rule, entry, step)."""

    customer_id: str
    rule: str
    entry: str
    step: int
    channel: Literal["email", "sms", "preferred"]
    template: str
    variant: str = "default"
    transactional: bool = False
    event: dict[str, Any] = Field(default_factory=dict)
    not_before: str | None = None
    coupon: str | None = None

    @property
    def ledger_id(self) -> str:
        raw = f"{self.customer_id}|{self.rule}|{self.entry}|{self.step}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def ledger_key(ledger_id: str) -> tuple[str, str]:
    return (f"L#{ledger_id}", "L")


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


def suppression_key(address: str, salt: str) -> tuple[str, str]:
    digest = hashlib.sha256((salt + address.strip().lower()).encode()).hexdigest()
    return (f"SUP#{digest}", "SUP")
