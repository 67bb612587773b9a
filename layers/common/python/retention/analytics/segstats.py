"""Segment sizes and flows, kept as things happen (atomic ADD), for the funnel and the CJM view.

messages table (each sharded SHARDS ways so an import or a burst does not heat one item; reads sum them):
  SEGSIZE#<shard> / <group>             running size per segment (ADD ±1 on each transition)
  SEGDAY#<YYYY-MM-DD>#<shard> / <group> entered__<seg>, exited__<seg>, flow__<from>__<to> for that day
Past daily sizes are derived backwards from the running size and the per-day net changes, so no
snapshot job and no scan is needed."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from retention.core import clock, ddb

SEP = "__"
SHARDS = 8


def record(client: Any, table: str, per_customer: list[list[Any]], now: datetime) -> int:
    """Two updates per changed group for the whole call (one customer or a batch of them): the running
    sizes and the day's entries, exits and flows. Flows pair a customer's own exit and entry."""
    size: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    daily: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for transitions in per_customer:
        by_group: dict[str, list[Any]] = defaultdict(list)
        for t in transitions:
            by_group[t.group].append(t)
        for group, items in by_group.items():
            exited = [t.segment for t in items if t.kind == "exited"]
            entered = [t.segment for t in items if t.kind == "entered"]
            for seg in entered:
                size[group][seg] += 1
                daily[group][f"entered{SEP}{seg}"] += 1
            for seg in exited:
                size[group][seg] -= 1
                daily[group][f"exited{SEP}{seg}"] += 1
            if len(exited) <= 1 and len(entered) <= 1:  # an exclusive group: one move
                src = exited[0] if exited else ""
                dst = entered[0] if entered else ""
                daily[group][f"flow{SEP}{src}{SEP}{dst}"] += 1
    day = clock.iso(now)[:10]
    shard = random.randrange(SHARDS)  # spreading writes, not security
    writes = 0
    for group in set(size) | set(daily):
        for key, counters in (((f"SEGSIZE#{shard}", group), size[group]),
                              ((f"SEGDAY#{day}#{shard}", group), daily[group])):
            counters = {k: v for k, v in counters.items() if v}
            if not counters:
                continue
            names = {f"#a{i}": k for i, k in enumerate(counters)}
            vals = {f":a{i}": {"N": str(v)} for i, v in enumerate(counters.values())}
            client.update_item(TableName=table, Key=ddb.key(*key),
                               UpdateExpression="ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(counters))),
                               ExpressionAttributeNames=names, ExpressionAttributeValues=vals)
            writes += 1
    return writes


def history(client: Any, table: str, group: str, date_from: date, date_to: date
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(daily sizes [{date, segment, count}], flows [{date, from, to, count}]) for one group."""
    sizes = _summed(client, table, [(f"SEGSIZE#{s}", group) for s in range(SHARDS)])
    today = clock.now().date()
    days: dict[date, dict[str, int]] = {}
    day = today
    start = min(date_from, today)
    while day >= start:
        days[day] = _summed(client, table, [(f"SEGDAY#{day.isoformat()}#{s}", group) for s in range(SHARDS)])
        day -= timedelta(days=1)
    daily_sizes: list[dict[str, Any]] = []
    flows: list[dict[str, Any]] = []
    running = dict(sizes)
    day = today
    while day >= start:
        row = days[day]
        if day <= date_to:
            daily_sizes += [{"date": day.isoformat(), "segment": seg, "count": n} for seg, n in running.items() if n]
            for key, n in row.items():
                if key.startswith(f"flow{SEP}"):
                    _, src, dst = key.split(SEP, 2)
                    flows.append({"date": day.isoformat(), "from": src or None, "to": dst or None, "count": n})
        # sizes at the end of the previous day: undo this day's changes
        for key, n in row.items():
            kind, _, seg = key.partition(SEP)
            if kind == "entered":
                running[seg] = running.get(seg, 0) - n
            elif kind == "exited":
                running[seg] = running.get(seg, 0) + n
        day -= timedelta(days=1)
    daily_sizes.reverse()
    return daily_sizes, flows


def _summed(client: Any, table: str, keys: list[tuple[str, str]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in ddb.batch_get(client, table, keys).values():
        for k, v in item.items():
            if k not in ("pk", "sk"):
                out[k] += int(v)
    return dict(out)


def funnel_report(client: Any, table: str, date_from: str | None, date_to: str | None) -> dict[str, Any]:
    from retention.analytics.stats import engagement_score, funnel  # noqa: F401  (engagement is per customer)
    today = clock.now().date()
    end = date.fromisoformat(date_to) if date_to else today
    start = date.fromisoformat(date_from) if date_from else end - timedelta(days=30)
    sizes: list[dict[str, Any]] = []
    flows: list[dict[str, Any]] = []
    for group in ("lifecycle", "potential", "flags", "nps_group"):
        s, f = history(client, table, group, start, end)
        sizes += s
        if group == "lifecycle":
            flows += f
    report = funnel(sizes, flows)
    report["from"], report["to"] = start.isoformat(), end.isoformat()
    return report
