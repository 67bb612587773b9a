"""NPS end to end in process (moto): the survey after a pickup, the score links (a GET confirm page that
records nothing, a POST that records), the follow-up per NPS group, the signed webhook (signatures,
tolerance, replays, rotation), bad input, and the `/admin/nps` report checked by hand."""

from __future__ import annotations

import json
import re
import zlib
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from retention.admin.people import create_admin_token
from retention.core import clock, ddb, tokens

from tests.support import LambdaContext, Stack, advance, drain_sends, load_handler, sent_emails

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
ADMIN_TOKEN = "nps-test-admin-token"
LINK = re.compile(r"https://shop\.test/api/nps/([A-Za-z0-9_.~\-]+)\?score=(\d+)")
SHORT = re.compile(r"https://shop\.test/api/nps/([A-Za-z0-9_.~\-]+)(?![A-Za-z0-9_.~\-?])")


def _load(name: str) -> ModuleType:
    return load_handler(name, "nps")


@pytest.fixture(scope="module")
def nps_fn() -> ModuleType:
    return _load("nps_webhook")


@pytest.fixture(scope="module")
def admin_fn() -> ModuleType:
    return _load("admin_api")


class Reply:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = int(raw["statusCode"])
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        for k, vs in (raw.get("multiValueHeaders") or {}).items():
            self.headers[k.lower()] = ", ".join(vs)
        self.text = raw.get("body") or ""

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.text)


def call(fn: ModuleType, method: str, path: str, resource: str, *, params: dict[str, str] | None = None,
         query: dict[str, str] | None = None, body: str | bytes | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    """An API Gateway (REST) proxy event, as the stage would deliver it."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    hdrs = headers or {}
    event = {
        "resource": resource, "path": path, "httpMethod": method, "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": params or None, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": path, "stage": "prod",
                           "requestId": "req-nps", "identity": {"sourceIp": "203.0.113.9"}},
        "body": text, "isBase64Encoded": False,
    }
    return Reply(fn.lambda_handler(event, LambdaContext()))


def open_link(fn: ModuleType, token: str, score: str | None = None) -> Reply:
    return call(fn, "GET", f"/nps/{token}", "/nps/{token}", params={"token": token},
                query={"score": score} if score is not None else None)


def post_answer(fn: ModuleType, token: str, **fields: Any) -> Reply:
    return call(fn, "POST", f"/nps/{token}", "/nps/{token}", params={"token": token}, body=urlencode(fields),
                headers={"Content-Type": "application/x-www-form-urlencoded"})


def post_webhook(fn: ModuleType, raw: bytes, signature: str | None) -> Reply:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature"] = signature
    return call(fn, "POST", "/v1/webhooks/nps", "/v1/webhooks/nps", body=raw, headers=headers)


def admin_nps(fn: ModuleType, **query: str) -> dict[str, Any]:
    reply = call(fn, "GET", "/admin/nps", "/admin/nps", query=query or None,
                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert reply.status == 200, reply.text
    return reply.json()


# ---- the shop's side -------------------------------------------------------------------------------------


def customer(uid: str, *, email: bool = True, sms: bool = False, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": f"id-{uid}",
            "traits": {"email": f"{uid}@example.com", "phone": "+7999" + str(zlib.crc32(uid.encode()) % 10**7).zfill(7),
                       "first_name": "Нина", "email_consent": email, "sms_consent": sms, **traits}}


def pickup(uid: str, order: str, shop: str = "msk-1") -> list[dict[str, Any]]:
    props = {"order_id": order, "shop": shop}
    return [{"type": "track", "userId": uid, "event": "Order Ready for Pickup", "messageId": f"rdy-{order}",
             "properties": props},
            {"type": "track", "userId": uid, "event": "Order Picked Up", "messageId": f"pick-{order}",
             "properties": props}]


def emails_to(uid: str, rule: str | None = None) -> list[dict[str, Any]]:
    return [m for m in sent_emails() if f"{uid}@example.com" in m["to"]
            and (rule is None or m["headers"].get("X-Retention-Rule") == rule)]


def sms_sent() -> list[tuple[str, str]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    from tests.support import REGION
    return list(sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.values())


def survey_token(uid: str) -> str:
    """The token of the latest survey email: every score link carries the same one."""
    mail = emails_to(uid, "nps-survey")[-1]
    links = LINK.findall(mail["html"])
    assert [int(score) for _, score in links] == list(range(11))
    # the text part carries one survey link (the page offers every score), not eleven URLs
    assert f"https://shop.test/api/nps/{links[0][0]}" in mail["text"] and "?score=" not in mail["text"]
    return links[0][0]


def surveyed(s: Stack, *uids: str, shop: str = "msk-1") -> dict[str, str]:
    """Customers who picked up an order yesterday and got the survey: {uid: token}."""
    s.ingest([m for uid in uids for m in (customer(uid), *pickup(uid, f"o-{uid}", shop))])
    advance(s, days=1, hours=1)
    return {uid: survey_token(uid) for uid in uids}


def nps_rows(s: Stack) -> list[dict[str, Any]]:
    items = []
    for raw in s.deps.dynamodb.scan(TableName=s.deps.env.messages_table)["Items"]:
        item = ddb.deserialize(raw) or {}
        if str(item.get("pk", "")).startswith("NPS#"):
            items.append(item)
    return items


def assert_nothing_recorded(s: Stack, uid: str) -> None:
    assert s.profile(uid).nps.get("history", []) == []
    assert [r for r in nps_rows(s) if r["customer_id"] == uid] == []


def assert_clear_page(reply: Reply, status: int, *words: str) -> None:
    assert reply.status == status, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    assert "Traceback" not in reply.text and "Exception" not in reply.text
    for word in words:
        assert word in reply.text


@pytest.fixture
def nps_stack(library_stack: Stack) -> Stack:
    create_admin_token(library_stack.deps.config, "tests", ADMIN_TOKEN)
    return library_stack


# ---- the survey ------------------------------------------------------------------------------------------


def test_survey_goes_one_day_after_pickup_and_at_most_once_per_90_days(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("n1"), *pickup("n1", "o-1")])
    advance(s, hours=23)
    assert emails_to("n1", "nps-survey") == []
    advance(s, hours=2)
    mails = emails_to("n1", "nps-survey")
    assert len(mails) == 1
    token = survey_token("n1")
    # eleven links, one per score, in the HTML too; the token names the customer, the survey and the message
    assert sorted(int(n) for _, n in LINK.findall(mails[0]["html"])) == list(range(11))
    claims = tokens.verify(token, s.deps.config.secrets("links"), "nps", clock.now())
    assert claims["c"] == "n1" and claims["s"] == "nps-survey" and claims["l"]
    # another pickup ten days later: no second survey within 90 days
    advance(s, days=9)
    s.ingest(pickup("n1", "o-2"))
    advance(s, days=2)
    assert len(emails_to("n1", "nps-survey")) == 1
    # the first wave is answered; a pickup after the cooldown brings a new survey, a new invitation
    assert post_answer(nps_fn, token, score="7").status == 200
    advance(s, days=80)
    s.ingest(pickup("n1", "o-3", shop="spb-1"))
    advance(s, days=1, hours=1)
    assert len(emails_to("n1", "nps-survey")) == 2
    second = survey_token("n1")
    assert second != token
    assert post_answer(nps_fn, second, score="9").status == 200
    # each wave counts on its own, in its own month; the profile keeps both in its history
    assert [h["score"] for h in s.profile("n1").nps["history"]] == [7, 9]
    assert s.profile("n1").nps["last_score"] == 9
    report = report_of(s, date_from="2026-11-01")
    assert report["overall"]["responses"] == 2
    assert [t["responses"] for t in report["trend"]] == [1, 1]
    assert report["by_shop"].keys() == {"msk-1", "spb-1"}


def report_of(s: Stack, **kwargs: Any) -> dict[str, Any]:
    from retention.surveys.answers import Surveys
    return Surveys(s.deps).report(kwargs.get("date_from"), kwargs.get("date_to"), kwargs.get("period", "month"))


def test_sms_variant_carries_one_short_link(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("sms1", email=False, sms=True), *pickup("sms1", "o-s1")])
    advance(s, days=1, hours=1)
    assert emails_to("sms1") == []
    texts = [text for _phone, text in sms_sent() if "/nps/" in text]
    assert len(texts) == 1
    assert "?score=" not in texts[0]
    token = SHORT.findall(texts[0])[0]
    # the short link opens the page with all eleven scores to pick from, and records nothing
    page = open_link(nps_fn, token)
    assert_clear_page(page, 200, 'method="post"')
    assert all(f'value="{n}"' in page.text for n in range(11))
    assert_nothing_recorded(s, "sms1")
    assert post_answer(nps_fn, token, score="10").status == 200
    assert s.profile("sms1").nps["last_score"] == 10


# ---- the link: confirm page, answer, follow-up -------------------------------------------------------------


def test_link_shows_a_confirm_page_and_the_form_records_a_detractor(nps_stack: Stack, nps_fn: ModuleType,
                                                                     admin_fn: ModuleType) -> None:
    s = nps_stack
    token = surveyed(s, "d1")["d1"]
    # a link scanner (or the customer) opens the score link: a page, nothing recorded, nothing sent
    before = len(sent_emails())
    for _ in range(2):
        page = open_link(nps_fn, token, "3")
        assert_clear_page(page, 200, "<b>3</b>", 'method="post"', 'name="comment"', 'name="score" value="3"')
    drain_sends(s)
    assert_nothing_recorded(s, "d1")
    assert len(sent_emails()) == before
    assert s.profile("d1").segments.get("nps_group", {}) == {}
    assert admin_nps(admin_fn)["overall"]["responses"] == 0
    # the form records the score and the comment
    done = post_answer(nps_fn, token, score="3", comment="Долго ждала выдачи")
    assert_clear_page(done, 200, "вашу оценку: 3")
    p = s.profile("d1")
    assert p.nps["last_score"] == 3
    assert p.kpis["nps_last_score"] == 3
    assert p.nps["history"][0]["comment"] == "Долго ждала выдачи"
    assert p.nps["history"][0]["survey"] == "nps-survey"
    assert set(p.segments["nps_group"]) == {"detractor"}
    assert set(p.segments["lifecycle"]) == {"complaint"}
    # the follow-up's detractor branch: an apology and a contact, the same day
    drain_sends(s)
    follow = emails_to("d1", "nps-follow-up")
    assert len(follow) == 1
    assert "Простите" in follow[0]["subject"]
    assert "свяжется с вами" in follow[0]["text"]
    journey = s.profile("d1").journeys["nps-follow-up"]
    assert journey["trigger"]["properties"]["segment"] == "detractor"
    # the admin view agrees
    view = call(admin_fn, "GET", "/admin/customers/d1", "/admin/customers/{customer_id}",
                params={"customer_id": "d1"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert view["segments"]["nps_group"] == "detractor" and view["segments"]["lifecycle"] == "complaint"
    assert view["kpis"]["nps_last_score"] == 3
    # the answer carries the pickup's shop and stage into the report
    row = next(r for r in nps_rows(s) if r["customer_id"] == "d1")
    assert row["shop"] == "msk-1" and row["stage"] == "pickup" and row["source"] == "link"


def test_a_later_answer_replaces_the_earlier_one(nps_stack: Stack, nps_fn: ModuleType,
                                                 admin_fn: ModuleType) -> None:
    s = nps_stack
    token = surveyed(s, "r1")["r1"]
    assert post_answer(nps_fn, token, score="4").status == 200
    advance(s, hours=2)
    assert post_answer(nps_fn, token, score="9", comment="Разобрались, спасибо").status == 200
    p = s.profile("r1")
    assert [h["score"] for h in p.nps["history"]] == [9]
    assert p.nps["last_score"] == 9
    assert set(p.segments["nps_group"]) == {"promoter"}
    report = admin_nps(admin_fn)
    assert report["overall"] == {**report["overall"], "responses": 1, "promoters": 1, "detractors": 0,
                                 "nps": 100.0, "label": "perfect"}
    assert len(nps_rows(s)) == 1


@pytest.mark.parametrize(("score", "template_words", "group"), [
    ("8", "на «десятку»", "passive"),
    ("10", "Оставить отзыв", "promoter"),
])
def test_passive_and_promoter_follow_ups(nps_stack: Stack, nps_fn: ModuleType, score: str,
                                         template_words: str, group: str) -> None:
    s = nps_stack
    uid = f"g-{group}"
    token = surveyed(s, uid)[uid]
    assert post_answer(nps_fn, token, score=score).status == 200
    drain_sends(s)
    p = s.profile(uid)
    assert set(p.segments["nps_group"]) == {group}
    assert "complaint" not in p.segments.get("lifecycle", {})
    follow = emails_to(uid, "nps-follow-up")
    assert len(follow) == 1
    assert template_words in follow[0]["text"]


# ---- the link: what goes wrong ---------------------------------------------------------------------------------


def test_tampered_and_expired_links_get_a_clear_page(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    token = surveyed(s, "t1")["t1"]
    signed, _, mac = token.rpartition("~")
    forged_mac = signed + "~" + ("A" if mac[0] != "A" else "B") + mac[1:]
    other_customer = token.replace("~ct1~", "~cd1~")
    assert other_customer != token
    unsub = tokens.sign({"c": "t1"}, s.deps.config.secrets("links")[0], expires_at=None, purpose="unsub")
    for bad in (forged_mac, other_customer, "garbage", unsub):
        assert_clear_page(open_link(nps_fn, bad, "5"), 400, "недействительна")
        assert_clear_page(post_answer(nps_fn, bad, score="5"), 400, "недействительна")
    assert_nothing_recorded(s, "t1")
    # survey links live 30 days
    clock.set_now(clock.now() + timedelta(days=31))
    assert_clear_page(open_link(nps_fn, token, "5"), 410, "устарела")
    assert_clear_page(post_answer(nps_fn, token, score="5"), 410, "устарела")
    assert_nothing_recorded(s, "t1")


@pytest.mark.parametrize(("fields", "message"), [
    ({"score": "abc"}, "whole number from 0 to 10"),
    ({"score": "11"}, "between 0 and 10"),
    ({"score": "-1"}, "between 0 and 10"),
    ({"score": "7.5"}, "whole number"),
    ({"score": ""}, "score is required"),
    ({}, "score is required"),
    ({"score": "7", "comment": "x" * 2001}, "comment too long"),
])
def test_bad_answers_are_refused_with_a_message(nps_stack: Stack, nps_fn: ModuleType, fields: dict[str, str],
                                                message: str) -> None:
    s = nps_stack
    token = surveyed(s, "b1")["b1"]
    reply = post_answer(nps_fn, token, **fields)
    assert_clear_page(reply, 400, message, 'method="post"')  # the form again, to correct the answer
    assert_nothing_recorded(s, "b1")
    # the confirm page explains a bad score instead of failing
    if fields.get("score"):
        assert_clear_page(open_link(nps_fn, token, fields["score"]), 200)


def test_a_link_of_an_unknown_customer_records_nothing(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    ghost = tokens.sign({"c": "ghost", "s": "nps-survey", "l": "0" * 32}, s.deps.config.secrets("links")[0],
                        expires_at=clock.now() + timedelta(days=1), purpose="nps")
    assert_clear_page(open_link(nps_fn, ghost, "9"), 200)  # the page itself records nothing
    assert_clear_page(post_answer(nps_fn, ghost, score="9"), 404, "больше недоступен")
    assert nps_rows(s) == []
    from retention.customers.store import ProfileRepo
    assert not ProfileRepo(s.deps.dynamodb, s.deps.env.profiles_table).load("ghost", clock.now()).exists


# ---- the webhook ------------------------------------------------------------------------------------------------


def webhook_secret(s: Stack) -> bytes:
    return s.deps.config.secrets("nps-webhook")[0]


def signed(s: Stack, body: dict[str, Any], *, secret: bytes | str | None = None,
           at_offset: int = 0) -> tuple[bytes, str]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    t = int(clock.now().timestamp()) + at_offset
    return raw, tokens.sign_webhook(raw, secret or webhook_secret(s), t)


def test_webhook_with_a_good_signature_records_the_answer(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("w1"), customer("w2")])
    raw, sig = signed(s, {"event_id": "evt-1", "userId": "w1", "score": 2, "comment": "Курьер опоздал",
                          "survey": "nps-delivery", "shop": "msk-2", "extra": {"ignored": True}})
    reply = post_webhook(nps_fn, raw, sig)
    assert reply.status == 200, reply.text
    assert reply.json() == {"success": True, "customer_id": "w1", "score": 2, "group": "detractor"}
    p = s.profile("w1")
    assert p.nps["last_score"] == 2 and p.nps["history"][0]["survey"] == "nps-delivery"
    assert set(p.segments["nps_group"]) == {"detractor"} and set(p.segments["lifecycle"]) == {"complaint"}
    drain_sends(s)
    assert len(emails_to("w1", "nps-follow-up")) == 1
    row = next(r for r in nps_rows(s) if r["customer_id"] == "w1")
    assert row == {**row, "source": "webhook", "event_id": "evt-1", "stage": "delivery", "shop": "msk-2"}
    # by email, as a string score (survey tools send both)
    raw, sig = signed(s, {"event_id": "evt-2", "email": "W2@example.com", "score": "8"})
    reply = post_webhook(nps_fn, raw, sig)
    assert reply.status == 200 and reply.json()["customer_id"] == "w2"
    assert s.profile("w2").nps["last_score"] == 8


def test_webhook_rejects_bad_stale_future_and_missing_signatures(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("w3")])
    body = {"event_id": "evt-sig", "userId": "w3", "score": 9}
    raw, good = signed(s, body)
    t = int(clock.now().timestamp())
    cases = {
        "wrong secret": signed(s, body, secret="not-the-secret")[1],
        "other body": signed(s, {**body, "score": 10})[1],
        "stale": signed(s, body, at_offset=-301)[1],
        "future": signed(s, body, at_offset=301)[1],
        "missing": None,
        "empty": "",
        "malformed": "sha256=abc",
        "no v1": f"t={t}",
        "bad t": good.replace(f"t={t}", "t=yesterday"),
    }
    for name, header in cases.items():
        reply = post_webhook(nps_fn, raw, header)
        assert reply.status == 401, (name, reply.text)
        error = reply.json()
        assert error["code"] == "invalid_signature" and error["message"], name
    assert "stale" in post_webhook(nps_fn, raw, cases["stale"]).json()["message"]
    assert "future" in post_webhook(nps_fn, raw, cases["future"]).json()["message"]
    assert "missing" in post_webhook(nps_fn, raw, None).json()["message"]
    assert_nothing_recorded(s, "w3")
    # within the tolerance both ways the same body is fine
    raw2, edge = signed(s, body, at_offset=-299)
    assert post_webhook(nps_fn, raw2, edge).status == 200
    assert s.profile("w3").nps["last_score"] == 9


def test_webhook_replay_is_refused_and_recorded_once(nps_stack: Stack, nps_fn: ModuleType,
                                                     admin_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("w4")])
    body = {"event_id": "evt-replay", "userId": "w4", "score": 10}
    raw, sig = signed(s, body)
    assert post_webhook(nps_fn, raw, sig).status == 200
    # the identical request again, and the same event re-signed later (a fresh signature, same event_id)
    again = post_webhook(nps_fn, raw, sig)
    assert again.status == 409 and again.json()["code"] == "replayed"
    advance(s, minutes=10)
    raw2, sig2 = signed(s, {**body, "score": 0})
    late = post_webhook(nps_fn, raw2, sig2)
    assert late.status == 409 and "evt-replay" in late.json()["message"]
    p = s.profile("w4")
    assert [h["score"] for h in p.nps["history"]] == [10]
    assert len(nps_rows(s)) == 1
    assert admin_nps(admin_fn)["overall"]["responses"] == 1


def test_webhook_secret_rotation_keeps_two_secrets_valid(nps_stack: Stack, nps_fn: ModuleType,
                                                         admin_fn: ModuleType) -> None:
    s = nps_stack
    s.ingest([customer("w5")])
    old = webhook_secret(s)
    rotated = call(admin_fn, "POST", "/admin/webhooks/nps/rotate", "/admin/webhooks/nps/rotate",
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert rotated.status == 200
    new = rotated.json()["secret"]
    assert new.encode() != old
    for n, secret in enumerate((old, new.encode())):
        raw, sig = signed(s, {"event_id": f"evt-rot-{n}", "userId": "w5", "score": 7 + n}, secret=secret)
        assert post_webhook(nps_fn, raw, sig).status == 200, n
    # a sender mid-rotation signs with both: accepted once
    raw = json.dumps({"event_id": "evt-rot-both", "userId": "w5", "score": 9}).encode()
    t = int(clock.now().timestamp())
    both = f"{tokens.sign_webhook(raw, old, t)},{tokens.sign_webhook(raw, new, t).split(',')[1]}"
    assert post_webhook(nps_fn, raw, both).status == 200
    # the next rotation retires the oldest secret
    s.deps.config.rotate_secret("nps-webhook")
    raw, sig = signed(s, {"event_id": "evt-rot-old", "userId": "w5", "score": 1}, secret=old)
    assert post_webhook(nps_fn, raw, sig).status == 401
    raw, sig = signed(s, {"event_id": "evt-rot-new", "userId": "w5", "score": 2}, secret=new)
    assert post_webhook(nps_fn, raw, sig).status == 200
    # four answers accepted; to the same survey, so the latest stands
    assert [h["score"] for h in s.profile("w5").nps["history"]] == [2]
    assert {r["event_id"] for r in nps_rows(s)} == {"evt-rot-new"}


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"event_id": "e-abc", "userId": "w6", "score": "abc"}, 400, "whole number from 0 to 10"),
    ({"event_id": "e-11", "userId": "w6", "score": 11}, 400, "between 0 and 10"),
    ({"event_id": "e-neg", "userId": "w6", "score": -1}, 400, "between 0 and 10"),
    ({"event_id": "e-none", "userId": "w6"}, 400, "score is required"),
    ({"event_id": "e-bool", "userId": "w6", "score": True}, 400, "score"),
    ({"userId": "w6", "score": 5}, 400, "event_id is required"),
    ({"event_id": "e-who", "score": 5}, 400, "userId or email is required"),
    ({"event_id": "e-long", "userId": "w6", "score": 5, "comment": "x" * 2001}, 400, "comment too long"),
    ({"event_id": "e-email", "email": "not-an-email", "score": 5}, 400, "email"),
    ({"event_id": "e-ghost", "userId": "ghost", "score": 5}, 404, "not found"),
    ({"event_id": "e-nobody", "email": "nobody@example.com", "score": 5}, 404, "nobody@example.com"),
    ([1, 2, 3], 400, "JSON object"),
])
def test_webhook_bad_input_is_a_clear_4xx(nps_stack: Stack, nps_fn: ModuleType, body: Any, status: int,
                                          message: str) -> None:
    s = nps_stack
    s.ingest([customer("w6")])
    raw = json.dumps(body).encode()
    reply = post_webhook(nps_fn, raw, tokens.sign_webhook(raw, webhook_secret(s), int(clock.now().timestamp())))
    assert reply.status == status, reply.text
    error = reply.json()
    assert error["code"] and message in error["message"], error
    assert_nothing_recorded(s, "w6")
    assert nps_rows(s) == []


def test_webhook_body_that_is_not_json(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    raw = b"score=9&userId=w7"
    reply = post_webhook(nps_fn, raw, tokens.sign_webhook(raw, webhook_secret(s), int(clock.now().timestamp())))
    assert reply.status == 400 and "not JSON" in reply.json()["message"]


def test_an_unknown_customer_does_not_burn_the_event_id(nps_stack: Stack, nps_fn: ModuleType) -> None:
    s = nps_stack
    body = {"event_id": "evt-early", "userId": "late-comer", "score": 9}
    raw, sig = signed(s, body)
    assert post_webhook(nps_fn, raw, sig).status == 404
    # the shop's identify arrives, the survey tool retries the same event: recorded, not a replay
    s.ingest([customer("late-comer")])
    assert post_webhook(nps_fn, raw, sig).status == 200
    assert s.profile("late-comer").nps["last_score"] == 9


# ---- the report -----------------------------------------------------------------------------------------------


def test_admin_nps_report_by_hand(nps_stack: Stack, nps_fn: ModuleType, admin_fn: ModuleType) -> None:
    s = nps_stack
    tokens_a = surveyed(s, "ra1", "ra2", "ra3", shop="msk-1")
    tokens_b = surveyed(s, "rb1", "rb2", shop="spb-1")
    answers = {"ra1": "10", "ra2": "9", "ra3": "3", "rb1": "8", "rb2": "0"}
    for uid, token in {**tokens_a, **tokens_b}.items():
        assert post_answer(nps_fn, token, score=answers[uid]).status == 200
    # ra3 thinks again: 3 → 7 (replaces; counted once, as a passive)
    assert post_answer(nps_fn, tokens_a["ra3"], score="7").status == 200
    # a delivery survey through the webhook, no shop
    s.ingest([customer("rw1")])
    raw, sig = signed(s, {"event_id": "evt-report", "userId": "rw1", "score": 6, "survey": "nps-delivery"})
    assert post_webhook(nps_fn, raw, sig).status == 200

    report = admin_nps(admin_fn)
    # kept: ra1 10 P, ra2 9 P, ra3 7 Pa, rb1 8 Pa, rb2 0 D, rw1 6 D → (2 − 2) / 6 = 0 → "mediocre"
    assert report["overall"] == {"nps": 0.0, "label": "mediocre", "label_ru": "Посредственный", "responses": 6,
                                 "promoters": 2, "passives": 2, "detractors": 2}
    # pickup: ra1 P, ra2 P, ra3 Pa, rb1 Pa, rb2 D → (2 − 1) / 5 = 20 "mediocre"; delivery: rw1 D → −100
    assert report["by_stage"]["pickup"] == {"nps": 20.0, "label": "mediocre", "label_ru": "Посредственный",
                                            "responses": 5, "promoters": 2, "passives": 2, "detractors": 1}
    assert report["by_stage"]["delivery"] == {"nps": -100.0, "label": "abysmal", "label_ru": "Очень ужасный",
                                              "responses": 1, "promoters": 0, "passives": 0, "detractors": 1}
    # msk-1: ra1 P, ra2 P, ra3 Pa → (2 − 0) / 3 = 66.7 "very good"; spb-1: rb1 Pa, rb2 D → −50 "terrible"
    assert report["by_shop"] == {
        "msk-1": {"nps": 66.7, "label": "very good", "label_ru": "Очень хороший", "responses": 3,
                  "promoters": 2, "passives": 1, "detractors": 0},
        "spb-1": {"nps": -50.0, "label": "terrible", "label_ru": "Ужасный", "responses": 2,
                  "promoters": 0, "passives": 1, "detractors": 1},
        # every answer counts by shop (issue 14): the webhook's answer without a shop under "unknown"
        "unknown": {"nps": -100.0, "label": "abysmal", "label_ru": "Очень ужасный", "responses": 1,
                    "promoters": 0, "passives": 0, "detractors": 1},
    }
    # every answer is in November 2026 (the clock starts on 2026-11-24)
    assert report["trend"] == [{"period_start": "2026-11-01", "nps": 0.0, "label": "mediocre",
                                "label_ru": "Посредственный", "responses": 6}]
    assert report["period"] == "month"
    assert report["scale"][0] == {"from": 100, "label": "perfect", "label_ru": "Идеальный, безупречный"}
    # per day, and narrowed to a range without answers
    daily = admin_nps(admin_fn, period="day")
    assert sum(t["responses"] for t in daily["trend"]) == 6
    empty = admin_nps(admin_fn, **{"from": "2026-01-01", "to": "2026-01-31"})
    assert empty["overall"] == {**empty["overall"], "nps": None, "label": None, "responses": 0}
    bad = call(admin_fn, "GET", "/admin/nps", "/admin/nps", query={"from": "yesterday"},
               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bad.status == 400 and "YYYY-MM-DD" in bad.json()["message"]
    assert call(admin_fn, "GET", "/admin/nps", "/admin/nps").status == 401


def test_survey_pages_speak_the_customers_language(nps_stack: Stack, nps_fn: ModuleType) -> None:
    """Issue 16 item 7: an English-speaking customer's survey pages are in English (Russian is the default)."""
    s = nps_stack
    token = surveyed(s, "en1")["en1"]
    assert '<html lang="ru">' in open_link(nps_fn, token, "9").text
    s.ingest([{"type": "identify", "userId": "en1", "messageId": "loc-en1", "traits": {"locale": "en-US"}}])
    page = open_link(nps_fn, token, "9").text
    assert '<html lang="en">' in page and "How likely are you to recommend us" in page and "Насколько" not in page
    assert "We recorded your score: 9" in post_answer(nps_fn, token, score="9").text
