"""Issue 14, in process (ingest → tick → sender on moto, virtual time): consent and message class (welcome
only with consent, the double opt-in, the transactional order confirmation), the new chains (subscriber
welcome, second order, loyalty), the cart reminder's 8 hours, survey answers kept. The same chains over
HTTP on the local stack: tests/e2e/test_library_e2e.py."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock

from tests.integration.test_library import (
    _catalog,
    forward,
    identify,
    journey,
    ledger_reasons,
    mails,
    no_duplicates,
    track,
    treated,
)
from tests.support import LambdaContext, Stack, load_handler, sent_emails


def link(to: str, rule: str, path: str) -> str:
    """The token of the first `/<path>/<token>` link in the last email of `rule` sent to `to`."""
    text = [m["text"] for m in sent_emails() if to in m["to"] and m["headers"].get("X-Retention-Rule") == rule][-1]
    found = re.search(rf"/{path}/([A-Za-z0-9._~-]+)", text)
    assert found, text
    return found.group(1)


def call(function: str, method: str, route: str, token: str, user_agent: str = "Mozilla/5.0 test") -> dict[str, Any]:
    handler = load_handler(function)
    path = f"/{route}/{token}"
    event = {
        "resource": f"/{route}/{{token}}", "path": path, "httpMethod": method,
        "headers": {"User-Agent": user_agent, "Content-Type": "application/x-www-form-urlencoded"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"token": token}, "stageVariables": None,
        "requestContext": {"resourcePath": f"/{route}/{{token}}", "httpMethod": method, "path": f"/prod{path}",
                           "stage": "prod", "requestId": "r-1", "identity": {"sourceIp": "203.0.113.9"}},
        "body": "confirm=1" if method == "POST" else None, "isBase64Encoded": False,
    }
    result: dict[str, Any] = handler.lambda_handler(event, LambdaContext())
    return result


# ---- consent: welcome, double opt-in, refusal ----------------------------------------------------------------


def test_sign_up_without_consent_gets_the_double_opt_in_and_the_welcome_only_after_confirming(
        library_stack: Stack, now: datetime) -> None:
    s = library_stack
    s.ingest([identify("d-yes", "d.yes@example.com"), track("d-yes", "Signed Up", "d1"),
              {"type": "identify", "userId": "d-none", "messageId": "id-d-none",
               "traits": {"email": "d.none@example.com"}},  # never asked for consent
              track("d-none", "Signed Up", "d2"),
              identify("d-no", "d.no@example.com", consent=False), track("d-no", "Signed Up", "d3")])
    forward(s, minutes=5)
    # consent given: the welcome at once, no opt-in request
    assert mails("d.yes@example.com") == [("welcome", 1)]
    # never asked: one double opt-in request (transactional), no welcome
    assert mails("d.none@example.com") == [("double-opt-in", 0)]
    assert "welcome" not in s.profile("d-none").journeys
    # refused: nothing but service mail (none due here)
    assert mails("d.no@example.com") == []
    doi = next(m for m in sent_emails() if "d.none@example.com" in m["to"])
    assert not re.search(r"промокод|скидк|coupon|discount", (doi["html"] or "") + doi["text"], re.I)
    token = link("d.none@example.com", "double-opt-in", "optin")
    # a link scanner's GET changes nothing
    page = call("preferences", "GET", "optin", token)
    assert page["statusCode"] == 200 and 'method="post"' in page["body"]
    assert s.profile("d-none").consent.get("email") is None
    forward(s, minutes=5)
    assert mails("d.none@example.com") == [("double-opt-in", 0)]
    # the POST records the consent with source, time and evidence, and starts the welcome chain
    assert call("preferences", "POST", "optin", token)["statusCode"] == 200
    consent = s.profile("d-none").consent["email"]
    assert consent.effective and consent.source == "double_opt_in" and consent.at == clock.now()
    assert consent.evidence["ledger"] and consent.evidence["ip"] == "203.0.113.9"
    assert consent.evidence["user_agent"] == "Mozilla/5.0 test"
    forward(s, minutes=5)
    assert mails("d.none@example.com") == [("double-opt-in", 0), ("welcome", 1)]
    # a second POST (a double click) starts nothing twice; signing up again asks nothing again
    call("preferences", "POST", "optin", token)
    s.ingest([track("d-none", "Signed Up", "d4"), track("d-no", "Signed Up", "d5")])
    forward(s, days=1, minutes=5)
    assert mails("d.none@example.com") == [("double-opt-in", 0), ("welcome", 1), ("welcome", 3)]
    assert mails("d.no@example.com") == []
    no_duplicates()


def test_a_subscriber_without_sign_up_gets_the_subscriber_welcome_and_one_chain_if_he_signs_up_too(
        library_stack: Stack) -> None:
    s = library_stack
    sub = treated("sw-", subscriber_welcome=10)
    both = treated("sw-both-", subscriber_welcome=10)
    s.ingest([identify(sub, "sub@example.com"), track(sub, "Newsletter Subscribed", "s1"),
              identify(both, "both@example.com"), track(both, "Newsletter Subscribed", "s2")])
    forward(s, minutes=5)
    assert mails("sub@example.com") == [("subscriber-welcome", 1)]
    assert "подар" in next(m for m in sent_emails() if "sub@example.com" in m["to"])["subject"].lower()
    s.ingest([track(both, "Signed Up", "s3")])  # signs up too: no second welcome chain
    forward(s, days=5, minutes=5)
    assert mails("sub@example.com") == [("subscriber-welcome", 1), ("subscriber-welcome", 3)]  # last chance
    assert mails("both@example.com") == [("subscriber-welcome", 1), ("subscriber-welcome", 3)]
    assert "welcome" not in s.profile(both).journeys
    # the other way round: signed up first, subscribes later → the welcome only
    s.ingest([identify("sw-first", "first@example.com"), track("sw-first", "Signed Up", "s4")])
    forward(s, minutes=5)
    s.ingest([track("sw-first", "Newsletter Subscribed", "s5")])
    forward(s, days=6)
    assert [r for r, _ in mails("first@example.com")] == ["welcome", "welcome"]
    no_duplicates()


# ---- the order confirmation is transactional --------------------------------------------------------------


def test_a_buyer_without_marketing_consent_gets_the_confirmation_and_no_marketing(library_stack: Stack) -> None:
    s = library_stack
    s.ingest([identify("oc-no", "oc.no@example.com", consent=False),
              track("oc-no", "Order Completed", "oc1", order_id="N-1", revenue=990,
                    products=[{"product_id": "p1", "name": "Чайник"}])])
    forward(s, minutes=5)
    assert mails("oc.no@example.com") == [("order-confirmation", 0)]
    assert "N-1" in (sent_emails()[-1]["html"] or "")
    forward(s, days=4)
    assert mails("oc.no@example.com") == [("order-confirmation", 0)]  # no accessories: no consent
    assert "post-purchase" not in s.profile("oc-no").journeys


def test_the_confirmation_is_not_capped_after_a_cart_reminder_nor_held_out(library_stack: Stack) -> None:
    """The most common path to an order: a cart reminder, then the order within the 16-hour cap window."""
    s = library_stack
    buyer = treated("oc-cart-", abandoned_cart=10, post_purchase=5)
    s.ingest([identify(buyer, "oc.cart@example.com"),
              track(buyer, "Checkout Started", "oc2", cart_id="k1")])
    forward(s, hours=24)
    assert mails("oc.cart@example.com") == [("abandoned-cart", 1)]
    s.ingest([track(buyer, "Order Completed", "oc3", order_id="N-2", revenue=1990)])
    forward(s, minutes=5)
    assert mails("oc.cart@example.com") == [("abandoned-cart", 1), ("order-confirmation", 0)]
    assert ledger_reasons(s, "order-confirmation") == {}
    # a customer in every holdout still gets the confirmation (transactional rules hold nobody out)
    from retention.language.rules import in_holdout
    held = next(f"oc-h{i}" for i in range(500) if in_holdout(f"oc-h{i}", "post-purchase", 5))
    s.ingest([identify(held, "held@example.com"), track(held, "Order Completed", "oc4", order_id="N-3")])
    forward(s, days=4)
    assert mails("held@example.com") == [("order-confirmation", 0)]
    assert journey(s, held, "post-purchase")["state"] == "control"


# ---- timings and chains ------------------------------------------------------------------------------------


def test_no_cart_reminder_before_8_hours_and_none_at_night(library_stack: Stack, now: datetime) -> None:
    s = library_stack
    early = treated("ac-early-", abandoned_cart=10)
    night = treated("ac-night-", abandoned_cart=10)
    s.ingest([identify(early, "early@example.com", timezone="Europe/Moscow"),
              track(early, "Product Added", "ac1", product_id="p1", cart_id="k1")])  # 12:00 Moscow
    forward(s, hours=7, minutes=55)
    assert mails("early@example.com") == []
    forward(s, minutes=10)
    assert mails("early@example.com") == [("abandoned-cart", 1)]  # 20:00 Moscow: 8 h, in the daytime
    clock.set_now(now + timedelta(hours=9))  # 18:00 UTC = 21:00 Moscow: 8 h later would be 05:00
    s.ingest([identify(night, "night@example.com", timezone="Europe/Moscow"),
              track(night, "Checkout Started", "ac2", cart_id="k2")])
    forward(s, hours=11, minutes=55)  # 05:55 UTC = 08:55 Moscow
    assert mails("night@example.com") == []
    forward(s, minutes=10)
    assert mails("night@example.com") == [("abandoned-cart", 1)]  # 09:00 Moscow, 12 h after the cart


def test_second_order_chain_for_a_newbie_ends_on_the_second_order(library_stack: Stack) -> None:
    s = library_stack
    one = treated("so-one-", second_order=10, post_purchase=5)
    two = treated("so-two-", second_order=10, post_purchase=5)
    s.ingest([identify(one, "so.one@example.com"), track(one, "Order Completed", "so1", order_id="A", revenue=100),
              identify(two, "so.two@example.com"), track(two, "Order Completed", "so2", order_id="B", revenue=100)])
    forward(s, days=10)
    s.ingest([track(two, "Order Completed", "so3", order_id="C", revenue=100)])
    forward(s, days=21)
    assert mails("so.one@example.com", "second-order") == [("second-order", 1)]
    assert mails("so.two@example.com", "second-order") == []
    assert journey(s, two, "second-order")["state"] == "exited"


def test_survey_answers_are_kept_on_the_profile_and_in_the_rules_stats(library_stack: Stack) -> None:
    from retention.analytics.counters import read_counters
    from retention.analytics.stats import rule_report
    s = library_stack
    # similar products in stock, so the second letter (min_recommendations: 1) goes out before the survey
    _catalog(s, [{"product_id": "p1", "name": "Чайник", "price": 1990, "category": "kettles"},
                 {"product_id": "p2", "name": "Чайник стеклянный", "price": 2490, "category": "kettles"}])
    looker = treated("sv-", browse_abandonment=10)
    s.ingest([identify(looker, "survey@example.com"),
              track(looker, "Product Viewed", "sv1", product_id="p1", name="Чайник")])
    forward(s, days=6, hours=1)
    assert [step for _, step in mails("survey@example.com", "browse-abandonment")] == [1, 4, 7]
    token = link("survey@example.com", "browse-abandonment", "survey")
    page = call("nps_webhook", "GET", "survey", token)
    assert page["statusCode"] == 200 and 'method="post"' in page["body"]
    assert "survey_browse_abandonment" not in s.profile(looker).traits  # a GET records nothing
    assert call("nps_webhook", "POST", "survey", token)["statusCode"] == 200
    call("nps_webhook", "POST", "survey", token)  # pressed twice: counted once
    profile = s.profile(looker)
    assert profile.traits["survey_browse_abandonment"] == "price"  # the first reason of the template
    report = rule_report("browse-abandonment", read_counters(s.deps.dynamodb, s.tables["messages"],
                                                             "browse-abandonment"))
    assert report["answers"] == {"price": 1}
    assert call("nps_webhook", "POST", "survey", token[:-3] + "abc")["statusCode"] == 400


def test_an_unfinished_purchase_does_not_make_a_recent_buyer_inactive(library_stack: Stack) -> None:
    """Seed 003 1.9.4 ("незавершённая покупка → через N дней → Неактивные") is deliberately not applied
    (scenarios/rules/abandoned-cart.yaml): `inactive` is "no purchase for 6 months" and starts the
    reactivation coupon, which abandoning a cart must not earn."""
    s = library_stack
    buyer = treated("up-", abandoned_cart=10, reactivation=10, post_purchase=5)
    s.ingest([identify(buyer, "unfinished@example.com"),
              track(buyer, "Order Completed", "up1", order_id="U-1", revenue=500)])
    forward(s, days=1)
    s.ingest([track(buyer, "Checkout Started", "up2", cart_id="k-up")])
    forward(s, days=14)
    assert [step for _, step in mails("unfinished@example.com", "abandoned-cart")] == [1, 3]  # the chain ran
    profile = s.profile(buyer)
    assert set(profile.segments["lifecycle"]) == {"newbie"}
    assert mails("unfinished@example.com", "reactivation") == []
