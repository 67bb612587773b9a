"""Pure parts of the journey engine."""

from __future__ import annotations

from datetime import timedelta

from retention.core.config import Settings
from retention.journeys.engine import Definitions, Engine, in_global_control, running
from retention.language.rules import parse_rule

BASE = {"trigger": {"event": "Checkout Started"}, "steps": [{"send": {"channel": "email", "template": "t"}}]}


def test_attribution_window_per_rule_or_the_global_default() -> None:
    own = parse_rule({"id": "own", "attribution_window": "1d", **BASE})
    default = parse_rule({"id": "plain", **BASE})
    engine = Engine(Definitions(rules=[own, default], groups=[], settings=Settings(attribution_window_days=3)))
    assert engine._attribution_window("own") == timedelta(days=1)
    assert engine._attribution_window("plain") == timedelta(days=3)
    assert engine._attribution_window("gone") == timedelta(days=3)


def test_global_control_group_is_sticky_and_near_its_share() -> None:
    ids = [f"c{i}" for i in range(10_000)]
    held = [c for c in ids if in_global_control(c, 5)]
    assert 400 < len(held) < 600
    assert held == [c for c in ids if in_global_control(c, 5)]
    assert not any(in_global_control(c, 0) for c in ids[:100])


def test_a_control_journey_runs_until_it_ends() -> None:
    assert running({"state": "active"})
    assert running({"state": "control"})
    assert not running({"state": "control", "ended_at": "2026-01-01T00:00:00Z"})
    assert not running({"state": "completed"}) and not running(None)


def test_keyed_journeys_one_slot_per_order_and_pruned_when_old() -> None:
    from datetime import UTC, datetime

    from retention.journeys.engine import _prune_keyed, journey_slot, rule_of
    keyed = parse_rule({"id": "order-status", "journey_key": "order_id", **BASE})
    plain = parse_rule({"id": "plain", **BASE})
    assert journey_slot(keyed, {"order_id": "X1"}) == "order-status#X1"
    assert journey_slot(keyed, {}) == "order-status"  # no key in the event: one journey, as without a key
    assert journey_slot(plain, {"order_id": "X1"}) == "plain"
    assert rule_of("order-status#X1") == "order-status" and rule_of("plain") == "plain"
    now = datetime(2026, 11, 24, tzinfo=UTC)
    journeys = {"order-status#old": {"ended_at": "2026-09-01T00:00:00.000000Z"},
                "order-status#recent": {"ended_at": "2026-11-20T00:00:00.000000Z"},
                "order-status#open": {"state": "active"}, "plain": {"ended_at": "2026-01-01T00:00:00.000000Z"}}
    _prune_keyed(journeys, "order-status", now)
    assert set(journeys) == {"order-status#recent", "order-status#open", "plain"}


def _converting(rules: list, event: str, properties: dict) -> list[tuple[str, int, str, dict]]:
    """The counters one goal-looking event leaves, for a customer whose last email came from each rule."""
    from datetime import UTC, datetime

    from retention.core import clock
    from retention.customers.profile import Profile
    from retention.customers.store import StoredProfile
    from retention.ingestion.wire import internal_message
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    clock.set_now(now)
    try:
        sends = [{"at": clock.iso(now - timedelta(hours=len(rules) - i)), "rule": r.id, "step": 0,
                  "variant": "default", "channel": "email", "marketing": True, "ledger": f"l-{r.id}"}
                 for i, r in enumerate(rules)]
        sp = StoredProfile(profile=Profile(id="c1", created_at=now - timedelta(days=30)), version=1, sends=sends)
        engine = Engine(Definitions(rules=rules, groups=[], settings=Settings()))
        fx = engine.process(sp, messages=[internal_message("c1", event=event, properties=properties, at=now)],
                            now=now)
        return [c for c in fx.counters if "converted" in c[3]]
    finally:
        clock.reset()


def test_a_conversion_is_credited_only_to_a_rule_whose_goal_it_is() -> None:
    """A `Product Reviewed` (the goal of review requests) must not credit the abandoned-cart email."""
    cart = parse_rule({"id": "cart", **BASE})  # goal: Order Completed
    review = parse_rule({"id": "review", "goal": {"event": "Product Reviewed"}, **BASE})
    assert _converting([review, cart], "Product Reviewed", {"product_id": "p1"}) == [
        ("review", 0, "default", {"converted": 1, "revenue": 0.0})]
    assert _converting([review, cart], "Order Completed", {"revenue": 10}) == [
        ("cart", 0, "default", {"converted": 1, "revenue": 10.0})]


def test_goal_where_narrows_the_conversion() -> None:
    big = parse_rule({"id": "big", "goal": {"event": "Order Completed", "where": {"property": "revenue", "gte": 1000}},
                      **BASE})
    assert _converting([big], "Order Completed", {"revenue": 10}) == []
    assert _converting([big], "Order Completed", {"revenue": 5000}) == [
        ("big", 0, "default", {"converted": 1, "revenue": 5000.0})]


def _attribution_engine() -> Engine:
    review = parse_rule({"id": "review-request", "trigger": {"event": "Order Picked Up"},
                         "goal": {"event": "Product Reviewed"},
                         "steps": [{"wait": "7d"}, {"send": {"channel": "email", "template": "t"}}]})
    cart = parse_rule({"id": "cart", **BASE})
    waiting = parse_rule({"id": "waiting", "trigger": {"event": "Checkout Started"},
                          "steps": [{"wait": "1d"}, {"send": {"channel": "email", "template": "t"}}]})
    return Engine(Definitions(rules=[review, cart, waiting], groups=[], settings=Settings()))


def test_a_conversion_counts_only_for_rules_that_sent_or_held_out_and_whose_goal_it_is() -> None:
    """Issue 14: review-request showed "sent 0, converted 1" — an order counted for a journey that had
    sent nothing and whose goal is a review."""
    from datetime import UTC, datetime

    from retention.customers.profile import Profile
    from retention.customers.store import StoredProfile
    from retention.journeys.engine import Effects
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    entered = "2026-03-01T00:00:00.000000Z"
    profile = Profile(id="c1", journeys={
        "review-request": {"entry": "r1", "state": "active", "entered_at": entered},
        "cart": {"entry": "c1", "state": "active", "entered_at": entered},
        "waiting": {"entry": "w1", "state": "active", "entered_at": entered},
    })
    sp = StoredProfile(profile=profile, version=1, sends=[
        {"at": "2026-03-01T04:00:00.000000Z", "rule": "cart", "step": 0, "variant": "default", "ledger": "l1"}])
    fx = Effects()
    order = {"name": "Order Completed", "properties": {"revenue": 100}, "timestamp": now, "message_id": "o1"}
    _attribution_engine()._attribute(sp, order, fx, now)
    counted = {(rule, step, variant): values for rule, step, variant, values in fx.counters}
    assert counted == {("cart", 0, "default"): {"converted": 1, "revenue": 100.0}}  # nothing for the others
    # the review is review-request's goal, but it sent nothing yet: still nothing; held out: counted
    fx = Effects()
    review = {"name": "Product Reviewed", "properties": {}, "timestamp": now, "message_id": "r"}
    _attribution_engine()._attribute(sp, review, fx, now)
    assert fx.counters == []
    profile.journeys["review-request"]["holdout"] = True
    fx = Effects()
    _attribution_engine()._attribute(sp, review, fx, now)
    assert [(r, s, v) for r, s, v, _ in fx.counters] == [("review-request", -1, "holdout")]
