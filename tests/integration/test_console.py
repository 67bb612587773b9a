"""The web console over HTTP events (moto): sign-in and sessions, CSRF, roles, escaping, audit, pages."""

from __future__ import annotations

import re
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
from retention.admin.people import People, create_admin_token
from retention.core import clock, ddb

from tests.support import LambdaContext

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


class Browser:
    """A cookie jar over the admin_api handler (the console's function), like a browser without JS."""

    def __init__(self, host: str = "127.0.0.1:8787") -> None:
        self.cookies: dict[str, str] = {}
        self.host = host

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        from functions.admin_api.handler import lambda_handler
        query: dict[str, str] | None = None
        if "?" in path:
            path, qs = path.split("?", 1)
            query = dict(p.split("=", 1) if "=" in p else (p, "") for p in qs.split("&"))
            from urllib.parse import unquote
            query = {k: unquote(v) for k, v in query.items()}
        hdrs = {"Host": self.host, "Accept-Language": "en", **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form)
        event = {"resource": "/console/{proxy+}", "path": path, "httpMethod": method, "headers": hdrs,
                 "multiValueHeaders": {k: [v] for k, v in hdrs.items()}, "queryStringParameters": query,
                 "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
                 "pathParameters": {"proxy": path[len("/console/"):]}, "stageVariables": None, "body": body,
                 "isBase64Encoded": False,
                 "requestContext": {"resourcePath": "/console/{proxy+}", "httpMethod": method, "path": path,
                                    "stage": "test", "requestId": "r-1", "identity": {"sourceIp": "127.0.0.1"}}}
        resp = lambda_handler(event, LambdaContext())
        headers_out = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
        for k, vs in (resp.get("multiValueHeaders") or {}).items():
            headers_out[k.lower()] = vs if k.lower() == "set-cookie" else ", ".join(vs)
        for raw in headers_out.get("set-cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return int(resp["statusCode"]), headers_out, resp.get("body") or ""

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, Any], str]:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, str], **kw: Any) -> tuple[int, dict[str, Any], str]:
        return self.request("POST", path, form=form, **kw)

    def csrf(self, path: str) -> str:
        status, _, html = self.get(path)
        assert status == 200, (path, status, html[:500])
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m, html[:1000]
        return m.group(1)

    def sign_in(self, token: str) -> tuple[int, dict[str, Any], str]:
        pre = self.csrf("/console/login")
        return self.post("/console/login", {"csrf": pre, "token": token, "next": "/console/"})


@pytest.fixture
def tokens(library_stack: Any) -> dict[str, str]:
    cfg = library_stack.deps.config
    return {role: create_admin_token(cfg, f"{role}-person", role=role) for role in ("viewer", "editor", "admin")}


def test_sign_in_sets_a_strict_http_only_session_cookie_and_shows_the_overview(tokens: dict[str, str],
                                                                               library_stack: Any) -> None:
    b = Browser()
    status, headers, _ = b.get("/console/")
    assert status == 303 and "/console/login?next=" in headers["location"]
    status, headers, _ = b.sign_in(tokens["viewer"])
    assert status == 303 and headers["location"] == "/console/"
    session_cookie = next(c for c in headers["set-cookie"] if c.startswith("rt_console="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Secure" not in session_cookie
    status, headers, html = b.get("/console/")
    assert status == 200 and "viewer-person" in html and "Marketing sends are active." in html
    assert "default-src 'self'" in headers["content-security-policy"]
    # the session id is stored hashed only
    d = library_stack.deps
    items = [ddb.deserialize(i) for i in d.dynamodb.scan(TableName=d.env.config_table)["Items"]]
    assert b.cookies["rt_console"] not in repr(items)
    assert any(str(i["pk"]).startswith("SESSION#") for i in items)


def test_secure_cookie_outside_localhost_and_under_the_stage_prefix(tokens: dict[str, str]) -> None:
    b = Browser(host="abc.execute-api.eu-west-1.amazonaws.com")
    status, headers, _ = b.sign_in(tokens["viewer"])
    assert status == 303
    assert "Secure" in next(c for c in headers["set-cookie"] if c.startswith("rt_console="))


def test_wrong_token_and_missing_csrf_are_refused(tokens: dict[str, str]) -> None:
    b = Browser()
    status, _, html = b.sign_in("rt_nope")
    assert status == 401 and "This token is not valid." in html and "rt_console" not in b.cookies
    status, _, _ = b.post("/console/login", {"csrf": "forged", "token": tokens["admin"]})
    assert status == 403 and "rt_console" not in b.cookies
    b.sign_in(tokens["admin"])
    status, _, html = b.post("/console/rules/birthday/disable", {})  # no CSRF token
    assert status == 403 and "CSRF" in html
    status, _, _ = b.post("/console/rules/birthday/disable", {"csrf": "x" * 43})
    assert status == 403


def test_sign_out_ends_the_session_server_side(tokens: dict[str, str]) -> None:
    b = Browser()
    b.sign_in(tokens["viewer"])
    stolen = dict(b.cookies)
    csrf = b.csrf("/console/")
    status, _, _ = b.post("/console/logout", {"csrf": csrf})
    assert status == 303 and "rt_console" not in b.cookies
    thief = Browser()
    thief.cookies = stolen
    assert thief.get("/console/")[0] == 303  # the old cookie no longer opens anything


def test_sessions_expire_and_die_with_their_token(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["viewer"])
    assert b.get("/console/")[0] == 200
    clock.set_now(clock.now() + timedelta(hours=9))
    status, headers, _ = b.get("/console/")
    assert status == 303 and "expired=1" in headers["location"]
    clock.set_now(clock.now() - timedelta(hours=9))
    b2 = Browser()
    b2.sign_in(tokens["editor"])
    people = People(library_stack.deps.config)
    token_id = next(t["token_id"] for t in people.tokens() if t["name"] == "editor-person")
    people.revoke(token_id, by="test")
    assert b2.get("/console/")[0] == 303


def test_language_from_accept_language_and_the_switch(tokens: dict[str, str]) -> None:
    b = Browser()
    b.sign_in(tokens["viewer"])
    _, _, html = b.get("/console/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert "Обзор" in html and 'lang="ru"' in html
    status, _, _ = b.get("/console/lang?to=en&next=/console/")
    assert status == 303 and b.cookies["rt_console_lang"] == "en"
    _, _, html = b.get("/console/", headers={"Accept-Language": "ru"})
    assert "Overview" in html and 'lang="en"' in html


def test_static_htmx_and_its_licence_are_served(tokens: dict[str, str]) -> None:
    b = Browser()
    status, headers, js = b.get("/console/static/htmx-2.0.4.min.js")
    assert status == 200 and "javascript" in headers["content-type"] and "htmx" in js
    assert "Zero-Clause BSD" in b.get("/console/static/htmx-LICENSE.txt")[2]
    assert b.get("/console/static/../../sessions.py")[0] == 404


def test_next_is_never_an_open_redirect(tokens: dict[str, str]) -> None:
    b = Browser()
    pre = b.csrf("/console/login")
    status, headers, _ = b.post("/console/login", {"csrf": pre, "token": tokens["viewer"],
                                                   "next": "//evil.example/"})
    assert status == 303 and headers["location"] == "/console/"


BAD_RULE = """id: birthday
title: Birthday
trigger: {event: Signed Up}
steps:
  - send: {channel: email, template: no-such-template}
"""


def test_rules_list_and_page_in_plain_words(tokens: dict[str, str]) -> None:
    b = Browser()
    b.sign_in(tokens["viewer"])
    status, _, html = b.get("/console/rules")
    assert status == 200 and 'data-rule="abandoned-cart"' in html and "Abandoned cart" in html
    status, _, html = b.get("/console/rules/abandoned-cart")
    assert status == 200 and "wait 8h (09:00–21:00)" in html and "send email: A: cart-discount-a / B: cart-discount-b" in html
    assert "not enough data yet (n = 0)" in html
    assert "/edit" not in html and "/disable" not in html  # a viewer sees no change buttons
    assert b.get("/console/rules/nope")[0] == 404


def test_edit_a_rule_errors_at_their_lines_then_save_is_audited(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["editor"])
    csrf = b.csrf("/console/rules/birthday/edit")
    status, _, html = b.post("/console/rules/birthday/edit", {"csrf": csrf, "yaml": BAD_RULE, "action": "save"})
    assert status == 422 and "nothing was saved" in html and "no-such-template" in html
    assert re.search(r'href="#L5">line 5</a>', html), html[html.find("errors"):][:800]
    assert 'class="l bad" id="L5"' in html
    live = library_stack.deps.config.get_definition("RULE", "birthday")
    assert live["version"] == 1
    fixed = BAD_RULE.replace("no-such-template", "welcome")
    status, _, html = b.post("/console/rules/birthday/edit", {"csrf": csrf, "yaml": fixed, "action": "check"})
    assert status == 200 and "✓ OK" in html and "+  - send: {channel: email, template: welcome}" in html
    status, headers, _ = b.post("/console/rules/birthday/edit", {"csrf": csrf, "yaml": fixed, "action": "save"})
    assert status == 303 and "/console/rules/birthday?saved=2" in headers["location"]
    status, _, _ = b.post("/console/rules/birthday/disable", {"csrf": csrf})
    assert status == 303
    assert library_stack.deps.config.get_definition("RULE", "birthday")["enabled"] is False
    log = People(library_stack.deps.config).audit_log(kind="rule")
    assert [(e["who"], e["action"], e["id"]) for e in log[:2]] == [("editor-person", "disable", "birthday"),
                                                                   ("editor-person", "apply", "birthday")]
    assert log[0]["detail"]["via"] == "console"


def test_a_viewer_cannot_change_a_rule(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["viewer"])
    csrf = b.csrf("/console/rules/birthday")
    text = library_stack.deps.config.get_definition("RULE", "birthday")["text"]
    status, _, html = b.post("/console/rules/birthday/edit", {"csrf": csrf, "yaml": text, "action": "save"})
    assert status == 403 and "needs an editor" in html
    assert b.post("/console/rules/birthday/disable", {"csrf": csrf})[0] == 403
    assert b.post("/console/sending/resume", {"csrf": csrf})[0] == 403
    assert library_stack.deps.config.get_definition("RULE", "birthday")["enabled"] is True


def test_definitions_and_inputs_are_escaped(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["editor"])
    csrf = b.csrf("/console/rules/birthday/edit")
    evil = BAD_RULE.replace("title: Birthday", "title: '<script>alert(1)</script>'").replace(
        "no-such-template", "welcome")
    assert b.post("/console/rules/birthday/edit", {"csrf": csrf, "yaml": evil, "action": "save"})[0] == 303
    for path in ("/console/rules", "/console/rules/birthday"):
        html = b.get(path)[2]
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = b.get("/console/rules/birthday?customer=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")[2]
    assert "<img src=x" not in html


def _customer(stack: Any, uid: str = "c-1", email: str = "anna@example.com") -> None:
    stack.ingest([{"type": "identify", "userId": uid, "messageId": f"id-{uid}",
                   "traits": {"email": email, "email_consent": True, "first_name": "<b>Anna</b>", "locale": "en"}},
                  {"type": "track", "userId": uid, "event": "Order Completed", "messageId": f"o-{uid}",
                   "properties": {"order_id": f"o-{uid}", "revenue": 120}}])


def test_customer_search_profile_and_erasure_with_confirmation(tokens: dict[str, str], library_stack: Any) -> None:
    _customer(library_stack)
    b = Browser()
    b.sign_in(tokens["editor"])
    status, headers, _ = b.get("/console/customers?q=Anna%40example.com")
    assert status == 303 and headers["location"] == "/console/customers/c-1"
    status, _, html = b.get("/console/customers/c-1")
    assert status == 200 and "anna@example.com" in html and "Order Completed" in html and "newbie" in html
    assert "&lt;b&gt;Anna&lt;/b&gt;" in html and "<b>Anna</b>" not in html
    assert b.get("/console/customers?q=nobody")[0] == 404
    csrf = b.csrf("/console/customers/c-1")
    status, _, html = b.post("/console/customers/c-1/erase", {"csrf": csrf, "confirm": "c-2"})
    assert status == 422 and "does not match" in html
    status, headers, _ = b.post("/console/customers/c-1/erase", {"csrf": csrf, "confirm": "c-1"})
    assert status == 303 and "erased=c-1" in headers["location"]
    assert b.get("/console/customers/c-1")[0] == 404
    entry = People(library_stack.deps.config).audit_log(kind="customer")[0]
    assert (entry["who"], entry["action"], entry["id"]) == ("editor-person", "erase", "c-1")


def test_segments_templates_preview_and_audit_pages(tokens: dict[str, str], library_stack: Any) -> None:
    _customer(library_stack)
    b = Browser()
    b.sign_in(tokens["viewer"])
    status, _, html = b.get("/console/segments")
    assert status == 200 and "lifecycle" in html and "<svg" in html
    status, _, html = b.get("/console/templates")
    assert status == 200 and "/console/templates/cart-reminder" in html
    status, _, html = b.get("/console/templates/cart-reminder?customer=anna%40example.com&rule=abandoned-cart")
    assert status == 200 and '<iframe class="preview" sandbox' in html and 'srcdoc="&lt;' in html
    status, _, html = b.get("/console/audit")
    assert status == 200 and "setup" in html  # the token creations of the fixture
    # the viewer sees no erase form
    assert 'id="erase"' not in b.get("/console/customers/c-1")[2]


def test_tokens_page_is_for_admins(tokens: dict[str, str], library_stack: Any) -> None:
    viewer = Browser()
    viewer.sign_in(tokens["viewer"])
    assert viewer.get("/console/tokens")[0] == 403
    assert "/console/tokens" not in viewer.get("/console/")[2]
    admin = Browser()
    admin.sign_in(tokens["admin"])
    csrf = admin.csrf("/console/tokens")
    status, _, html = admin.post("/console/tokens", {"csrf": csrf, "name": "maria", "role": "editor",
                                                     "expires": "30d"})
    m = re.search(r'<pre class="code" id="new-token">(rt_[^<]+)</pre>', html)
    assert status == 200 and m
    assert m.group(1) not in admin.get("/console/tokens")[2]  # shown once
    maria = Browser()
    assert maria.sign_in(m.group(1))[0] == 303
    token_id = next(t["token_id"] for t in People(library_stack.deps.config).tokens() if t["name"] == "maria")
    assert admin.post(f"/console/tokens/{token_id}/revoke", {"csrf": csrf})[0] == 303
    assert maria.get("/console/")[0] == 303  # the session died with the token
    log = People(library_stack.deps.config).audit_log(kind="token")
    assert [(e["who"], e["action"]) for e in log[:2]] == [("admin-person", "revoke"), ("admin-person", "create")]


def test_dry_run_nps_settings_count_and_manual_segment(tokens: dict[str, str], library_stack: Any) -> None:
    _customer(library_stack)
    b = Browser()
    b.sign_in(tokens["admin"])
    status, _, html = b.get("/console/rules/post-purchase?dry_run=7")
    assert status == 200 and 'id="dry-run"' in html and "entries," in html, html[html.find("dry-run"):][:1500]
    status, _, html = b.get("/console/nps")
    assert status == 200 and "no answers yet" in html
    csrf = b.csrf("/console/settings")
    status, _, html = b.post("/console/settings", {"csrf": csrf, "settings": '{"shop_name": "Console Shop"}'})
    assert status == 200 and "Saved." in html and "Console Shop" in html
    assert library_stack.deps.config.settings().shop_name == "Console Shop"
    status, _, html = b.post("/console/settings", {"csrf": csrf, "settings": '{"brake_bounce_rate": "lots"}'})
    assert status == 400 and "brake_bounce_rate" in html
    status, _, html = b.post("/console/segments/count", {"csrf": csrf, "condition": "{kpi: orders_count, gte: 1}"},
                             headers={"HX-Request": "true"})
    assert status == 200 and html.startswith('<div id="count"') and '<p class="big">1</p>' in html
    status, _, html = b.post("/console/segments/count", {"csrf": csrf, "condition": "[1, 2"})
    assert status == 200 and 'class="error"' in html
    status, _, _ = b.post("/console/customers/c-1/segments", {"csrf": csrf, "segment": "flags/vip",
                                                              "reason": "owner's friend"})
    assert status == 303
    assert "vip" in b.get("/console/customers/c-1")[2]
    kinds = [e["kind"] for e in People(library_stack.deps.config).audit_log()[:2]]
    assert kinds == ["customer", "setting"]


def test_templates_and_segment_groups_have_the_same_editor(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["editor"])
    status, _, html = b.get("/console/templates/welcome/edit")
    assert status == 200 and 'action="/console/templates/welcome/edit"' in html
    csrf = b.csrf("/console/templates/welcome/edit")
    text = library_stack.deps.config.get_definition("TEMPLATE", "welcome")["text"]
    status, _, html = b.post("/console/templates/welcome/edit", {"csrf": csrf, "yaml": text + "bogus_key: 1\n",
                                                                 "action": "save"})
    assert status == 422 and "bogus_key" in html and 'class="l bad"' in html
    status, headers, _ = b.post("/console/templates/welcome/edit", {"csrf": csrf, "yaml": text, "action": "save"})
    assert status == 303 and headers["location"].startswith("/console/templates/welcome?saved=1&changed=0")
    status, _, html = b.get("/console/segments/flags/edit")
    assert status == 200 and "prefers_email" in html
    assert b.get("/console/people/x/edit")[0] == 404


def test_catalogue_and_coupons(tokens: dict[str, str], library_stack: Any) -> None:
    b = Browser()
    b.sign_in(tokens["editor"])
    csrf = b.csrf("/console/catalogue")
    status, _, _ = b.post("/console/catalogue/coupons", {"csrf": csrf, "pool": "welcome", "discount": "10%",
                                                         "valid_days": "7", "codes": "W-1\nW-2, W-3"})
    assert status == 303
    status, _, html = b.get("/console/catalogue?product=nope")
    assert status == 200 and "<td>welcome</td>" in html and "Not found: nope" in html
    status, _, html = b.post("/console/catalogue/coupons", {"csrf": csrf, "pool": "welcome", "discount": "lots",
                                                            "codes": "W-4"})
    assert status == 400 and 'class="error"' in html
    entry = People(library_stack.deps.config).audit_log(kind="coupon_pool")[0]
    assert (entry["who"], entry["id"]) == ("editor-person", "welcome")
    viewer = Browser()
    viewer.sign_in(tokens["viewer"])
    assert viewer.post("/console/catalogue/coupons", {"csrf": viewer.csrf("/console/catalogue"), "pool": "x",
                                                      "codes": "A"})[0] == 403
