"""The demo shop generator (local/demo.py): the plan is deterministic and realistic, and posting it over
HTTP through the real ingestion handler (on moto) yields the profiles, KPIs and segments it describes."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock

from local import demo
from tests.support import LambdaContext, Stack, load_handler

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
WRITE_KEY = "demo-write-key"
ADMIN_TOKEN = "demo-admin-token"
MAX_MESSAGE_BYTES = 32 * 1024


# ---- the plan (pure) ---------------------------------------------------------------------------------------


def messages_of(plan: demo.Plan) -> list[dict[str, Any]]:
    return [m for customer in plan.customers for m in customer]


def test_the_same_seed_gives_the_same_shop() -> None:
    first = demo.build(customers=50, months=2, seed=3, now=NOW)
    again = demo.build(customers=50, months=2, seed=3, now=NOW)
    other = demo.build(customers=50, months=2, seed=4, now=NOW)
    assert first.customers == again.customers and first.nps_answers == again.nps_answers
    assert first.customers != other.customers
    # a customer's life does not depend on how many customers there are
    assert demo.build(customers=10, months=2, seed=3, now=NOW).customers == first.customers[:10]


def test_the_plan_looks_like_a_shop() -> None:
    plan = demo.build(customers=400, months=4, seed=7, now=NOW)
    messages = messages_of(plan)
    start = NOW - timedelta(days=120)
    ids = [m["messageId"] for m in messages]
    assert len(ids) == len(set(ids))
    assert all(start <= clock.parse_iso(m["timestamp"]) <= NOW for m in messages)
    assert all(len(json.dumps(m, ensure_ascii=False).encode()) < MAX_MESSAGE_BYTES for m in messages)
    assert {m["type"] for m in messages} == {"identify", "track"}
    for customer in plan.customers:
        assert customer[0]["type"] == "identify" and customer[0]["traits"]["email"].endswith("@demo.example.com")
        assert len({m["userId"] for m in customer}) == 1
        assert [m["timestamp"] for m in customer] == sorted(m["timestamp"] for m in customer)
    events = Counter(m.get("event") for m in messages if m["type"] == "track")
    # NPS answers go through a survey route, never as raw events
    assert "NPS Answered" not in events
    for name in ("Signed Up", "Product Viewed", "Product Added", "Checkout Started", "Order Completed",
                 "Order Refunded", "Order Cancelled", "Order Shipped", "Order Ready for Pickup", "Order Picked Up",
                 "Order Unclaimed", "Complaint Opened", "Complaint Resolved"):
        assert events[name] > 0, name
    orders = [m["properties"] for m in messages if m.get("event") == "Order Completed"]
    assert {o["shop"] for o in orders} == {"msk-1", "spb-1", "ekb-1"}
    assert {o["currency"] for o in orders} == {"RUB"}
    for order in orders:
        assert order["revenue"] == sum(p["price"] * p["quantity"] for p in order["products"]) > 0
    # consent about 70 % (email), refunds about 3 %, some pickups never claimed
    identified = plan.stats["customers"]
    assert 0.6 < plan.stats["email_consent"] / identified < 0.8
    assert 0.01 < events["Order Refunded"] / len(orders) < 0.06
    assert 0 < events["Order Unclaimed"] < events["Order Ready for Pickup"] * 0.15
    # storage at the pickup point: from half an hour to six days
    ready: dict[str, datetime] = {}
    storage = []
    for m in messages:
        if m.get("event") == "Order Ready for Pickup":
            ready[m["properties"]["order_id"]] = clock.parse_iso(m["timestamp"])
        elif m.get("event") == "Order Picked Up":
            hours = (clock.parse_iso(m["timestamp"]) - ready[m["properties"]["order_id"]]).total_seconds() / 3600
            storage.append(hours)
    assert storage and min(storage) >= 0.5 and max(storage) <= 144.5
    assert plan.revenue.keys() == {"msk-1", "spb-1", "ekb-1"}
    # answers for the webhook: one per customer per 90 days, scores 0–10, dated in the past
    assert plan.nps_answers
    assert all(0 <= a["score"] <= 10 and clock.parse_iso(a["timestamp"]) <= NOW for a in plan.nps_answers)
    per_customer = Counter(a["userId"] for a in plan.nps_answers)
    assert max(per_customer.values()) <= 2  # 120 days: at most two 90-day windows


def test_batches_keep_each_customer_together() -> None:
    def person(uid: str, n: int) -> list[dict[str, Any]]:
        return [{"userId": uid, "messageId": f"{uid}-{i}"} for i in range(n)]

    jobs = demo.batches([person("a", 60), person("b", 30), person("c", 20), [], person("d", 250), person("e", 1)])
    assert [[len(b) for b in job] for job in jobs] == [[90], [100, 100, 50], [21]]
    plan = demo.build(customers=50, months=2, seed=3, now=NOW)
    jobs = demo.batches(plan.customers)
    assert all(len(batch) <= demo.BATCH_SIZE for job in jobs for batch in job)
    sent = [m for job in jobs for batch in job for m in batch]
    assert sent == messages_of(plan)
    for job in jobs:
        for batch in job:
            customers = [m["userId"] for m in batch]
            # a customer appears in one contiguous run: one profile write per batch
            assert len(set(customers)) == len([c for i, c in enumerate(customers) if i == 0 or customers[i - 1] != c])


# ---- posting it through the real handlers ----------------------------------------------------------------------


def _load(name: str) -> ModuleType:
    return load_handler(name, "demo")


ROUTES = {("POST", "/v1/batch"): "track_event", ("POST", "/v1/webhooks/nps"): "nps_webhook",
          ("POST", "/admin/webhooks/nps/rotate"): "admin_api"}


class Api:
    """A tiny API Gateway: HTTP on 127.0.0.1 → the real handlers with REST proxy events, one at a time."""

    def __init__(self, handlers: dict[str, ModuleType]) -> None:
        self.handlers = handlers
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/_local/clock":
                    self._reply(200, {"Content-Type": "application/json"},
                                json.dumps({"now": clock.iso(clock.now())}).encode())
                else:
                    self._reply(404, {"Content-Type": "application/json"}, b'{"code":"not_found","message":"-"}')

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                function = ROUTES.get(("POST", parts.path))
                if function is None:
                    self._reply(404, {"Content-Type": "application/json"}, b'{"code":"not_found","message":"-"}')
                    return
                headers = dict(self.headers.items())
                query = dict(parse_qsl(parts.query))
                event = {"resource": parts.path, "path": parts.path, "httpMethod": "POST", "headers": headers,
                         "multiValueHeaders": {k: [v] for k, v in headers.items()},
                         "queryStringParameters": query or None, "multiValueQueryStringParameters": None,
                         "pathParameters": None, "stageVariables": None,
                         "requestContext": {"resourcePath": parts.path, "httpMethod": "POST", "path": parts.path,
                                            "stage": "test", "requestId": "r", "identity": {"sourceIp": "127.0.0.1"}},
                         "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
                with api.lock:
                    api.calls[parts.path] += 1
                    resp = api.handlers[function].lambda_handler(event, LambdaContext())
                raw = resp.get("body") or ""
                out = base64.b64decode(raw) if resp.get("isBase64Encoded") else raw.encode()
                self._reply(int(resp["statusCode"]), dict(resp.get("headers") or {}), out)

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Api:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(library_stack: Stack) -> Iterator[Api]:
    library_stack.deps.config.create_source("demo", key=WRITE_KEY)
    create_admin_token(library_stack.deps.config, "demo", ADMIN_TOKEN)
    handlers = {name: _load(name) for name in ("track_event", "nps_webhook", "admin_api")}
    with Api(handlers) as running:
        yield running


def expected_kpis(customer: list[dict[str, Any]]) -> dict[str, Any]:
    """orders_count and revenue_total as DESIGN §4 defines them, from the plan's messages."""
    orders: dict[str, dict[str, Any]] = {}
    refunds: dict[str, float] = defaultdict(float)
    for m in customer:
        props = m.get("properties") or {}
        if m.get("event") == "Order Completed":
            orders[props["order_id"]] = {"revenue": props["revenue"], "status": "completed", "shop": props["shop"]}
        elif m.get("event") == "Order Cancelled":
            orders[props["order_id"]]["status"] = "cancelled"
        elif m.get("event") == "Order Refunded":
            refunds[props["order_id"]] += props["revenue"]
    counted = [(oid, o) for oid, o in orders.items()
               if o["status"] == "completed" and refunds[oid] < o["revenue"]]
    return {"orders_count": len(counted),
            "revenue_total": round(sum(o["revenue"] - refunds[oid] for oid, o in counted), 2),
            "distinct_shops_count": len({o["shop"] for _, o in counted})}


def test_generate_posts_the_shop_through_the_ingestion_api(api: Api, library_stack: Stack) -> None:
    s = library_stack
    seen: list[tuple[int, int]] = []
    result = demo.generate(api.url, WRITE_KEY, customers=50, months=2, seed=3, now=NOW,
                           progress=lambda done, total: seen.append((done, total)), admin_token=ADMIN_TOKEN)
    plan = demo.build(customers=50, months=2, seed=3, now=NOW)
    assert result["customers"] == 50 and result["events"] == plan.events
    assert result["accepted"] == plan.events and result["rejected_count"] == 0, result["rejected"]
    assert result["requests"] == sum(len(job) for job in demo.batches(plan.customers))
    assert api.calls["/v1/batch"] == result["requests"]
    assert result["now"] == "2026-11-24T09:00:00.000Z" and result["shops"] == ["msk-1", "spb-1", "ekb-1"]
    # progress counts every message and NPS answer, ending at the total
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (plan.events + len(plan.nps_answers),) * 2
    # every customer's profile holds what the plan says
    revenue = 0.0
    for customer in plan.customers:
        uid = customer[0]["userId"]
        profile = s.profile(uid)
        want = expected_kpis(customer)
        assert {k: profile.kpis[k] for k in want} == want, uid
        revenue += want["revenue_total"]
        consent = customer[0]["traits"].get("email_consent")
        unsubscribed = any(m["type"] == "identify" and m["traits"].get("email_consent", {}).get("granted") is False
                           for m in customer[1:])
        assert bool(profile.consent.get("email") and profile.consent["email"].granted) == (
            bool(consent) and not unsubscribed), uid
        assert profile.segments.get("lifecycle"), uid
    assert round(revenue, 2) == round(sum(result["revenue"].values()), 2)
    storage = [s.profile(c[0]["userId"]).kpis["average_pickup_storage_hours"] for c in plan.customers]
    assert any(h is not None and h > 0 for h in storage)
    # NPS answers went through the signed webhook: in the report, with their shops
    from retention.surveys.answers import Surveys
    assert result["nps_recorded"] == len(plan.nps_answers) > 0
    report = Surveys(s.deps).report("2026-01-01", "2026-11-24")
    assert report["overall"]["responses"] == len(plan.nps_answers)
    assert report["overall"]["label"]
    assert set(report["by_shop"]) <= {"msk-1", "spb-1", "ekb-1"} and report["by_stage"].keys() == {"pickup"}


def test_a_second_run_changes_nothing(api: Api, library_stack: Stack) -> None:
    s = library_stack
    first = demo.generate(api.url, WRITE_KEY, customers=8, months=2, seed=5, now=NOW, admin_token=ADMIN_TOKEN)
    plan = demo.build(customers=8, months=2, seed=5, now=NOW)
    before = {c[0]["userId"]: dict(s.profile(c[0]["userId"]).kpis) for c in plan.customers}
    again = demo.generate(api.url, WRITE_KEY, customers=8, months=2, seed=5, now=NOW, admin_token=ADMIN_TOKEN)
    # the engine keeps a messageId once: accepted again, stored once; replayed NPS events are refused
    assert again["accepted"] == first["accepted"] == plan.events
    assert again["nps_recorded"] == 0 and again["nps_replayed"] == first["nps_recorded"]
    assert {uid: dict(s.profile(uid).kpis) for uid in before} == before


def test_a_bad_write_key_stops_at_once_with_the_reason(api: Api) -> None:
    with pytest.raises(demo.DemoError, match="401"):
        demo.generate(api.url, "wrong-key", customers=3, months=1, seed=1, now=NOW)
    assert api.calls["/v1/batch"] <= demo.THREADS  # no retries of a 401


class Flaky:
    """A stack that throttles and fails before it accepts: the generator retries 429 and 5xx."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.bodies: list[dict[str, Any]] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = flaky.answers.pop(0) if flaky.answers else 200
                flaky.bodies.append(body)
                reply = {"success": True, "accepted": len(body["batch"]), "rejected": []} if status == 200 else \
                    {"code": "throttled" if status == 429 else "internal_error", "message": "later"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_throttling_and_server_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.time, "sleep", lambda _seconds: None)
    flaky = Flaky([429, 503, 500])
    try:
        result = demo.generate(flaky.url, WRITE_KEY, customers=3, months=1, seed=2, now=NOW)
    finally:
        flaky.server.shutdown()
        flaky.server.server_close()
    plan = demo.build(customers=3, months=1, seed=2, now=NOW)
    assert len(demo.batches(plan.customers)) == 1
    assert result["accepted"] == plan.events and len(flaky.bodies) == result["requests"] + 3
    # the retried body is the same batch: the engine's messageId dedupe makes a retry safe
    assert flaky.bodies[0] == flaky.bodies[3]

    always = Flaky([503] * (demo.ATTEMPTS + 1))
    try:
        with pytest.raises(demo.DemoError, match="after 6 attempts"):
            demo.generate(always.url, WRITE_KEY, customers=1, months=1, seed=2, now=NOW)
    finally:
        always.server.shutdown()
        always.server.server_close()


def test_the_url_must_be_http() -> None:
    with pytest.raises(demo.DemoError, match="http"):
        demo.generate("file:///etc/passwd", WRITE_KEY, customers=1, now=NOW)
