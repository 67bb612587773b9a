"""Full segment recompute after a definition change, and nightly as a safety net: a DynamoDB parallel scan
split into segments, one SQS work item per segment, each worker re-evaluating its customers through the
engine (so transitions emit events and start journeys as on any other path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from retention.core import clock
from retention.core.runtime import Deps
from retention.ingestion.ingestor import definitions
from retention.messaging.rendering import Library
from retention.schedule.tick import Ticker

DEFAULT_SEGMENTS = 16


class WorkItem(BaseModel):
    segment: int
    total: int
    reason: str = "definition_change"
    start_key: dict[str, Any] | None = None
    done: int = 0  # customers of this scan segment already handled (broadcast pacing)


@dataclass
class RecomputeResult:
    profiles: int = 0
    transitions: int = 0
    continued: bool = False


class Recompute:
    def __init__(self, d: Deps) -> None:
        self.d = d

    def fan_out(self, reason: str, total: int = DEFAULT_SEGMENTS) -> int:
        items = [WorkItem(segment=i, total=total, reason=reason) for i in range(total)]
        queue_url = self.d.env.queue("recompute")  # unset: an error, never a recompute silently skipped
        for start in range(0, len(items), 10):
            self.d.sqs.send_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i.segment), "MessageBody": i.model_dump_json()} for i in items[start:start + 10]])
        return len(items)

    def work(self, item: WorkItem) -> RecomputeResult:
        """One page of one scan segment; the rest is re-queued so a worker never runs past its timeout."""
        result, last_key = self.work_inline(item)
        if last_key:
            nxt = item.model_copy(update={"start_key": last_key, "done": item.done})
            self.d.sqs.send_message(QueueUrl=self.d.env.queue("recompute"), MessageBody=nxt.model_dump_json())
            result.continued = True
        return result

    def work_inline(self, item: WorkItem) -> tuple[RecomputeResult, dict[str, Any] | None]:
        from retention.journeys.engine import Engine
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
        if item.reason.startswith("broadcast|"):
            self._broadcast(item, ids)
            return result, resp.get("LastEvaluatedKey")
        for cid in ids:
            result.transitions += ticker.recheck(engine, cid, now)
        return result, resp.get("LastEvaluatedKey")

    def _broadcast(self, item: WorkItem, ids: list[str]) -> None:
        """TRIGGER due items for one scan page, spread over time so the whole send stays under the rule's
        rate (each scan segment takes its share of the per-minute budget)."""
        from datetime import timedelta

        from retention.schedule import due
        _, rule_id, fired = item.reason.split("|", 2)
        rule = Library(self.d.config).rules().get(rule_id)
        if rule is None:
            return
        # a fan-out that runs late (a tick catching up) is paced from now, not from the missed firing
        start = max(clock.parse_iso(fired), clock.now())
        per_segment = rule.trigger.rate_per_minute / item.total
        offset = item.done
        items = []
        for i, cid in enumerate(ids):
            at = start + timedelta(minutes=(offset + i) / per_segment)
            items.append(due.DueItem(at=at, kind="TRIGGER", customer_id=cid, ref=f"{rule_id}|{fired}",
                                     payload={"rule": rule_id, "name": rule_id, "properties": {"broadcast": fired}}))
        due.put(self.d.dynamodb, self.d.env.due_table, items, self.d.env.due_shards)
        item.done = offset + len(ids)


