"""Is the engine keeping up? Events stored per day, sends waiting in the send queue, messages in the
dead-letter queues (GET /admin/health, the console's overview).

Every number comes from a source that costs a handful of requests, whatever the shop's size: the day's
events counters (retention.analytics.counters, one ADD per ingestion request) and SQS GetQueueAttributes
(approximate, as SQS says: a few seconds behind)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from retention.core import clock
from retention.core.runtime import Deps

ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
              "ApproximateNumberOfMessagesDelayed")
EVENT_DAYS = 30


def queues_of(d: Deps) -> list[tuple[str, str, bool]]:
    """(name, URL, is a dead-letter queue) of every queue the function's environment names."""
    env = d.env
    named = (("send", env.send_queue_url, False), ("recompute", env.recompute_queue_url, False),
             ("send_dlq", env.send_dlq_url, True), ("recompute_dlq", env.recompute_dlq_url, True),
             ("feedback_dlq", env.feedback_dlq_url, True))
    return [(name, url, dlq) for name, url, dlq in named if url]


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(ATTRIBUTES)).get("Attributes") or {}
    return {"waiting": int(attrs.get("ApproximateNumberOfMessages") or 0),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible") or 0),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed") or 0)}


def event_counts(d: Deps, today: date, days: int = EVENT_DAYS) -> dict[str, Any]:
    from retention.analytics.counters import read_event_counts
    first = today - timedelta(days=days - 1)
    counts = read_event_counts(d.dynamodb, d.env.messages_table, first.isoformat(), today.isoformat())
    daily = [{"date": (first + timedelta(days=i)).isoformat(),
              "events": counts.get((first + timedelta(days=i)).isoformat(), 0)} for i in range(days)]
    return {"today": counts.get(today.isoformat(), 0), f"last_{days}_days": sum(counts.values()), "daily": daily}


def health(d: Deps) -> dict[str, Any]:
    """`{"events": {"today", "last_30_days", "daily": [{"date", "events"}]}, "pending_sends": n|null,
    "dead_letters": n|null, "queues": [{"queue", "dead_letter", "waiting", "in_flight", "delayed"} |
    {"queue", "dead_letter", "error"}]}`. A queue SQS did not answer for has an `error` and leaves its total
    null (unknown is not zero)."""
    queues: list[dict[str, Any]] = []
    for name, url, dlq in queues_of(d):
        try:
            queues.append({"queue": name, "dead_letter": dlq, **queue_depth(d.sqs, url)})
        except Exception as exc:  # shown as unknown, never as an empty queue
            queues.append({"queue": name, "dead_letter": dlq, "error": str(exc)[:200]})

    def total(rows: list[dict[str, Any]]) -> int | None:
        if not rows or any("error" in r for r in rows):
            return None
        return sum(r["waiting"] + r["in_flight"] + r["delayed"] for r in rows)

    return {"events": event_counts(d, clock.now().date()),
            "pending_sends": total([q for q in queues if q["queue"] == "send"]),
            "dead_letters": total([q for q in queues if q["dead_letter"]]),
            "queues": queues}
