"""Black-box over HTTP, as a shop and a marketer would use it: the real Segment and Rudder clients."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def test_health_and_clock(local: Any) -> None:
    assert local.request("GET", "/health")[0] == 200
    before = local.request("GET", "/_local/clock")[1]["now"]
    after = local.advance(60)
    assert after > before


def test_segment_client_signed_up_gets_the_welcome_email(local: Any) -> None:
    import segment.analytics as analytics

    client = analytics.Client(write_key="dev-write-key", host=local.url, sync_mode=True, max_retries=1)
    client.identify("e2e-anna", {"email": "anna.e2e@example.com", "first_name": "Анна", "email_consent": True})
    client.track("e2e-anna", "Signed Up", {"plan": "free"})
    client.flush()

    def welcome() -> Any:
        return [m for m in local.outbox() if m["to"] == "anna.e2e@example.com" and m["rule"] == "welcome"]

    mails = local.expect(welcome)
    assert mails[0]["step"] == 1 and mails[0]["channel"] == "email"  # step 0 sets the welcome_chain segment
    assert "Анна" in mails[0]["subject"]
    assert mails[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    profile = local.admin("/admin/customers/e2e-anna")
    assert profile["consent"]["email"] is True
    assert {"rule": "welcome", "state": "active"}.items() <= profile["journeys"][0].items()
    assert profile["messages"][0]["rule"] == "welcome"
    # a day later the offer goes out, on the virtual clock
    local.advance(2 * 86400)
    steps = sorted(m["step"] for m in welcome())
    assert steps[:2] == [1, 3]


def test_rudder_client_gzip_and_order_kpis(local: Any) -> None:
    import rudderstack.analytics as rudder

    rudder.write_key = "dev-write-key"
    rudder.dataPlaneUrl = local.url
    rudder.sync_mode = True
    rudder.identify("e2e-boris", {"email": "boris.e2e@example.com", "email_consent": True})
    rudder.track("e2e-boris", "Order Completed", {"order_id": "o-1", "revenue": 1200, "currency": "RUB", "shop": "A"})
    rudder.track("e2e-boris", "Order Completed", {"order_id": "o-2", "revenue": 800, "currency": "RUB", "shop": "B"})
    rudder.flush()
    profile = local.admin("/admin/customers/e2e-boris")
    assert profile["traits"]["email"] == "boris.e2e@example.com"
    assert profile["kpis"]["orders_count"] == 2
    assert profile["kpis"]["revenue_total"] == 2000
    assert profile["kpis"]["distinct_shops_count"] == 2


def test_bad_write_key_is_a_json_401(local: Any) -> None:
    auth = "Basic " + base64.b64encode(b"wrong:").decode()
    status, body = local.request("POST", "/v1/batch", {"batch": []}, {"Authorization": auth})
    assert status == 401 and body["code"] and body["message"]


def _post_form(local: Any, url: str, body: str) -> int:
    import urllib.request
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return int(resp.status)


def test_one_click_unsubscribe_stops_the_next_marketing_email(local: Any) -> None:
    import re
    auth = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
    batch = {"batch": [
        {"type": "identify", "userId": "e2e-unsub", "messageId": "e2e-unsub-1",
         "traits": {"email": "unsub.e2e@example.com", "first_name": "Вера", "email_consent": True}},
        {"type": "track", "userId": "e2e-unsub", "event": "Signed Up", "messageId": "e2e-unsub-2"}]}
    assert local.request("POST", "/v1/batch", batch, auth)[0] == 200

    def mails() -> Any:
        return [m for m in local.outbox() if m["to"] == "unsub.e2e@example.com"]

    first = local.expect(mails)[0]
    header = first["headers"]["List-Unsubscribe"]
    https = re.search(r"<(https?://[^>]+)>", header)
    assert https and "mailto:" in header
    # what Gmail / Yahoo do on "unsubscribe": RFC 8058 one-click POST to the https link
    assert _post_form(local, https.group(1), "List-Unsubscribe=One-Click") == 200
    assert local.admin("/admin/customers/e2e-unsub")["consent"]["email"] is False
    local.advance(3 * 86400)  # the first-order offer would go out after a day
    assert [m["step"] for m in mails()] == [1]


def test_transactional_sms_in_the_outbox(local: Any) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(b"dev-write-key:").decode()}
    batch = {"batch": [
        {"type": "identify", "userId": "e2e-sms", "messageId": "e2e-sms-1",
         "traits": {"phone": "+79161234567", "preferred_channel": "sms", "first_name": "Глеб"}},
        {"type": "track", "userId": "e2e-sms", "event": "Order Shipped", "messageId": "e2e-sms-2",
         "properties": {"order_id": "sms-o1"}}]}
    assert local.request("POST", "/v1/batch", batch, auth)[0] == 200
    local.advance(12 * 3600)  # quiet hours (21:00–09:00 for SMS) may defer it: half a day covers them
    sms = [m for m in local.outbox() if m["channel"] == "sms" and m["to"] == "+79161234567"]
    assert len(sms) == 1 and sms[0]["rule"] == "order-status" and sms[0]["text"]
