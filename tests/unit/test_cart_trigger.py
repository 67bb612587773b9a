"""`trigger.update`: the cart reminder shows the cart as the customer left it (issue 20 item 2), not the
first product added; `latest` keeps the latest matching trigger event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.journeys import cart
from retention.language.rules import RuleValidationError, parse_rule

from tests.unit.test_engine_guards import NOW, engine, stored, track

CART_RULE = {
    "id": "cart", "trigger": {"events": ["Checkout Started", "Product Added"], "update": "cart"},
    "exit_when": {"event": "Order Completed"}, "re_entry": {"cooldown": "7d"},
    "steps": [{"wait": "4h"}, {"send": {"channel": "email", "template": "cart-reminder"}},
              {"wait": "1d"}, {"send": {"channel": "email", "template": "cart-discount"}}],
}


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.set_now(NOW)
    yield
    clock.reset()


def at(minutes: int) -> Any:
    return NOW + timedelta(minutes=minutes)


def lines(props: dict[str, Any]) -> list[tuple[str, int]]:
    return [(p["product_id"], p["quantity"]) for p in props["products"]]


# ---- the fold, pure ----------------------------------------------------------------------------------------


def test_product_added_adds_a_line_and_raises_its_quantity() -> None:
    c = cart.fold(None, "Product Added", {"product_id": "boots", "name": "Boots", "price": 5990, "quantity": 1})
    c = cart.fold(c, "product added", {"product_id": "socks", "price": 390})
    c = cart.fold(c, "Product Added", {"product_id": "boots", "quantity": 2})
    assert lines(c) == [("boots", 3), ("socks", 1)]
    assert c["products"][0]["name"] == "Boots" and c["products"][0]["price"] == 5990


def test_product_removed_lowers_or_drops_the_line() -> None:
    c = cart.fold(None, "Checkout Started", {"products": [{"product_id": "a", "quantity": 3},
                                                         {"sku": "b", "quantity": 1}]})
    c = cart.fold(c, "Product Removed", {"product_id": "a", "quantity": 1})
    assert lines(c) == [("a", 2), ("b", 1)]
    c = cart.fold(c, "Product Removed", {"sku": "b"})  # no quantity: the whole line
    assert lines(c) == [("a", 2)]
    c = cart.fold(c, "Product Removed", {"product_id": "a", "quantity": 5})
    assert cart.is_empty(c)


def test_checkout_started_replaces_the_cart_with_the_shops_own_list() -> None:
    c = cart.fold(None, "Product Added", {"product_id": "old"})
    c = cart.fold(c, "Checkout Started", {"products": [{"product_id": "x", "quantity": 2}], "cart_url": "https://s/c/9",
                                          "currency": "RUB"})
    assert lines(c) == [("x", 2)] and c["cart_url"] == "https://s/c/9" and c["currency"] == "RUB"


def test_the_fold_ignores_lines_without_a_product_and_bad_quantities() -> None:
    c = cart.fold(None, "Checkout Started", {"products": [{"name": "no id"}, "junk", {"id": "k", "quantity": "x"},
                                                         {"id": "z", "quantity": 0}]})
    assert lines(c) == [("k", 1)]


def test_the_cart_is_bounded() -> None:
    c: dict[str, Any] | None = None
    for i in range(cart.MAX_LINES + 20):
        c = cart.fold(c, "Product Added", {"product_id": f"p{i}", "description": "x" * 500})
    assert c is not None and len(c["products"]) == cart.MAX_LINES
    assert "description" not in c["products"][0]  # only what cards and links read is kept


def test_an_unknown_update_mode_is_a_rule_error() -> None:
    with pytest.raises(RuleValidationError, match="update"):
        parse_rule({**CART_RULE, "trigger": {"event": "Checkout Started", "update": "newest"}})


# ---- the engine --------------------------------------------------------------------------------------------


def test_the_cart_reminder_shows_the_cart_as_it_is_when_sent() -> None:
    eng, sp = engine(CART_RULE), stored()
    eng.process(sp, messages=[track("Product Added", "m1", at(0), product_id="boots", name="Boots", price=5990)],
                now=at(0))
    eng.process(sp, messages=[track("Product Added", "m2", at(10), product_id="hat", name="Hat", price=990),
                              track("Product Removed", "m3", at(11), product_id="boots")], now=at(11))
    assert sp.profile.journeys["cart"]["entries"] == 1  # one journey, kept current
    due = [d for d in eng.process(sp, messages=[], now=at(11)).due] or None
    assert due is None  # nothing new due: the 4 h wait of the first event stands
    fx = eng.process(sp, due_items=[_due(sp)], now=at(4 * 60))
    [send] = fx.sends
    assert send.template == "cart-reminder"
    assert lines(send.event["properties"]) == [("hat", 1)]


def test_latest_mode_keeps_the_latest_matching_event() -> None:
    rule = {**CART_RULE, "trigger": {"events": ["Checkout Started"], "update": "latest"}}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Checkout Started", "m1", at(0), total=10)], now=at(0))
    eng.process(sp, messages=[track("Product Added", "m2", at(5), product_id="x")], now=at(5))  # not a trigger
    eng.process(sp, messages=[track("Checkout Started", "m3", at(9), total=25)], now=at(9))
    fx = eng.process(sp, due_items=[_due(sp)], now=at(4 * 60))
    assert fx.sends[0].event["properties"] == {"total": 25}


def test_first_mode_is_the_default_and_keeps_the_first_event() -> None:
    rule = {**CART_RULE, "trigger": {"events": ["Checkout Started"]}}
    assert parse_rule(rule).trigger.update == "first"
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Checkout Started", "m1", at(0), total=10)], now=at(0))
    eng.process(sp, messages=[track("Checkout Started", "m3", at(9), total=25)], now=at(9))
    fx = eng.process(sp, due_items=[_due(sp)], now=at(4 * 60))
    assert fx.sends[0].event["properties"] == {"total": 10}


def test_an_emptied_cart_ends_the_journey_and_the_next_cart_starts_a_new_one() -> None:
    eng, sp = engine(CART_RULE), stored()
    eng.process(sp, messages=[track("Product Added", "m1", at(0), product_id="a")], now=at(0))
    pending = _due(sp)
    eng.process(sp, messages=[track("Product Removed", "m2", at(3), product_id="a")], now=at(3))
    journey = sp.profile.journeys["cart"]
    assert journey["state"] == "exited" and journey["exit_reason"] == "cart_emptied"
    assert eng.process(sp, due_items=[pending], now=at(4 * 60)).sends == []  # the old wait sends nothing
    # within the 7-day cooldown, yet nothing was sent: a new cart is a new abandonment
    eng.process(sp, messages=[track("Product Added", "m4", at(30), product_id="b")], now=at(30))
    assert sp.profile.journeys["cart"]["state"] == "active" and sp.profile.journeys["cart"]["entries"] == 2
    fx = eng.process(sp, due_items=[_due(sp)], now=at(30 + 4 * 60))
    assert lines(fx.sends[0].event["properties"]) == [("b", 1)]


def test_after_a_reminder_was_sent_an_emptied_cart_keeps_the_cooldown() -> None:
    eng, sp = engine(CART_RULE), stored()
    eng.process(sp, messages=[track("Product Added", "m1", at(0), product_id="a")], now=at(0))
    assert len(eng.process(sp, due_items=[_due(sp)], now=at(4 * 60)).sends) == 1
    eng.process(sp, messages=[track("Product Removed", "m2", at(5 * 60), product_id="a")], now=at(5 * 60))
    assert sp.profile.journeys["cart"]["exit_reason"] == "cart_emptied"
    eng.process(sp, messages=[track("Product Added", "m3", at(6 * 60), product_id="b")], now=at(6 * 60))
    assert sp.profile.journeys["cart"]["entries"] == 1  # the cooldown holds: one reminder a week at most


def test_a_goal_event_still_ends_a_cart_journey() -> None:
    eng, sp = engine(CART_RULE), stored()
    eng.process(sp, messages=[track("Product Added", "m1", at(0), product_id="a")], now=at(0))
    eng.process(sp, messages=[track("Order Completed", "o1", at(20), order_id="o1", revenue=10)], now=at(20))
    assert sp.profile.journeys["cart"]["exit_reason"] == "goal:Order Completed"


def _due(sp: Any) -> Any:
    """The journey's pending wait item, as the tick would deliver it."""
    from retention.schedule.due import DueItem
    journey = sp.profile.journeys["cart"]
    return DueItem(at=clock.parse_iso(journey["next_due"]), kind="JOURNEY", customer_id=sp.profile.id,
                   ref=f"cart|{journey['entry']}|{journey['step']}")
