"""The admin API's routes through the real handler (API Gateway proxy events) on moto."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock

from tests.support import LambdaContext

TOKEN = "tok"
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def call(method: str, path: str, body: Any = None, *, token: str | None = TOKEN, headers: dict[str, str] | None = None,
         query: dict[str, str] | None = None) -> tuple[int, Any]:
    from functions.admin_api.handler import lambda_handler
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    event = {"resource": "/admin/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
             "multiValueHeaders": {k: [v] for k, v in hdrs.items()}, "queryStringParameters": query,
             "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
             "pathParameters": {"proxy": path[len("/admin/"):]}, "stageVariables": None, "body": raw,
             "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/admin/{proxy+}", "httpMethod": method, "path": path, "stage": "test",
                                "requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}}}
    resp = lambda_handler(event, LambdaContext())
    return resp["statusCode"], json.loads(resp["body"]) if resp.get("body") else None


def identify(uid: str, email: str | None = None, consent: bool = True, **traits: Any) -> dict[str, Any]:
    t = {"email_consent": consent, **traits}
    if email:
        t["email"] = email
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}", "traits": t}


def track(uid: str, event: str, mid: str, at: Any = None, **props: Any) -> dict[str, Any]:
    msg = {"type": "track", "userId": uid, "event": event, "messageId": mid, "properties": props}
    if at is not None:
        msg["timestamp"] = clock.iso(at)
    return msg


@pytest.fixture
def api(library_stack: Any) -> Any:
    create_admin_token(library_stack.deps.config, "t", token=TOKEN)
    return library_stack


# ---- auth and routing -------------------------------------------------------------------------------

def test_every_route_needs_the_admin_token(api: Any) -> None:
    for method, path in (("GET", "/admin/rules"), ("GET", "/admin/sources"), ("GET", "/admin/nps"),
                         ("GET", "/admin/customers/u1"), ("POST", "/admin/segments/count"),
                         ("POST", "/admin/rules/welcome/dry-run"), ("POST", "/admin/webhooks/nps/rotate")):
        status, body = call(method, path, {}, token=None)
        assert (status, body["code"]) == (401, "unauthorized"), path
        assert call(method, path, {}, token="wrong")[0] == 401, path


def test_static_routes_win_over_the_generic_collection_routes(api: Any) -> None:
    assert call("GET", "/admin/sources") == (200, {"sources": []})
    status, nps = call("GET", "/admin/nps")
    assert status == 200 and nps["overall"]["responses"] == 0
    status, count = call("POST", "/admin/segments/count", {"segment": "lifecycle/neutral"})
    assert status == 200 and set(count) >= {"matched", "scanned", "cursor"}
    status, rules = call("GET", "/admin/rules")
    assert status == 200 and "welcome" in {r["id"] for r in rules["rules"]}
    assert call("GET", "/admin/unknown")[0] == 404
    assert call("GET", "/admin/settings")[1]["history_horizon_hours"] == 24


# ---- sources ----------------------------------------------------------------------------------------------

def test_sources_create_list_revoke(api: Any) -> None:
    status, created = call("POST", "/admin/sources", {"name": "web shop"})
    assert status == 201 and created["write_key"].startswith("wk_")
    source_id = created["source_id"]
    assert api.deps.config.authenticate_source(created["write_key"]) == source_id
    listed = call("GET", "/admin/sources")[1]["sources"]
    assert [(s["source_id"], s["name"], s["revoked"]) for s in listed] == [(source_id, "web shop", False)]
    assert all("write_key" not in s and "key_hash" not in s for s in listed)
    assert call("DELETE", f"/admin/sources/{source_id}") == (200, {"source_id": source_id, "revoked": True})
    assert call("GET", "/admin/sources")[1]["sources"][0]["revoked"] is True
    from retention.core.errors import UnauthorizedError
    with pytest.raises(UnauthorizedError):
        api.deps.config.authenticate_source(created["write_key"])
    assert call("DELETE", "/admin/sources/src_nope")[0] == 404
    assert call("POST", "/admin/sources", {"name": " "})[0] == 400


def test_rotate_the_nps_webhook_secret_keeps_the_old_one_valid(api: Any) -> None:
    old = api.deps.config.secrets("nps-webhook")[0]
    status, res = call("POST", "/admin/webhooks/nps/rotate")
    assert status == 200 and res["secret"]
    assert api.deps.config.secrets("nps-webhook") == [res["secret"].encode(), old]


# ---- definitions ------------------------------------------------------------------------------------------

RULE = """\
id: cart-test
trigger: {event: Checkout Started}
audience: {consent: email}
steps:
  - wait: 2h
  - send: {channel: email, template: cart-reminder}
"""


def test_put_yaml_rule_versions_and_rollback(api: Any) -> None:
    hdrs = {"Content-Type": "application/yaml", "X-Retention-Source": "rules/cart-test.yaml"}
    status, res = call("PUT", "/admin/rules/cart-test", RULE, headers=hdrs)
    assert (status, res["version"], res["changed"]) == (200, 1, True)
    assert call("PUT", "/admin/rules/cart-test", RULE, headers=hdrs)[1]["changed"] is False
    assert call("PUT", "/admin/rules/cart-test", RULE.replace("2h", "3h"), headers=hdrs)[1]["version"] == 2
    got = call("GET", "/admin/rules/cart-test")[1]
    assert got["version"] == 2 and "wait: 3h" in got["text"]
    assert [v["author"] for v in call("GET", "/admin/rules/cart-test/versions")[1]["versions"]] == ["t", "t"]
    status, back = call("POST", "/admin/rules/cart-test/rollback", query={"version": "1"})
    assert status == 200 and back["version"] == 3
    assert call("GET", "/admin/rules/cart-test")[1]["body"]["steps"][0]["wait"] == "2h"
    assert call("POST", "/admin/rules/cart-test/disable")[1]["enabled"] is False


def test_validation_errors_name_the_file_and_line(api: Any) -> None:
    hdrs = {"Content-Type": "application/yaml", "X-Retention-Source": "rules/bad.yaml"}
    bad = RULE.replace("cart-reminder", "no-such-template").replace("cart-test", "bad")
    status, err = call("PUT", "/admin/rules/bad", bad, headers=hdrs)
    assert status == 422 and err["code"] == "invalid_definition"
    assert err["message"] == "rules/bad.yaml:6: steps[1].send.template: unknown template 'no-such-template'"
    status, err = call("PUT", "/admin/rules/bad", "id: bad\ntrigger: {event: X\n", headers=hdrs)
    assert status == 422 and err["message"].startswith("rules/bad.yaml:3: invalid YAML")
    # a template whose html uses an undefined variable: the file's line, not the part's
    template = ("id: t-bad\nlocales:\n  ru:\n    subject: Привет\n    html: |\n      <p>ok</p>\n"
                "      <p>{{ customer.nickname.upper() }}</p>\n      {{ links.unsubscribe }}\n")
    status, err = call("PUT", "/admin/templates/t-bad", template,
                       headers={"Content-Type": "application/yaml", "X-Retention-Source": "templates/t-bad.yaml"})
    assert status == 422
    assert err["message"].startswith("templates/t-bad.yaml:7: locales.ru.html: line 2 of the html")
    group = "group: flags2\nmode: multi\nsegments:\n  - id: vip2\n    when: {in_segment: nobody}\n"
    status, err = call("PUT", "/admin/segments/flags2", group,
                       headers={"Content-Type": "application/yaml", "X-Retention-Source": "segments/flags2.yaml"})
    assert status == 422 and err["message"].startswith("segments/flags2.yaml:5: segments[0].when.in_segment")
    assert call("PUT", "/admin/rules/other", RULE, headers=hdrs)[0] == 400  # id differs from the URL


def test_segment_change_fans_out_a_recompute(api: Any) -> None:
    body = api.deps.config.get_definition("SEGDEF", "flags")["body"]
    body["title"] = "Flags (edited)"
    status, res = call("PUT", "/admin/segments/flags", body)
    assert status == 200 and res["changed"] and res["recompute"] > 0
    msgs = api.deps.sqs.receive_message(QueueUrl=api.recompute_queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(msgs[0]["Body"])["reason"] == "definition_change"


# ---- preview and dry-run -------------------------------------------------------------------------------------

def test_unknown_rule_is_404(api: Any) -> None:
    api.ingest([identify("u1", "anna@example.com", first_name="Анна")])
    for path, body in (("/admin/rules/nope/preview", {"customer": "u1"}), ("/admin/rules/nope/dry-run", {"days": 3}),
                       ("/admin/stats/rules/nope", None)):
        status, err = call("POST" if body else "GET", path, body)
        assert (status, err["code"]) == (404, "not_found"), path
    assert call("POST", "/admin/rules/welcome/preview", {"customer": "ghost"})[0] == 404
    assert call("GET", "/admin/rules/nope/lint")[0] == 404
    status, res = call("GET", "/admin/rules/abandoned-cart/lint")
    assert status == 200 and isinstance(res["warnings"], list)
    status, res = call("GET", "/admin/templates/welcome/lint")
    assert status == 200 and all({"code", "message", "severity"} <= set(w) for w in res["warnings"])


def test_preview_renders_every_send_step_and_sends_nothing(api: Any) -> None:
    api.ingest([identify("u1", "anna@example.com", first_name="Анна"), track("u1", "Signed Up", "s1")])
    api.queued_sends()  # what ingestion queued is not the preview's business
    api.counter.reset()
    status, res = call("POST", "/admin/rules/welcome/preview", {"customer": "u1"})
    assert status == 200
    assert [m["step"] for m in res["messages"]] == [1, 3, 5]  # step 0 sets the welcome_chain segment (issue 14)
    first = res["messages"][0]
    assert first["template"] == "welcome" and first["channel"] == "email" and first["error"] is None
    assert "Анна" in first["subject"] and first["text"] and first["would_skip"] is None
    assert api.counter.count("sesv2") == 0 and api.counter.count("sqs") == 0
    assert api.counter.count("dynamodb", "PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem") <= 1  # a
    # signing secret may be created on first use; nothing else is written
    # variants: both rendered, the customer's marked
    api.ingest([track("u1", "Checkout Started", "c1", total=100)])
    res = call("POST", "/admin/rules/abandoned-cart/preview", {"customer": "u1"})[1]
    variants = [m for m in res["messages"] if m["step"] == 3]
    assert {m["variant"] for m in variants} == {"A", "B"} and sum(m["chosen"] for m in variants) == 1
    assert res["trigger"]["name"] == "Checkout Started"


def test_preview_reports_why_a_send_would_be_skipped(api: Any) -> None:
    api.ingest([identify("u2", "bob@example.com", consent=False, first_name="Боб")])
    res = call("POST", "/admin/rules/abandoned-cart/preview", {"customer": "u2"})[1]
    assert res["audience"] is False and res["trigger"]["source"] == "sample"
    assert res["messages"][0]["would_skip"] == "no_consent" and res["messages"][0]["subject"]


def test_dry_run_pages_through_events_and_writes_nothing(api: Any, now: Any) -> None:
    msgs = []
    for i in range(6):
        uid = f"c{i}"
        msgs += [identify(uid, f"c{i}@example.com"),
                 track(uid, "Checkout Started", f"co-{i}", at=now - timedelta(days=3, hours=i), total=50)]
    # c1 orders 2 h after leaving the cart (before the 4 h reminder); c2 also left a cart long ago
    msgs.append(track("c1", "Order Completed", "oc-1", at=now - timedelta(days=3, hours=-1), order_id="o1", total=50))
    msgs.append(track("c2", "Checkout Started", "co-old", at=now - timedelta(days=20), total=5))
    api.ingest(msgs)
    api.counter.reset()
    entries: list[dict[str, Any]] = []
    body: dict[str, Any] = {"days": 7, "limit": 4}
    pages = 0
    while True:
        status, page = call("POST", "/admin/rules/abandoned-cart/dry-run", body)
        assert status == 200
        pages += 1
        entries += page["entries"]
        if not page["cursor"]:
            break
        body["cursor"] = page["cursor"]
    assert pages > 1
    assert sorted(e["customer_id"] for e in entries) == [f"c{i}" for i in range(6)]  # each once, old event ignored
    by_id = {e["customer_id"]: e for e in entries}
    from retention.language.rules import in_holdout
    for cid, entry in by_id.items():
        assert entry["holdout"] == in_holdout(cid, "abandoned-cart", 10)
    assert [cid for cid, e in sorted(by_id.items()) if e["holdout"]] == ["c0", "c2"]  # sha256-based, stable
    c1 = by_id["c1"]
    assert c1["state"] == "exited" and c1["exit"]["event"] == "Order Completed"
    assert [s["kind"] for s in c1["steps"]] == ["wait"]  # the order came before the 4 h reminder
    treated = [e for e in entries if not e["holdout"] and e["customer_id"] != "c1"]
    assert len(treated) == 3
    assert all([s["kind"] for s in e["steps"]] == ["wait", "send", "wait", "send"] for e in treated)
    assert all(not s["future"] for e in treated for s in e["steps"])  # 3 days ago: 4 h + 1 d are over
    assert all(e["state"] == "completed" for e in treated)
    writes = api.counter.count("dynamodb", *api.counter.DDB_WRITES)
    assert writes == 0 and api.counter.count("sqs") == 0
    status, err = call("POST", "/admin/rules/birthday/dry-run", {"days": 7})
    assert status == 400 and "date_attribute" in err["message"]
    assert call("POST", "/admin/rules/abandoned-cart/dry-run", {"days": 7, "cursor": "garbage!"})[0] == 400
    assert call("POST", "/admin/rules/abandoned-cart/dry-run", {"days": 0})[0] == 400


def test_dry_run_of_a_draft_definition(api: Any, now: Any) -> None:
    api.ingest([identify("d1", "d1@example.com"), track("d1", "Checkout Started", "d-co", at=now - timedelta(days=1))])
    draft = {"id": "abandoned-cart", "trigger": {"event": "Checkout Started"}, "audience": {"consent": "email"},
             "steps": [{"send": {"channel": "email", "template": "cart-reminder"}}]}
    res = call("POST", "/admin/rules/abandoned-cart/dry-run", {"days": 2, "definition": draft})[1]
    assert [[s["kind"] for s in e["steps"]] for e in res["entries"]] == [["send"]]
    bad = {**draft, "steps": [{"send": {"channel": "email", "template": "nope"}}]}
    assert call("POST", "/admin/rules/abandoned-cart/dry-run", {"days": 2, "definition": bad})[0] == 422


# ---- segments ---------------------------------------------------------------------------------------------------

def test_segment_count_with_a_cursor(api: Any) -> None:
    api.ingest([identify(f"s{i}", f"s{i}@example.com", consent=i % 2 == 0) for i in range(7)])
    totals = {"matched": 0, "scanned": 0}
    body: dict[str, Any] = {"condition": {"consent": "email"}, "limit": 3}
    pages = 0
    while True:
        status, page = call("POST", "/admin/segments/count", body)
        assert status == 200
        pages += 1
        totals["matched"] += page["matched"]
        totals["scanned"] += page["scanned"]
        if not page["cursor"]:
            break
        body["cursor"] = page["cursor"]
    assert pages > 2 and totals == {"matched": 4, "scanned": 7}
    res = call("POST", "/admin/segments/count", {"segment": "promo_registered"})[1]
    assert res["segment"] == "lifecycle/promo_registered" and res["matched"] == 7
    assert call("POST", "/admin/segments/count", {"segment": "lifecycle/nope"})[0] == 404
    assert call("POST", "/admin/segments/count", {"condition": {"kpii": 1}})[0] == 422
    assert call("POST", "/admin/segments/count", {})[0] == 400


def test_manual_segment_assignment(api: Any, now: Any) -> None:
    api.ingest([identify("m1", "m1@example.com")])
    body = {"group": "lifecycle", "segment": "loyal", "reason": "VIP from the call centre", "until": "30d"}
    status, res = call("POST", "/admin/customers/m1/segments", body)
    assert status == 200 and res["segments"]["lifecycle"] == "loyal" and res["transitions"] >= 2
    profile = api.profile("m1")
    assert profile.meta["manual_segments"]["lifecycle"]["until"] == clock.iso(now + timedelta(days=30))
    assert profile.segments["lifecycle"]["loyal"]["manual"] is True
    assert call("GET", "/admin/customers/m1")[1]["segments"]["lifecycle"] == "loyal"
    status, res = call("DELETE", "/admin/customers/m1/segments/lifecycle")
    assert status == 200 and res["segments"]["lifecycle"] != "loyal"
    assert call("POST", "/admin/customers/m1/segments", {**body, "reason": ""})[0] == 400
    assert call("POST", "/admin/customers/m1/segments", {**body, "group": "nope"})[0] == 404
    assert call("POST", "/admin/customers/m1/segments", {**body, "until": "yesterday"})[0] == 400
    assert call("POST", "/admin/customers/ghost/segments", body)[0] == 404



def test_a_customers_messages_come_from_the_keys_only_index(api: Any) -> None:
    """The ledger's by_customer index holds keys only (infra/constructs/storage.py): the view reads the
    listed ledger items, newest first, with their status and subject."""
    from tests.support import drain_sends
    api.ingest([identify("msg1", "msg1@example.com")])
    api.ingest([track("msg1", "Signed Up", "su-msg1")])
    outcomes = drain_sends(api)
    assert any(o.status == "sent" for _, o in outcomes)
    status, res = call("GET", "/admin/customers/msg1")
    assert status == 200 and res["messages"], res
    first = res["messages"][0]
    assert first["rule"] == "welcome" and first["status"] == "sent" and first["channel"] == "email"
    assert first["sent_at"] and first["subject"]
