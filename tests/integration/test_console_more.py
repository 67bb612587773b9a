"""The console's NPS comments (never an erased customer's) and the segment condition builder, over HTTP
events (moto)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock
from retention.surveys import nps
from retention.surveys.answers import Surveys

from tests.integration.test_console import Browser, _customer

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def _answer(stack: Any, uid: str, score: int, comment: str | None, at: Any) -> None:
    Surveys(stack.deps).record(nps.NpsResponse(customer_id=uid, score=score, at=at, source="webhook",
                                               comment=comment, event_id=f"ev-{uid}"),
                               message_id=f"nps-{uid}", ref="survey-1")


def test_nps_page_lists_recent_comments_never_an_erased_customers(stack: Any) -> None:
    s = stack  # no scenario library needed (it costs seconds a test)
    now = clock.now()
    for uid, email in (("c-1", "anna@example.com"), ("c-2", "boris@example.com"), ("c-3", "vera@example.com")):
        _customer(s, uid, email)
    _answer(s, "c-1", 10, "Fast pickup <script>alert(1)</script>", now - timedelta(days=2))
    _answer(s, "c-2", 3, "Call me at +79990001122, the parcel was lost", now - timedelta(days=1))
    _answer(s, "c-3", 8, None, now - timedelta(hours=1))  # a score without a comment is not a comment
    admin = create_admin_token(s.deps.config, "ann", role="admin")
    b = Browser()
    b.sign_in(admin)
    status, _, html = b.get("/console/nps")
    assert status == 200
    comments = html[html.index('id="comments"'):]
    assert comments.index("parcel was lost") < comments.index("Fast pickup")  # newest first
    assert "&lt;script&gt;" in comments and "<script>alert" not in comments
    assert 'href="/console/customers/c-2"' in comments and "c-3" not in comments
    # erase c-2 (typed confirmation): his comment is gone from the page, his score still counts
    csrf = b.csrf("/console/customers/c-2")
    status, _, _ = b.post("/console/customers/c-2/erase", {"csrf": csrf, "confirm": "c-2"})
    assert status == 303
    html = b.get("/console/nps")[2]
    comments = html[html.index('id="comments"'):]
    assert "parcel was lost" not in comments and "+79990001122" not in html and "c-2" not in comments
    assert "Fast pickup" in comments
    assert Surveys(s.deps).report(None, None)["overall"]["responses"] == 3
    # the admin API's report keeps its shape (no comments unless asked for)
    assert "comments" not in Surveys(s.deps).report(None, None)


def test_condition_builder_feeds_the_count_preview_and_the_yaml_box(library_stack: Any) -> None:
    s = library_stack
    _customer(s, "c-1", "anna@example.com")
    _customer(s, "c-2", "boris@example.com")
    s.ingest([{"type": "track", "userId": "c-2", "event": "Order Completed", "messageId": "o2-c-2",
               "properties": {"order_id": "o2-c-2", "revenue": 80}}])
    b = Browser()
    b.sign_in(create_admin_token(s.deps.config, "viv", role="viewer"))  # a count is a read: viewers may
    status, _, html = b.get("/console/segments")
    assert status == 200 and 'id="builder"' in html and 'name="field2"' in html and 'name="field3"' not in html
    csrf = b.csrf("/console/segments")
    rows = {"csrf": csrf, "builder": "1", "match": "all", "field0": "kpi:orders_count", "op0": "gte", "value0": "2",
            "field1": "consent:email", "op1": "eq", "value1": "granted"}
    # htmx: the count, and the YAML it made swapped into the box out of band
    status, _, html = b.post("/console/segments/count", rows, headers={"HX-Request": "true"})
    assert status == 200 and html.startswith('<div id="count"') and '<p class="big">1</p>' in html, html
    assert 'id="condition"' in html and 'hx-swap-oob="true"' in html
    assert "{all: [{kpi: orders_count, gte: 2}, {consent: email, state: [granted]}]}" in html
    # without JavaScript: the whole page, the rows kept, the YAML in the box, the groups still there
    status, _, html = b.post("/console/segments/count", {**rows, "match": "any"})
    assert status == 200 and '<p class="big">2</p>' in html and "{any: [{kpi: orders_count" in html
    assert 'value="kpi:orders_count" selected' in html and "lifecycle" in html and 'name="field2"' in html
    # one empty row more than the filled ones (at least three); "Add a row" gives two
    status, _, html = b.post("/console/segments/count", {**rows, "add_row": "1"})
    assert status == 200 and 'name="field3"' in html and 'name="field4"' not in html and 'id="count"' in html
    rows3 = {**rows, "field2": "trait:vip", "op2": "eq", "value2": "true"}
    status, _, html = b.post("/console/segments/count", {**rows3, "add_row": "1"})
    assert 'name="field4"' in html and 'name="field5"' not in html
    # a row the builder cannot read says why; a segment the library does not have is the language's error
    status, _, html = b.post("/console/segments/count", {**rows, "value0": "many"}, headers={"HX-Request": "true"})
    assert 'class="error"' in html and "orders_count is a number" in html
    status, _, html = b.post("/console/segments/count", {"csrf": csrf, "builder": "1", "field0": "segment",
                                                         "op0": "in", "value0": "lifecycle/nope"},
                             headers={"HX-Request": "true"})
    assert 'class="error"' in html and "nope" in html


def test_template_preview_in_both_languages_and_an_sms_with_its_parts(library_stack: Any) -> None:
    s = library_stack
    _customer(s, "c-1", "anna@example.com")
    s.ingest([{"type": "identify", "userId": "c-9", "messageId": "id-c-9",
               "traits": {"phone": "+79990001122", "sms_consent": True, "preferred_channel": "sms",
                          "first_name": "Ира", "locale": "ru"}}])
    b = Browser()
    b.sign_in(create_admin_token(s.deps.config, "viv", role="viewer"))
    status, _, html = b.get("/console/templates/cart-reminder?customer=anna%40example.com&rule=abandoned-cart")
    assert status == 200
    ru, en = html.index('<div class="locale" lang="ru">'), html.index('<div class="locale" lang="en">')
    assert html.count('<iframe class="preview" sandbox') == 2 and ru < en  # the same message in both languages
    subjects = [html[i:].split("<strong>", 1)[1].split("</strong>", 1)[0] for i in (ru, en)]
    assert subjects[0] != subjects[1], subjects
    status, _, html = b.get("/console/templates/back-in-stock?customer=c-9&rule=back-in-stock")
    assert status == 200 and '<p class="small sms-parts">UCS-2 · ' in html and " SMS · " in html, html[-3000:]
    assert html.count('class="small sms-parts"') == 2


def test_customers_are_found_by_phone_and_the_index_goes_with_an_erasure(stack: Any) -> None:
    from retention.core import ddb
    from retention.customers.store import phone_index_key
    s = stack  # no scenario library needed
    s.ingest([{"type": "identify", "userId": "p-1", "messageId": "id-p-1", "traits": {"phone": "8 (916) 123-45-67"}},
              {"type": "identify", "userId": "p-2", "messageId": "id-p-2", "traits": {"phone": "+79160000000"}}])
    b = Browser()
    b.sign_in(create_admin_token(s.deps.config, "ed", role="editor"))
    for q in ("+79161234567", "89161234567", "%2B7%20916%20123-45-67"):
        status, headers, _ = b.get(f"/console/customers?q={q}")
        assert status == 303 and headers["location"] == "/console/customers/p-1", (q, status)
    # the number moved to p-2: the old row no longer finds p-1, the new one finds p-2
    s.ingest([{"type": "identify", "userId": "p-1", "messageId": "id-p-1b", "traits": {"phone": "+79165550000"}},
              {"type": "identify", "userId": "p-2", "messageId": "id-p-2b", "traits": {"phone": "+79161234567"}}])
    assert b.get("/console/customers?q=%2B79161234567")[1]["location"] == "/console/customers/p-2"
    assert b.get("/console/customers?q=%2B79160000000")[0] == 404
    csrf = b.csrf("/console/customers/p-2")
    assert b.post("/console/customers/p-2/erase", {"csrf": csrf, "confirm": "p-2"})[0] == 303
    assert ddb.get(s.deps.dynamodb, s.tables["profiles"], *phone_index_key("+79161234567")) is None
    assert b.get("/console/customers?q=%2B79161234567")[0] == 404


def test_a_segment_groups_daily_sizes_and_flows(library_stack: Any) -> None:
    s = library_stack
    _customer(s, "c-1", "anna@example.com")
    _customer(s, "c-2", "boris@example.com")
    b = Browser()
    b.sign_in(create_admin_token(s.deps.config, "viv", role="viewer"))
    assert 'href="/console/segments/lifecycle"' in b.get("/console/segments")[2]
    status, _, html = b.get("/console/segments/lifecycle?days=7")
    assert status == 200 and html.count("<polyline") >= 5 and 'aria-current="page">7 days' in html
    sizes = html[html.index('id="sizes"'):html.index('id="flows"')]
    assert "<td>newbie</td><td class=\"n\">2</td>" in sizes, sizes[-1500:]
    flows = html[html.index('id="flows"'):]
    assert "→ newbie" in flows and "<svg" in flows
    assert 'aria-current="page">30 days' in b.get("/console/segments/lifecycle?days=13")[2]  # only 7/30/90
    assert b.get("/console/segments/nope")[0] == 404
    # and one customer's side of it: his segment history (newest first)
    html = b.get("/console/customers/c-1")[2]
    history = html[html.index('id="segment-history"'):]
    history = history[:history.index("</section>")]
    assert "lifecycle/newbie" in history and ">entered<" in history, history
