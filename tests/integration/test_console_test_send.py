"""The template page's "Send a test to me" (moto, in process): the console enqueues, send_message delivers
one "[TEST]" email to the signed-in person's own address (retention.messaging.testsend), once; viewers,
forms without CSRF and forged requests naming any other address are refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from retention.admin.people import People, create_admin_token
from retention.core import ddb

from tests.integration.test_console import Browser
from tests.integration.test_send_handler import invoke, receive
from tests.integration.test_sender import apply, customer, emails
from tests.support import load_handler

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

PAGE = "/console/templates/t-promo"
STAFF = "editor@staff.example"


@pytest.fixture(scope="module")
def handler() -> Any:
    return load_handler("send_message")


@pytest.fixture
def s(stack: Any) -> Any:
    apply(stack)  # t-promo (marketing, a coupon in its ru html) and its rules
    customer(stack, "u1", email="anna.customer@example.com")
    return stack


@pytest.fixture
def tokens(s: Any) -> dict[str, str]:
    return {role: create_admin_token(s.deps.config, f"{role}-person", role=role) for role in ("viewer", "editor",
                                                                                              "admin")}


def signed_in(token: str) -> Browser:
    b = Browser()
    status, _, _ = b.sign_in(token)
    assert status == 303
    return b


def csrf_of(html: str, action: str) -> str:
    form = html[html.index(f'action="{action}"'):]
    m = re.search(r'name="csrf" value="([^"]+)"', form)
    assert m, form[:500]
    return m.group(1)


def messages_pks(s: Any) -> list[str]:
    d = s.deps
    return [ddb.deserialize(i)["pk"] for i in d.dynamodb.scan(TableName=d.env.messages_table)["Items"]]


def test_an_editor_sends_a_test_to_their_own_address_once(s: Any, tokens: dict[str, str], handler: Any) -> None:
    editor = signed_in(tokens["editor"])
    status, _, html = editor.get(PAGE)
    assert status == 200 and "Send a test to me" in html and "no email address on record" in html
    assert f'action="/console{PAGE[len("/console"):]}/test-send"' not in html  # no form without an address
    before = set(messages_pks(s))

    # an admin sets the editor's address on the tokens page (audited)
    admin = signed_in(tokens["admin"])
    _, _, tokens_html = admin.get("/console/tokens")
    status, headers, _ = admin.post("/console/people/email", {"csrf": csrf_of(tokens_html, "/console/people/email"),
                                                              "name": "editor-person", "email": STAFF})
    assert status == 303 and headers["location"].endswith("/console/tokens#emails")
    assert STAFF in admin.get("/console/tokens")[2]
    # not a person: refused
    status, _, html = admin.post("/console/people/email", {"csrf": csrf_of(tokens_html, "/console/people/email"),
                                                           "name": "anna", "email": "x@example.com"})
    assert status == 400 and "not a person" in html

    status, _, html = editor.get(PAGE)
    assert f"Send a test to {STAFF}" in html
    action = f"{PAGE}/test-send"
    status, headers, _ = editor.post(action, {"csrf": csrf_of(html, action), "locale": "ru"})
    assert status == 303 and headers["location"] == f"{PAGE}?test_sent=ru"
    assert f"Test queued for {STAFF}" in editor.get(headers["location"])[2]
    audit = People(s.deps.config).audit_log(who="editor-person")
    assert audit[0]["action"] == "test_send" and audit[0]["id"] == "t-promo"
    assert audit[0]["detail"]["to"] == STAFF and audit[0]["detail"]["via"] == "console"

    queued = receive(s)
    assert len(queued) == 1
    assert invoke(handler, queued) == set()
    sent = emails()
    assert len(sent) == 1
    mail = sent[0]
    assert mail["headers"]["To"] == STAFF and mail["subject"].startswith("[TEST] ")
    assert mail["subject"] == "[TEST] Привет, Анна!"  # the sample customer, not a real one
    assert "TEST-NO-COUPON" in mail["html"]  # a visible placeholder: no coupon issued
    assert "anna.customer@example.com" not in repr(mail) and "shop.test/api" not in repr(mail)  # inert links
    assert mail["headers"].get("X-Retention-Test") == "1"

    # a redelivered SQS message does not send twice
    assert invoke(handler, queued) == set()
    assert len(emails()) == 1

    # its own ledger and the brake's count of the identity's mail; no send ledger, no daily counters, no
    # profile sends (nothing pollutes the rule stats)
    new = set(messages_pks(s)) - before
    assert {pk.split("#", 1)[0] for pk in new} == {"TEST", "BRAKE"} and len(new) == 2, new
    test_pk = next(pk for pk in new if pk.startswith("TEST#"))
    row = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, test_pk, "L", consistent=True)
    assert row is not None and row["status"] == "sent" and row["to"] == STAFF and row["subject"].startswith("[TEST]")

    # the local stack's outbox shows it (and so the console's local inbox)
    from local.runtime import LocalStack
    out = LocalStack._outbox(None)  # type: ignore[arg-type]  # it reads the moto backends and the table only
    assert [(m["to"], m["rule"], m["subject"]) for m in out] == [(STAFF, "[test]", "[TEST] Привет, Анна!")]


def test_viewers_forms_without_csrf_and_people_without_an_address_are_refused(s: Any, tokens: dict[str, str]
                                                                                ) -> None:
    viewer = signed_in(tokens["viewer"])
    status, _, html = viewer.get(PAGE)
    assert status == 200 and "Send a test to me" not in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', viewer.get("/console/")[2])
    assert csrf
    status, _, _ = viewer.post(f"{PAGE}/test-send", {"csrf": csrf.group(1), "locale": "ru"})
    assert status == 403

    People(s.deps.config).set_email("editor-person", STAFF, by="test")
    editor = signed_in(tokens["editor"])
    status, _, html = editor.post(f"{PAGE}/test-send", {"locale": "ru"})  # no CSRF token
    assert status == 403 and "CSRF" in html

    admin = signed_in(tokens["admin"])  # no address on record: said clearly, nothing queued
    html = admin.get(PAGE)[2]
    assert "You have no email address on record" in html and "/console/tokens#emails" in html
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token
    status, _, html = admin.post(f"{PAGE}/test-send", {"csrf": token.group(1), "locale": "ru"})
    assert status == 400 and "no email address on record" in html
    assert receive(s) == []


@pytest.mark.parametrize("person,to", [
    ("editor-person", "anna.customer@example.com"),  # a person, but a customer's address
    ("nobody", "anna.customer@example.com"),  # not a person at all
    ("editor-person", STAFF.upper() + ".evil.example"),
])
def test_a_forged_request_naming_a_non_person_address_is_refused_by_the_sender(
        s: Any, tokens: dict[str, str], handler: Any, person: str, to: str) -> None:
    from retention.messaging.testsend import TestSendRequest, testsend_ledger_key
    People(s.deps.config).set_email("editor-person", STAFF, by="test")
    forged = TestSendRequest(request_id="forged-0001", person=person, to=to, template="t-promo", locale="ru")
    s.deps.sqs.send_message(QueueUrl=s.send_queue, MessageBody=forged.model_dump_json())
    assert invoke(handler, receive(s)) == set()  # completed (recorded), not retried
    assert emails() == []
    row = ddb.get(s.deps.dynamodb, s.deps.env.messages_table, *testsend_ledger_key("forged-0001"), consistent=True)
    assert row is not None and row["status"] == "rejected" and row["reason"] == "not_a_person"


def test_a_revoked_person_gets_no_test_and_the_brake_stops_a_marketing_test(s: Any, tokens: dict[str, str],
                                                                             handler: Any) -> None:
    from retention.messaging.testsend import TestSendRequest
    people = People(s.deps.config)
    people.set_email("editor-person", STAFF, by="test")
    s.deps.config.client.put_item(TableName=s.deps.env.config_table, Item=ddb.serialize(
        {"pk": "SENDING", "sk": "example.com", "marketing": "paused", "reason": "test", "epoch": 0}))
    s.deps.config.invalidate()
    paused = TestSendRequest(request_id="paused-0001", person="editor-person", to=STAFF, template="t-promo")
    s.deps.sqs.send_message(QueueUrl=s.send_queue, MessageBody=paused.model_dump_json())
    assert invoke(handler, receive(s)) == set() and emails() == []
    token_id = next(t["token_id"] for t in people.tokens() if t["name"] == "editor-person")
    people.revoke(token_id, by="test")
    revoked = TestSendRequest(request_id="revoked-001", person="editor-person", to=STAFF, template="t-order")
    s.deps.sqs.send_message(QueueUrl=s.send_queue, MessageBody=revoked.model_dump_json())
    assert invoke(handler, receive(s)) == set() and emails() == []
