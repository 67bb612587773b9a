"""Unsubscribe / preferences through functions/preferences/handler.py with API Gateway proxy events:
GET shows the page and changes nothing, POST is RFC 8058 one-click (urlencoded or multipart) and takes
effect at once, with a consent log entry and the `unsubscribed` counter."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from retention.core import clock
from retention.messaging.requests import SendRequest

from tests.integration.test_sender import apply, customer, emails, request, sender, stored, totals
from tests.support import LambdaContext, load_handler

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "preferences" / "handler.py"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def handler() -> Any:
    return load_handler("preferences")


def call(handler: Any, method: str, token: str, body: str | None = None, content_type: str | None = None,
         b64: bool = False, query: dict[str, str] | None = None, language: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    if language:
        headers["Accept-Language"] = language
    if b64 and body is not None:
        body = base64.b64encode(body.encode()).decode()
    event = {
        "resource": "/u/{token}", "path": f"/u/{token}", "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"token": token}, "stageVariables": None,
        "requestContext": {"resourcePath": "/u/{token}", "httpMethod": method, "path": f"/prod/u/{token}",
                           "stage": "prod", "requestId": "r-1", "identity": {"sourceIp": "203.0.113.9"}},
        "body": body, "isBase64Encoded": b64,
    }
    return handler.lambda_handler(event, LambdaContext())


def token_for(stack: Any, uid: str = "u1", channel: str = "email", ledger: str = "none") -> str:
    from retention.messaging.links import unsubscribe_url
    url = unsubscribe_url("https://shop.test/api", stack.deps.config.secrets("links"), uid, channel, ledger,
                          clock.now())
    return url.rsplit("/u/", 1)[1]


def consent(stack: Any, uid: str, channel: str = "email") -> Any:
    return stored(stack, uid).profile.consent.get(channel)


@pytest.fixture
def s(stack: Any) -> Any:
    customer(stack, "u1", phone="+79161234567", sms_consent=False)
    apply(stack)
    return stack


def mailed_token(s: Any) -> str:
    """The token of the List-Unsubscribe URL of the last email (what a mailbox provider POSTs to)."""
    header = emails()[-1]["headers"]["List-Unsubscribe"]
    https = next(part.strip(" <>") for part in header.split(",") if "https://" in part)
    path = urlsplit(https).path
    assert path.startswith("/api/u/")
    return path.rsplit("/u/", 1)[1]


PREFERENCES = {"view": "preferences"}


def test_get_shows_the_unsubscribe_page_and_changes_nothing(s: Any, sent: SendRequest, handler: Any) -> None:
    before = stored(s, "u1").profile
    resp = call(handler, "GET", mailed_token(s))
    assert resp["statusCode"] == 200
    assert "text/html" in resp["multiValueHeaders"]["Content-Type"][0]
    body = resp["body"]
    assert 'name="action" value="unsubscribe"' in body and 'name="channel" value="email"' in body
    assert 'type="checkbox"' not in body  # one question, one button: no preference boxes here
    assert 'href="?view=preferences' in body  # the way to the preferences instead
    after = stored(s, "u1").profile
    assert after.consent == before.consent and len(after.consent_log) == len(before.consent_log)


def test_the_emails_preferences_link_opens_the_preferences_page(s: Any, sent: SendRequest, handler: Any) -> None:
    """Issue 20 item 3: the preferences link is a real preferences page, distinct from the unsubscribe."""
    import re
    html = emails()[-1]["html"]
    links = re.findall(r'href="(https://[^"]*/u/[^"]*)"', html)
    preferences = [u for u in links if "view=preferences" in u]
    assert preferences and any("view=preferences" not in u for u in links)  # both links, different
    token = urlsplit(preferences[0]).path.rsplit("/u/", 1)[1]
    body = call(handler, "GET", token, query=PREFERENCES)["body"]
    assert 'name="email" value="1" checked' in body  # the current consent, ticked
    assert 'name="sms"' not in body  # never consented: no box (a link may revoke, never grant)
    assert "Подписаться снова можно" in body  # …and it says how to subscribe
    assert 'name="locale" value="ru" checked' in body and 'name="locale" value="en"' in body


def test_pages_speak_the_customers_language(s: Any, handler: Any) -> None:
    """Issue 16 item 7: the customer's `locale`, else the browser's, else the shop's default; ?lang= wins."""
    customer(s, "u3", email="u3@example.com", locale="en-GB")
    en = call(handler, "GET", token_for(s, "u3"))["body"]
    assert '<html lang="en">' in en and "Unsubscribe" in en and "Отписаться" not in en
    ru = call(handler, "GET", token_for(s, "u1"), language="en;q=0.5, ru")["body"]  # no locale on u1
    assert '<html lang="ru">' in ru and "Отписаться" in ru and "Unsubscribe" not in ru
    browser = call(handler, "GET", "not-a-token", language="de-DE, en-US;q=0.8")
    assert browser["statusCode"] == 400 and '<html lang="en">' in browser["body"] and "Invalid link" in browser["body"]
    assert '<html lang="ru">' in call(handler, "GET", "not-a-token")["body"]  # the shop's default
    asked = call(handler, "GET", token_for(s, "u3"), query={"lang": "ru"})["body"]
    assert '<html lang="ru">' in asked


def test_the_preferences_page_sets_the_language_of_messages(s: Any, sent: SendRequest, handler: Any) -> None:
    token = mailed_token(s)
    log_before = len(stored(s, "u1").profile.consent_log)
    resp = call(handler, "POST", token, "action=preferences&shown_email=1&email=1&locale=en", FORM)
    assert resp["statusCode"] == 200 and '<html lang="en">' in resp["body"]  # the answer in the new language
    profile = stored(s, "u1").profile
    assert profile.traits["locale"] == "en" and consent(s, "u1").granted is True
    assert len(profile.consent_log) == log_before  # a language is not a consent change
    # the same form again changes nothing
    call(handler, "POST", token, "action=preferences&shown_email=1&email=1&locale=en", FORM)
    assert stored(s, "u1").profile.version == profile.version


def test_a_box_not_shown_is_left_as_it_is(s: Any, handler: Any) -> None:
    customer(s, "u4", email="u4@example.com", phone="+79160000004", sms_consent=True)
    token = token_for(s, "u4")
    # a form that drew only the email box (say, SMS was granted after the page was opened)
    call(handler, "POST", token, "action=preferences&shown_email=1", FORM)
    assert consent(s, "u4").granted is False and consent(s, "u4", "sms").granted is True


def test_one_click_post_unsubscribes_at_once(s: Any, sent: SendRequest, handler: Any) -> None:
    token = mailed_token(s)
    resp = call(handler, "POST", token, "List-Unsubscribe=One-Click", FORM)
    assert resp["statusCode"] == 200
    c = consent(s, "u1")
    assert c is not None and c.granted is False and c.source == "one_click"
    entry = stored(s, "u1").profile.consent_log[-1]
    assert entry["channel"] == "email" and entry["granted"] is False and entry["source"] == "one_click"
    assert entry["evidence"]["token_ledger"] == sent.ledger_id
    assert totals(s, "promo")["unsubscribed"] == 1
    # effective for the very next send, with its reason
    clock.set_now(clock.now() + timedelta(days=2))
    out = sender(s).send(request(rule="promo-b"))
    assert (out.status, out.reason) == ("skipped", "unsubscribed")
    # transactional mail still goes out
    assert sender(s).send(request(rule="order", event={"properties": {"order_id": "9"}})).status == "sent"


def test_one_click_post_as_multipart_form_data(s: Any, sent: SendRequest, handler: Any) -> None:
    boundary = "----x7f3"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n")
    resp = call(handler, "POST", mailed_token(s), body, f"multipart/form-data; boundary={boundary}", b64=True)
    assert resp["statusCode"] == 200
    c = consent(s, "u1")
    assert c.granted is False and c.source == "one_click"


def test_repeated_one_click_posts_log_and_count_once(s: Any, sent: SendRequest, handler: Any) -> None:
    token = mailed_token(s)
    log_before = len(stored(s, "u1").profile.consent_log)
    for _ in range(3):
        assert call(handler, "POST", token, "List-Unsubscribe=One-Click", FORM)["statusCode"] == 200
    assert len(stored(s, "u1").profile.consent_log) == log_before + 1
    assert totals(s, "promo")["unsubscribed"] == 1


def test_the_link_cannot_grant_consent_again(s: Any, sent: SendRequest, handler: Any) -> None:
    """Issue 15 item 9: `action=preferences&email=1` after an unsubscribe (or `sms=1` for a refused SMS
    consent) turned a refusal into consent; the link may only revoke."""
    token = mailed_token(s)
    call(handler, "POST", token, "List-Unsubscribe=One-Click", FORM)
    assert consent(s, "u1").granted is False
    clock.set_now(clock.now() + timedelta(minutes=5))
    call(handler, "POST", token, "action=preferences&email=1&sms=1", FORM)
    assert consent(s, "u1").granted is False and consent(s, "u1").source == "one_click"
    assert consent(s, "u1", "sms").granted is False
    sources = [(e["granted"], e["source"]) for e in stored(s, "u1").profile.consent_log if e["channel"] == "email"]
    assert sources[-1] == (False, "one_click")


def test_preferences_form_changes_only_what_changed(s: Any, sent: SendRequest, handler: Any) -> None:
    token = mailed_token(s)
    log_before = len(stored(s, "u1").profile.consent_log)
    # the page submitted as shown (email ticked, sms not): nothing changes, nothing is logged
    call(handler, "POST", token, "action=preferences&email=1", FORM)
    assert len(stored(s, "u1").profile.consent_log) == log_before
    assert consent(s, "u1", "sms").granted is False
    # ticking SMS grants nothing (the link only revokes); unticking email unsubscribes
    call(handler, "POST", token, "action=preferences&sms=1", FORM)
    assert consent(s, "u1", "sms").granted is False
    assert consent(s, "u1").granted is False and consent(s, "u1").source == "preferences"
    assert len(stored(s, "u1").profile.consent_log) == log_before + 1


def test_the_page_button_unsubscribes_the_tokens_channel(s: Any, handler: Any) -> None:
    customer(s, "u2", email="u2@example.com", phone="+79160000002", sms_consent=True)
    token = token_for(s, "u2", channel="sms")
    assert call(handler, "POST", token, "action=unsubscribe&channel=sms", FORM)["statusCode"] == 200
    assert consent(s, "u2", "sms").granted is False and consent(s, "u2", "sms").source == "unsubscribe"
    assert consent(s, "u2", "email").granted is True


def test_invalid_or_expired_tokens_are_refused(s: Any, sent: SendRequest, handler: Any) -> None:
    token = mailed_token(s)
    tampered = token.replace("cu1", "cu9")
    assert tampered != token
    for method, body in (("GET", None), ("POST", "List-Unsubscribe=One-Click")):
        resp = call(handler, method, tampered, body, FORM if body else None)
        assert resp["statusCode"] == 400
    assert consent(s, "u1").granted is True
    clock.set_now(clock.now() + timedelta(days=400))
    assert call(handler, "POST", token, "List-Unsubscribe=One-Click", FORM)["statusCode"] == 400
    # an NPS token is not an unsubscribe token
    from retention.messaging.links import nps_urls
    _, nps = nps_urls("https://x", s.deps.config.secrets("links"), "u1", "nps", "l", clock.now())
    assert call(handler, "GET", nps.rsplit("/", 1)[1])["statusCode"] == 400


def test_unsubscribe_for_an_erased_customer_does_not_recreate_the_profile(s: Any, handler: Any) -> None:
    from retention.admin.views import Admin
    token = token_for(s)
    Admin(s.deps).forget("u1")
    assert call(handler, "POST", token, "List-Unsubscribe=One-Click", FORM)["statusCode"] == 200
    assert not stored(s, "u1").exists
