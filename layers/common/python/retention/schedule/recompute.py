"""Full segment recompute after a definition change, and nightly as a safety net: a DynamoDB parallel scan
split into segments, one SQS work item per segment, each worker re-evaluating its customers through the
engine (so transitions emit events and start journeys as on any other path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retention.core import clock
from retention.core.runtime import Deps
from retention.journeys.catalogue import definitions
from retention.journeys.engine import Engine
from retention.schedule import broadcasts, due
from retention.schedule.broadcasts import DEFAULT_SEGMENTS, Broadcast, WorkItem
from retention.schedule.tick import Ticker

__all__ = ["Broadcast", "Recompute", "RecomputeResult", "WorkItem"]


@dataclass
class RecomputeResult:
    profiles: int = 0
    transitions: int = 0
    continued: bool = False


class Recompute:
    def __init__(self, d: Deps) -> None:
        self.d = d

    def fan_out(self, reason: str = "definition_change", total: int = DEFAULT_SEGMENTS, *,
                broadcast: Broadcast | None = None) -> int:
        return broadcasts.fan_out(self.d.sqs, self.d.env.queue("recompute"), reason=reason, broadcast=broadcast,
                                  total=total)

    def work(self, item: WorkItem) -> RecomputeResult:
        """One page of one scan segment; the rest is re-queued so a worker never runs past its timeout."""
        result, last_key = self.work_inline(item)
        if last_key:
            nxt = item.model_copy(update={"start_key": last_key, "done": item.done})
            self.d.sqs.send_message(QueueUrl=self.d.env.queue("recompute"), MessageBody=nxt.model_dump_json())
            result.continued = True
        return result

    def work_inline(self, item: WorkItem) -> tuple[RecomputeResult, dict[str, Any] | None]:
        result = RecomputeResult()
        engine = Engine(definitions(self.d.config))
        ticker = Ticker(ddb_client=self.d.dynamodb, sqs=self.d.sqs, env=self.d.env, config=self.d.config)
        kwargs: dict[str, Any] = {"TableName": self.d.env.profiles_table, "Segment": item.segment,
                                  "TotalSegments": item.total, "Limit": 500, "FilterExpression": "sk = :p",
                                  "ExpressionAttributeValues": {":p": {"S": "P"}}, "ProjectionExpression": "pk"}
        if item.start_key:
            kwargs["ExclusiveStartKey"] = item.start_key
        resp = self.d.dynamodb.scan(**kwargs)
        now = clock.now()
        ids = [raw["pk"]["S"][2:] for raw in resp.get("Items", [])]
        result.profiles = len(ids)
        if item.broadcast is not None:
            due.put(self.d.dynamodb, self.d.env.due_table, broadcasts.pace(self.d.config, item, ids, clock.now()),
                    self.d.env.due_shards)
            return result, resp.get("LastEvaluatedKey")
        for cid in ids:
            result.transitions += ticker.recheck(engine, cid, now)
        return result, resp.get("LastEvaluatedKey")
