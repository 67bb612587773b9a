"""The send brake over HTTP on the local stack: complaints pushed through /_local/feedback pause marketing,
transactional mail still flows, paused marketing is deferred (not dropped), resume sends it."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer dev-admin-token"}


def _batch(local: Any, messages: list[dict[str, Any]]) -> None:
    import base64
    auth = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
    status, body = local.request("POST", "/v1/batch", {"batch": messages}, headers=auth)
    assert status == 200 and not body["rejected"], body


def _signups(prefix: str, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        uid = f"{prefix}-{i}"
        out += [{"type": "identify", "userId": uid, "messageId": f"{uid}-id",
                 "traits": {"email": f"{uid}@brake.example", "email_consent": True}},
                {"type": "track", "userId": uid, "event": "Signed Up", "messageId": f"{uid}-su"}]
    return out


def test_complaints_pause_marketing_transactional_flows_resume_sends_the_deferred(local: Any) -> None:
    status, sending = local.request("GET", "/admin/sending", headers=ADMIN)
    assert status == 200 and sending["marketing"] == "active"
    assert set(sending) >= {"marketing", "reason", "since", "bounce_rate", "complaint_rate", "window"}
    try:
        # 120 sign-ups: 120 welcome emails (the 0 h message) go out
        for start in range(0, 120, 40):
            _batch(local, _signups("brk", 120)[start * 2:(start + 40) * 2])
        sent = local.request("GET", "/_local/outbox?rule=welcome&to=brk-7@brake.example")[1]
        assert len(sent) == 1 and sent[0]["to"] == "brk-7@brake.example"
        # two complaints over >= 100 sends: 1.6 % > 0.05 % (half of SES's 0.1 % review threshold)
        for who in ("brk-1", "brk-2"):
            status, fb = local.request("POST", "/_local/feedback", {"to": f"{who}@brake.example", "type": "Complaint"})
            assert status == 200 and fb["type"] == "Complaint", fb
        status, sending = local.request("GET", "/admin/sending", headers=ADMIN)
        assert sending["marketing"] == "paused", sending
        assert sending["complaint_rate"] > 0.0005 and "complaint" in sending["reason"]
        assert sending["window"]["sent"] >= 100 and sending["since"]
        # transactional still flows: an order's confirmation goes out at once (issue 14: the welcome is marketing)
        _batch(local, [{"type": "track", "userId": "brk-9", "event": "Order Completed", "messageId": "brk-9-o1",
                        "properties": {"order_id": "brk-o1", "revenue": 990}}])
        confirmations = local.request("GET", "/_local/outbox?rule=order-confirmation&to=brk-9@brake.example")[1]
        assert len(confirmations) == 1, confirmations
        # the next day's marketing offer is deferred, not sent and not dropped
        local.advance(86400 + 600)
        offers = local.request("GET", "/_local/outbox?rule=welcome&to=brk-5@brake.example")[1]
        assert [m["step"] for m in offers] == [1]
        customer = local.admin("/admin/customers/brk-5")
        assert any(m["status"] == "deferred" for m in customer["messages"]), customer["messages"]
        # only an admin resumes
        status, viewer = local.request("POST", "/admin/tokens", {"name": "vera", "role": "viewer"}, headers=ADMIN)
        assert status == 201
        status, _ = local.request("POST", "/admin/sending/resume", {},
                                     headers={"Authorization": f"Bearer {viewer['token']}"})
        assert status == 403
        status, resumed = local.request("POST", "/admin/sending/resume", {}, headers=ADMIN)
        assert status == 200 and resumed["marketing"] == "active"
        status, sending = local.request("GET", "/admin/sending", headers=ADMIN)
        assert sending["marketing"] == "active" and sending["window"]["sent"] == 0  # a fresh window
        local.advance(31 * 60)
        offers = local.request("GET", "/_local/outbox?rule=welcome&to=brk-5@brake.example")[1]
        assert [m["step"] for m in offers] == [1, 3]
        audit = local.admin("/admin/audit?kind=sending")["entries"]
        assert [(e["who"], e["action"]) for e in reversed(audit)][-2:] == [("brake", "pause"), ("local", "resume")]
    finally:
        local.request("POST", "/admin/sending/resume", {}, headers=ADMIN)


def test_local_feedback_opens_clicks_and_bad_input(local: Any) -> None:
    _batch(local, _signups("fbk", 1))
    status, fb = local.request("POST", "/_local/feedback", {"to": "fbk-0@brake.example", "type": "Open",
                                                            "rule": "welcome"})
    assert status == 200 and fb["rule"] == "welcome"
    stats = local.admin("/admin/stats/rules/welcome")
    assert stats["totals"]["opened"] >= 1
    assert local.request("POST", "/_local/feedback", {"to": "nobody@brake.example", "type": "Open"})[0] == 404
    assert local.request("POST", "/_local/feedback", {"to": "fbk-0@brake.example", "type": "Opened"})[0] == 400
