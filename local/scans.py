"""Dev-only reads the Lambda layer must not ship: whole-table scans for the local runtime's virtual clock
and a synchronous recompute for the bench and tests. None of this runs in a deployed function."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from retention.core import clock
from retention.core.runtime import Deps
from retention.schedule.recompute import Recompute, RecomputeResult, WorkItem


def next_due_at(client: Any, table: str) -> datetime | None:
    """Earliest item in the whole due index (a scan: where the virtual clock may jump to next)."""
    best: str | None = None
    kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": "#a",
                              "ExpressionAttributeNames": {"#a": "at"}}
    while True:
        resp = client.scan(**kwargs)
        for raw in resp.get("Items", []):
            at = raw["at"]["S"]
            if best is None or at < best:
                best = at
        if not resp.get("LastEvaluatedKey"):
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return clock.parse_iso(best) if best else None


def recompute_all(d: Deps, reason: str, total: int = 4) -> RecomputeResult:
    """The recompute fan-out's work done in this process, segment by segment (no queue)."""
    out = RecomputeResult()
    worker = Recompute(d)
    for seg in range(total):
        item = WorkItem(segment=seg, total=total, reason=reason)
        while True:
            result, last_key = worker.work_inline(item)
            out.profiles += result.profiles
            out.transitions += result.transitions
            if last_key is None:
                break
            item = item.model_copy(update={"start_key": last_key})
    return out
