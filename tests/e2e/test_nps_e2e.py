"""NPS over HTTP on the local stack: a picked-up order leads to a survey, the score link shows a page and
records nothing, the form records a detractor who enters `complaint` and gets the follow-up, the report
shows the NPS with its label; the webhook refuses bad signatures and replays."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from retention.core import tokens

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
ADMIN = {"Authorization": "Bearer dev-admin-token"}
SCORE_LINK = re.compile(r"(https?://[^\s\"'<>]+/nps/[A-Za-z0-9_.~\-]+)\?score=(\d+)")


def send_raw(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str, str]:
    """(status, content type, text) of a request with an exact body (a form, a signed webhook)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def local_path(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_pickup_survey_link_form_detractor_follow_up_and_report(local: Any) -> None:
    uid, email, shop = "e2e-nps-1", "nps.e2e@example.com", "e2e-nps-shop"
    props = {"order_id": "e2e-nps-o1", "shop": shop}
    status, reply = local.request("POST", "/v1/batch", {"batch": [
        {"type": "identify", "userId": uid, "messageId": "e2e-nps-id",
         "traits": {"email": email, "phone": "+79990001122", "first_name": "Вера", "email_consent": True}},
        {"type": "track", "userId": uid, "event": "Order Ready for Pickup", "messageId": "e2e-nps-ready",
         "properties": props},
        {"type": "track", "userId": uid, "event": "Order Picked Up", "messageId": "e2e-nps-picked",
         "properties": props},
    ]}, AUTH)
    assert status == 200 and reply["accepted"] == 3, reply

    def survey() -> list[dict[str, Any]]:
        return [m for m in local.outbox() if m["to"] == email and m["rule"] == "nps-survey"]

    assert survey() == []  # one day later, not at once
    local.advance(26 * 3600)
    mail = local.expect(survey)[0]
    links = SCORE_LINK.findall(mail["html"])  # the text part has one survey link, not eleven (MIXED_ES)
    assert [int(n) for _, n in links] == list(range(11))
    assert len({root for root, _ in links}) == 1
    link = f"{links[3][0]}?score=3"

    # the link opens a confirm page with a comment box; nothing is recorded (link scanners click too)
    status, ctype, page = send_raw(local.url + local_path(link), "GET", None, {})
    assert status == 200 and ctype.startswith("text/html")
    assert "<b>3</b>" in page and 'name="comment"' in page and 'method="post"' in page
    view = local.admin(f"/admin/customers/{uid}")
    assert view["kpis"]["nps_last_score"] is None and view["nps"].get("history", []) == []
    assert view["segments"]["nps_group"] is None

    # the form records the score: a detractor
    form = urlencode({"score": "3", "comment": "Пункт выдачи был закрыт"}).encode()
    status, ctype, page = send_raw(local.url + local_path(links[3][0]), "POST", form,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "оценку: 3" in page, page
    view = local.admin(f"/admin/customers/{uid}")
    assert view["kpis"]["nps_last_score"] == 3
    assert view["nps"]["history"][0]["comment"] == "Пункт выдачи был закрыт"
    assert view["segments"]["nps_group"] == "detractor"
    assert view["segments"]["lifecycle"] == "complaint"

    # the follow-up (detractor branch): an apology and a contact
    def follow_up() -> list[dict[str, Any]]:
        return [m for m in local.outbox() if m["to"] == email and m["rule"] == "nps-follow-up"]

    if not follow_up():
        local.advance(60)
    mails = local.expect(follow_up)
    assert len(mails) == 1 and "Простите" in mails[0]["subject"]

    # the report: this shop's NPS is one detractor, −100, "abysmal" (Очень ужасный)
    report = local.admin("/admin/nps?period=day")
    assert report["by_shop"][shop] == {"nps": -100.0, "label": "abysmal", "label_ru": "Очень ужасный",
                                       "responses": 1, "promoters": 0, "passives": 0, "detractors": 1}
    assert report["by_stage"]["pickup"]["responses"] >= 1
    assert report["overall"]["label"] and report["trend"]


def test_webhook_refuses_bad_signatures_and_replays(local: Any) -> None:
    uid = "e2e-nps-w"
    status, _ = local.request("POST", "/v1/batch", {"batch": [
        {"type": "identify", "userId": uid, "messageId": "e2e-nps-w-id",
         "traits": {"email": "nps.w.e2e@example.com", "email_consent": True}}]}, AUTH)
    assert status == 200
    url = local.url + "/v1/webhooks/nps"
    raw = json.dumps({"event_id": "e2e-evt-1", "userId": uid, "score": 9, "comment": "Всё отлично"}).encode()
    # signatures are checked against the virtual clock
    now = int(datetime.fromisoformat(local.request("GET", "/_local/clock")[1]["now"].replace("Z", "+00:00"))
              .timestamp())

    def post(signature: str | None) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Signature"] = signature
        status, ctype, text = send_raw(url, "POST", raw, headers)
        assert ctype.startswith("application/json"), text
        return status, json.loads(text)

    for signature in (None, "", "t=1,v1=deadbeef", tokens.sign_webhook(raw, "not-the-secret", now)):
        status, error = post(signature)
        assert status == 401 and error["code"] == "invalid_signature" and error["message"], error

    # the secret is created in the config table; a rotation hands the new one to the operator
    secret = local.request("POST", "/admin/webhooks/nps/rotate", {}, ADMIN)[1]["secret"]
    status, error = post(tokens.sign_webhook(raw, secret, now - 3600))
    assert status == 401 and "stale" in error["message"]
    status, body = post(tokens.sign_webhook(raw, secret, now))
    assert status == 200 and body == {"success": True, "customer_id": uid, "score": 9, "group": "promoter"}
    status, error = post(tokens.sign_webhook(raw, secret, now + 1))
    assert status == 409 and error["code"] == "replayed"
    view = local.admin(f"/admin/customers/{uid}")
    assert [h["score"] for h in view["nps"]["history"]] == [9]
    assert view["segments"]["nps_group"] == "promoter"
