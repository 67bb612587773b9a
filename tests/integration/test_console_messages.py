"""A sent message re-opened from the customer's timeline (moto, in process): the ledger records the template
version and the issued coupon at `sent` (one write unit still); the console re-renders that version with the
customer's current profile, says so, and never opens another customer's message or an erased one."""

from __future__ import annotations

import html as html_mod
import re
from typing import Any

import pytest
from retention.admin.people import create_admin_token
from retention.core import ddb
from retention.messaging.requests import ledger_key

from tests.integration.test_console import Browser
from tests.integration.test_sender import PROMO, apply, customer, ledger, request, sender

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def s(stack: Any) -> Any:
    apply(stack)
    customer(stack, "u1", email="anna.customer@example.com")
    customer(stack, "u2", email="boris@example.com", first_name="Борис")
    return stack


@pytest.fixture
def viewer(s: Any) -> Browser:
    b = Browser()
    assert b.sign_in(create_admin_token(s.deps.config, "viewer-person", role="viewer"))[0] == 303
    return b


def page(b: Browser, uid: str, ledger_id: str) -> tuple[int, str]:
    status, _, body = b.get(f"/console/customers/{uid}/messages/{ledger_id}")
    return status, body


def test_a_sent_email_reopens_with_its_subject_coupon_and_template_version(s: Any, viewer: Browser) -> None:
    req = request("u1", coupon="WELCOME-7Q2X")
    assert sender(s).send(req).status == "sent"
    item = ledger(s, req)
    assert item["template_version"] == 1 and item["coupon"] == {"code": "WELCOME-7Q2X"}
    from bench.meter import item_size, write_units
    size = item_size(ddb.serialize(item))
    print(f"ledger item after `sent`: {size} bytes")
    assert write_units(size) == 1 and size < 700, item  # still one write unit for the ledger's `sent`

    # the timeline links the message
    status, _, profile = viewer.get("/console/customers/u1")
    assert status == 200 and f"/console/customers/u1/messages/{req.ledger_id}" in profile

    status, body = page(viewer, "u1", req.ledger_id)
    assert status == 200, body[:500]
    assert "Привет, Анна!" in body and "WELCOME-7Q2X" in body
    assert "Re-rendered from template version 1 with the customer&#39;s current profile" in body \
        or "Re-rendered from template version 1 with the customer's current profile" in body
    assert '<iframe class="preview" sandbox' in body
    srcdoc = html_mod.unescape(re.search(r'srcdoc="([^"]*)"', body).group(1))  # type: ignore[union-attr]
    assert "Код WELCOME-7Q2X" in srcdoc and "data-fallback" not in body

    # the template is edited (version 2): the page still renders the version sent
    edited = {**PROMO, "locales": {**PROMO["locales"], "ru": {**PROMO["locales"]["ru"],
                                                              "subject": "Новая тема, {{ customer.first_name }}"}}}
    assert s.deps.config.apply("TEMPLATE", "t-promo", edited)["version"] == 2
    status, body = page(viewer, "u1", req.ledger_id)
    assert status == 200 and "Привет, Анна!" in body and "Новая тема" not in body
    assert 'data-version="1"' in body

    # in Russian
    _, _, ru = viewer.get(f"/console/customers/u1/messages/{req.ledger_id}", headers={"Accept-Language": "ru"})
    assert "Заново отрисовано по версии шаблона 1" in ru


def test_without_a_recorded_version_the_current_one_is_shown_and_said(s: Any, viewer: Browser) -> None:
    req = request("u1")
    assert sender(s).send(req).status == "sent"
    d = s.deps
    d.dynamodb.update_item(TableName=d.env.messages_table, Key=ddb.key(*ledger_key(req.ledger_id)),
                           UpdateExpression="REMOVE template_version")  # a message sent before this change
    status, body = page(viewer, "u1", req.ledger_id)
    assert status == 200 and 'data-fallback="1"' in body and "was not recorded" in body
    assert "Re-rendered from template version 1" in body


def test_unknown_and_other_customers_messages_are_404(s: Any, viewer: Browser) -> None:
    mine, theirs = request("u1"), request("u2")
    snd = sender(s)
    assert snd.send(mine).status == "sent" and snd.send(theirs).status == "sent"
    assert page(viewer, "u1", "0" * 32)[0] == 404
    assert page(viewer, "u1", "not-a-ledger-id")[0] == 404
    status, body = page(viewer, "u1", theirs.ledger_id)
    assert status == 404 and "Борис" not in body and "boris" not in body
    assert page(viewer, "u2", theirs.ledger_id)[0] == 200
    assert page(viewer, "nobody", mine.ledger_id)[0] == 404


def test_an_erased_customers_messages_are_gone(s: Any, viewer: Browser) -> None:
    from retention.admin.views import Admin
    req = request("u1", coupon="WELCOME-7Q2X")
    assert sender(s).send(req).status == "sent"
    assert page(viewer, "u1", req.ledger_id)[0] == 200
    Admin(s.deps).forget("u1")
    assert page(viewer, "u1", req.ledger_id)[0] == 404
    item = ledger(s, req)
    assert "coupon" not in item and "subject" not in item and "customer_id" not in item


def test_a_sent_sms_shows_its_text_and_segments(s: Any, viewer: Browser) -> None:
    customer(s, "p1", email=None, phone="+79161234567", sms_consent=True)
    req = request("p1", rule="promo-sms", channel="sms", coupon="SMS-CODE1")
    assert sender(s).send(req).status == "sent", ledger(s, req)
    assert ledger(s, req)["coupon"] == {"code": "SMS-CODE1"}
    status, body = page(viewer, "p1", req.ledger_id)
    assert status == 200, body[:500]
    assert "скидка 10% по коду SMS-CODE1" in body and "SMS ·" in body and "<iframe" not in body


def test_a_pool_coupon_and_the_products_shown_are_recorded_and_shown(stack: Any) -> None:
    """The products scenario (a pool code, similar products): the ledger keeps the code with its discount and
    expiry and the product ids of the cards, still one write unit; the page shows them."""
    from retention.products.coupons import Coupons

    from bench.meter import item_size, write_units
    from tests.integration.test_products import _send, _setup
    create_admin_token(stack.deps.config, "t", token="tok")
    _setup(stack)
    Coupons(stack.deps.dynamodb, stack.deps.env.products_table).upload("welcome", ["W-1"], "15%", 7)
    out, reqs = _send(stack, "u1", "s1")
    assert [o.status for o in out] == ["sent"]
    item = ledger(stack, reqs[0])
    assert item["coupon"]["code"] == "W-1" and item["coupon"]["discount"] == "15%" and item["coupon"]["expires_at"]
    assert "s2" in item["products"] and "s3" not in item["products"]  # s3 is out of stock: never shown
    size = item_size(ddb.serialize(item))
    print(f"ledger item after `sent` (pool coupon, products): {size} bytes")
    assert write_units(size) == 1 and size < 800, item
    b = Browser()
    assert b.sign_in(create_admin_token(stack.deps.config, "viewer-person", role="viewer"))[0] == 303
    status, body = page(b, "u1", reqs[0].ledger_id)
    assert status == 200, body[:500]
    assert "W-1 · 15%" in body and "Products shown when sent" in body and "s2" in body
    srcdoc = html_mod.unescape(re.search(r'srcdoc="([^"]*)"', body).group(1))  # type: ignore[union-attr]
    assert "Code W-1: 15% off" in srcdoc and "City sneakers" in srcdoc
