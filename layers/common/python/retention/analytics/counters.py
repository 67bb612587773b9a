"""Daily counters per rule, step and variant (entered, sent, delivered, opened, converted, revenue …),
kept with atomic ADDs as things happen, in the messages table:

  S#<rule>#<shard> / <YYYY-MM-DD>#<step>#<variant>

Sharded COUNTER_SHARDS ways so a burst does not heat one item; readers sum the shards (row conventions:
retention.analytics.stats). This module is the only one that builds these keys.

send_message sums its ADDs per SQS batch (CounterBatch): one UpdateItem per distinct counter row of the
batch, written when the batch is done. (The feedback function adds one by one: SNS invokes it with one
record at a time, so there is nothing to sum.)"""

from __future__ import annotations

import logging
import zlib
from datetime import datetime
from typing import Any

from retention.core import clock, ddb

log = logging.getLogger(__name__)

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


class CounterBatch:
    """Counter ADDs summed in memory per counter row (rule, step, variant, day) and written with one UpdateItem
    per row: N sends of one step in a batch cost one write instead of N.

    Outside a batch (`deferred` False: a direct caller, a test) every `add` is written at once, as
    `add_counters` does. Inside one (Sender.batch), `flush` writes them when the batch is done, also when
    some of its records failed (the ones that succeeded count).

    Guarantee: at most once, as before. The caller adds only after the write that makes the thing count
    once (the ledger's claim, then `sent` or the reason); a crash before the flush loses the
    counts of the batch so far (up to a batch instead of one message) and never counts anything twice: a
    redelivered record finds its ledger already written and adds nothing. A sum goes to the shard of its
    first record's hint (the readers sum every shard)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self.deferred = False
        self._rows: dict[tuple[str, int, str, str], tuple[datetime, str, dict[str, float]]] = {}

    def add(self, rule: str, step: int, variant: str, counters: dict[str, float], at: datetime,
            shard_hint: str) -> None:
        if not counters:
            return
        _, _, sums = self._rows.setdefault((rule, step, variant, clock.iso(at)[:10]), (at, shard_hint, {}))
        for name, amount in counters.items():
            sums[name] = sums.get(name, 0) + amount
        if not self.deferred:
            self.flush()

    def pending(self) -> dict[tuple[str, int, str, str], dict[str, float]]:
        """What is summed and not written yet: {(rule, step, variant, day): {counter: amount}}."""
        return {key: dict(sums) for key, (_, _, sums) in self._rows.items()}

    def flush(self) -> int:
        """Write every summed row (one UpdateItem each); returns the number written. Every row is tried; the
        first error is raised after the others were written (a row that failed is lost: at most once)."""
        rows, self._rows = self._rows, {}
        error: Exception | None = None
        written = 0
        for (rule, step, variant, _), (at, hint, sums) in rows.items():
            try:
                self.client.update_item(TableName=self.table,
                                        **counter_updates(rule, step, variant, sums, at, hint))
                written += 1
            except Exception as exc:
                log.warning("counters lost: %s step %s %s %s", rule, step, variant, sums, exc_info=True)
                error = error or exc
        if error is not None:
            raise error
        return written


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
