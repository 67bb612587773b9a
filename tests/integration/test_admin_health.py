"""GET /admin/health and the console's "anything failing?": events per day from the ingestor's counters
(never a scan), pending sends from the send queue, dead letters from the DLQs (SQS GetQueueAttributes)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock

from tests.integration.test_admin_api import TOKEN, call, track
from tests.integration.test_console import Browser

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def api(stack: Any) -> Any:
    """The bare stack (no scenario library: these numbers need none, and applying it costs seconds a test)."""
    create_admin_token(stack.deps.config, "t", token=TOKEN)
    return stack


def test_events_are_counted_per_day_once_per_messageid_without_a_scan(api: Any) -> None:
    now = clock.now()
    api.ingest([track(f"u{i}", "Product Viewed", f"m{i}", now, product_id="p1") for i in range(5)])
    api.ingest([track("u9", "Button Clicked", "single", now)])
    api.ingest([track("u1", "Product Viewed", "m1", now, product_id="p1")])  # a retry: a duplicate
    clock.set_now(now - timedelta(days=3))
    api.ingest([track("u1", "Button Clicked", "old", now - timedelta(days=3))])
    clock.set_now(now)
    api.counter.reset()
    assert call("GET", "/admin/health", token=None)[0] == 401
    status, body = call("GET", "/admin/health")
    assert status == 200, body
    assert body["events"]["today"] == 6 and body["events"]["last_30_days"] == 7
    days = {d["date"]: d["events"] for d in body["events"]["daily"]}
    assert len(days) == 30 and days[(now - timedelta(days=3)).date().isoformat()] == 1
    assert api.counter.count("dynamodb", "Scan") == 0


def test_one_counter_write_per_ingestion_request(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.analytics import counters
    calls: list[int] = []
    real = counters.add_event_count
    monkeypatch.setattr(counters, "add_event_count", lambda c, t, n, *a: (calls.append(n), real(c, t, n, *a)))
    now = clock.now()
    api.ingest([track(f"b{i}", "Button Clicked", f"b{i}", now) for i in range(20)])
    assert calls == [20]  # the day's events counter: one ADD for the request, not one per event
    api.ingest([track(f"b{i}", "Button Clicked", f"b{i}", now) for i in range(20)])  # all duplicates
    assert calls == [20, 0]  # nothing to add: no write (add_event_count skips 0)


def test_pending_sends_and_dead_letters_come_from_the_queues(api: Any) -> None:
    sqs, env = api.deps.sqs, api.deps.env
    status, body = call("GET", "/admin/health")
    assert (body["pending_sends"], body["dead_letters"]) == (0, 0)
    assert {q["queue"] for q in body["queues"]} == {"send", "recompute", "send_dlq", "recompute_dlq", "feedback_dlq"}
    for i in range(3):
        sqs.send_message(QueueUrl=env.send_queue_url, MessageBody=json.dumps({"n": i}))
    sqs.send_message(QueueUrl=env.send_queue_url, MessageBody="{}", DelaySeconds=60)
    sqs.receive_message(QueueUrl=env.send_queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    sqs.send_message(QueueUrl=env.feedback_dlq_url, MessageBody="{}")
    sqs.send_message(QueueUrl=env.send_dlq_url, MessageBody="{}")
    status, body = call("GET", "/admin/health")
    send = next(q for q in body["queues"] if q["queue"] == "send")
    assert (send["waiting"], send["in_flight"], send["delayed"]) == (2, 1, 1)
    assert body["pending_sends"] == 4 and body["dead_letters"] == 2
    # a viewer may read it; the console's overview shows the same numbers
    viewer = create_admin_token(api.deps.config, "vera", role="viewer")
    b = Browser()
    b.sign_in(viewer)
    status, _, html = b.get("/console/")
    assert status == 200
    assert '<dd id="pending-sends">4</dd>' in html and 'id="dead-letters" class="error">2</dd>' in html
    assert "dead-letter queue" in html and "Nothing is failing." not in html


def test_a_queue_that_does_not_answer_is_unknown_not_zero(api: Any) -> None:
    from retention.core.runtime import deps
    d = deps()
    d.env = d.env.model_copy(update={"feedback_dlq_url": d.env.send_dlq_url + "-gone"})
    status, body = call("GET", "/admin/health")
    assert status == 200 and body["dead_letters"] is None and body["pending_sends"] == 0
    assert "error" in next(q for q in body["queues"] if q["queue"] == "feedback_dlq")
    b = Browser()
    b.sign_in(create_admin_token(api.deps.config, "ann", role="admin"))
    html = b.get("/console/")[2]
    assert '<dd id="dead-letters" class="">—</dd>' in html and "the number is unknown" in html
