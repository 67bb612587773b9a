"""Segment sizes per day and the flows between lifecycle segments, kept as transitions happen."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retention.admin.people import create_admin_token
from retention.analytics import segstats
from retention.core import clock


def order(uid: str, n: int) -> dict[str, Any]:
    return {"type": "track", "userId": uid, "event": "Order Completed", "messageId": f"{uid}-o{n}",
            "properties": {"order_id": f"{uid}-o{n}", "revenue": 100}}


def test_sizes_and_flows_follow_the_customers(library_stack: Any, now: Any) -> None:
    s = library_stack
    s.ingest([{"type": "identify", "userId": u, "messageId": f"id-{u}", "traits": {"email": f"{u}@x.io"}}
              for u in ("a", "b", "c")])  # day 1: three registered, no orders
    clock.set_now(now + timedelta(days=1))
    s.ingest([order("a", 1), order("b", 1)])  # day 2: two first orders → newbie
    clock.set_now(now + timedelta(days=2))
    s.ingest([order("a", 2), order("a", 3)])  # day 3: a third order → loyal
    client, table = s.deps.dynamodb, s.deps.env.messages_table
    sizes, flows = segstats.history(client, table, "lifecycle", now.date(), (now + timedelta(days=2)).date())
    by_day: dict[str, dict[str, int]] = {}
    for row in sizes:
        by_day.setdefault(row["date"], {})[row["segment"]] = row["count"]
    d0, d1, d2 = (str((now + timedelta(days=i)).date()) for i in range(3))
    assert by_day[d0] == {"promo_registered": 3}
    assert by_day[d1] == {"promo_registered": 1, "newbie": 2}
    assert by_day[d2]["loyal"] == 1 and by_day[d2]["newbie"] == 1
    moved = {(f["from"], f["to"]): f["count"] for f in flows}
    assert moved[("promo_registered", "newbie")] == 2
    assert moved[(None, "promo_registered")] == 3
    report = segstats.funnel_report(client, table, d0, d2)
    assert report["stages"] and report["flows"]


def test_funnel_route(library_stack: Any, now: Any) -> None:
    import json

    from tests.support import LambdaContext, load_handler
    s = library_stack
    create_admin_token(s.deps.config, "t", token="tok")
    s.ingest([order("f1", 1)])
    mod = load_handler("admin_api", "funnel")
    event = {"resource": "/admin/{proxy+}", "path": "/admin/stats/funnel", "httpMethod": "GET",
             "headers": {"Authorization": "Bearer tok"}, "queryStringParameters": {"from": str(now.date())},
             "requestContext": {"stage": "t"}, "body": None, "isBase64Encoded": False}

    resp = mod.lambda_handler(event, LambdaContext("admin_api"))
    body = json.loads(resp["body"])
    assert resp["statusCode"] == 200, body
    assert any(stage["count"] for stage in body["stages"])
    bad = mod.lambda_handler({**event, "queryStringParameters": {"from": "yesterday"}}, LambdaContext("admin_api"))
    assert bad["statusCode"] == 400
