"""The engine's guards, pure (no AWS): a due item for a step the journey has left, a trigger seen twice,
a held-out journey reaching a send step, held-out conversions, the history horizon.

Each test here was written against a planted one-line bug that the rest of the suite let through
(issue 21); the docstrings name the bug each one catches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.core.config import Settings
from retention.customers.profile import Profile
from retention.customers.store import StoredProfile
from retention.ingestion.wire import Message
from retention.journeys.engine import Definitions, Effects, Engine
from retention.language.rules import in_holdout, parse_rule
from retention.schedule.due import DueItem

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

TWO_SENDS = {
    "id": "cart", "trigger": {"event": "Checkout Started"}, "exit_when": {"event": "Order Completed"},
    "steps": [{"wait": "1h"}, {"send": {"channel": "email", "template": "first"}},
              {"wait": "1d"}, {"send": {"channel": "email", "template": "second"}}],
}
ONE_SEND = {"id": "news", "trigger": {"event": "News"},
            "steps": [{"send": {"channel": "email", "template": "news"}}]}


def engine(*bodies: dict[str, Any], **settings: Any) -> Engine:
    return Engine(Definitions(rules=[parse_rule(b) for b in bodies], groups=[], settings=Settings(**settings)))


def treated(rule: str) -> str:
    """A customer outside the rule's 10 % holdout (a deterministic hash), for rules that set one."""
    return next(c for c in (f"c{i}" for i in range(100)) if not in_holdout(c, rule, 10))


def stored(cid: str = "c1") -> StoredProfile:
    return StoredProfile(profile=Profile(id=cid, created_at=NOW - timedelta(days=30)), version=1)


def track(event: str, mid: str, at: datetime, cid: str = "c1", **props: Any) -> Message:
    return Message(type="track", message_id=mid, user_id=cid, event=event, properties=props, timestamp=at,
                   received_at=NOW)


def entered(fx: Effects, rule: str) -> dict[str, float]:
    """entered per variant row of the entry counters (step -1)."""
    out: dict[str, float] = {}
    for r, step, variant, values in fx.counters:
        if r == rule and step == -1 and "entered" in values:
            out[variant] = out.get(variant, 0) + values["entered"]
    return out


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.set_now(NOW)
    yield
    clock.reset()


# ---- the stale-step guard on due journey items ------------------------------------------------------


def test_a_due_item_for_a_step_already_taken_changes_nothing() -> None:
    """Bug caught: `_on_due_journey` without its step check (`journey.step != item step` → stale).
    A late or duplicated tick must not run the same step again: the first reminder would go twice."""
    eng, sp = engine(TWO_SENDS), stored()
    fx = eng.process(sp, messages=[track("Checkout Started", "cs1", NOW)], now=NOW)
    [wait1] = [d for d in fx.due if d.kind == "JOURNEY"]
    assert wait1.ref.endswith("|0") and fx.sends == []

    later = NOW + timedelta(hours=1)
    fx = eng.process(sp, due_items=[wait1], now=later)
    assert [s.template for s in fx.sends] == ["first"]
    [wait2] = [d for d in fx.due if d.kind == "JOURNEY"]
    assert wait2.ref.endswith("|2") and sp.profile.journeys["cart"]["step"] == 2

    # the step-0 item again (a double tick, a retry after a lost delete): nothing is sent or moved
    fx = eng.process(sp, due_items=[wait1], now=later + timedelta(minutes=1))
    assert fx.sends == [] and fx.due == [] and not fx.changed
    assert sp.profile.journeys["cart"]["step"] == 2

    fx = eng.process(sp, due_items=[wait2], now=later + timedelta(days=1))
    assert [s.template for s in fx.sends] == ["second"]
    assert sp.profile.journeys["cart"]["state"] == "completed"
    # and after the end, the last item again: still nothing
    fx = eng.process(sp, due_items=[wait2], now=later + timedelta(days=1, minutes=1))
    assert fx.sends == [] and not fx.changed


def test_a_due_item_of_an_earlier_entry_or_an_exited_journey_changes_nothing() -> None:
    eng, sp = engine(TWO_SENDS), stored()
    fx = eng.process(sp, messages=[track("Checkout Started", "cs1", NOW)], now=NOW)
    [old] = [d for d in fx.due if d.kind == "JOURNEY"]
    # the goal ends the journey; its pending wait item must then do nothing
    eng.process(sp, messages=[track("Order Completed", "o1", NOW + timedelta(minutes=5), order_id="o1")],
                now=NOW + timedelta(minutes=5))
    assert sp.profile.journeys["cart"]["state"] == "exited"
    fx = eng.process(sp, due_items=[old], now=NOW + timedelta(hours=1))
    assert fx.sends == [] and not fx.changed
    # a new entry: the old entry's item (same step index) must not advance the new journey
    eng.process(sp, messages=[track("Checkout Started", "cs2", NOW + timedelta(minutes=10))],
                now=NOW + timedelta(minutes=10))
    assert sp.profile.journeys["cart"]["state"] == "active"
    fx = eng.process(sp, due_items=[old], now=NOW + timedelta(hours=1))
    assert fx.sends == [] and sp.profile.journeys["cart"]["step"] == 0


# ---- the same-trigger re-entry guard -----------------------------------------------------------------


def broadcast_item(ref: str = "news|2026-11-24T09:00") -> DueItem:
    return DueItem(at=NOW, kind="TRIGGER", customer_id="c1", ref=ref, payload={"rule": "news", "name": "news"})


def test_a_replayed_broadcast_enters_each_customer_once() -> None:
    """Bug caught: `_start` without `journey.entry == entry → return`. The rule allows re-entry at once
    (cooldown 0), so only the entry id stops a replayed fan-out (the same TRIGGER item twice) from
    starting the finished journey again: 2 customers counted `entered` 4 times, each mailed twice."""
    eng = engine(ONE_SEND)
    entries: dict[str, float] = {}
    sends = 0
    for cid in ("c1", "c2"):
        sp = stored(cid)
        for _replay in range(2):
            item = broadcast_item()
            item.customer_id = cid
            fx = eng.process(sp, due_items=[item], now=NOW)
            sends += len(fx.sends)
            for k, v in entered(fx, "news").items():
                entries[k] = entries.get(k, 0) + v
        assert sp.profile.journeys["news"]["entries"] == 1
    assert sum(entries.values()) == 2 and sends == 2


def test_a_new_trigger_does_enter_again() -> None:
    """The guard is per trigger, not per rule: the next firing (another ref) starts a new journey."""
    eng, sp = engine(ONE_SEND), stored()
    assert len(eng.process(sp, due_items=[broadcast_item("news|a")], now=NOW).sends) == 1
    fx = eng.process(sp, due_items=[broadcast_item("news|b")], now=NOW + timedelta(minutes=1))
    assert len(fx.sends) == 1 and entered(fx, "news") == {"default": 1}
    assert sp.profile.journeys["news"]["entries"] == 2


def test_a_replayed_trigger_event_enters_once() -> None:
    """The same event delivered twice to the engine (a retry that got past the dedupe markers)."""
    eng, sp = engine(ONE_SEND), stored()
    ev = track("News", "n1", NOW)
    assert len(eng.process(sp, messages=[ev], now=NOW).sends) == 1
    fx = eng.process(sp, messages=[ev], now=NOW + timedelta(seconds=5))
    assert fx.sends == [] and entered(fx, "news") == {}


# ---- holdout -----------------------------------------------------------------------------------------


def test_a_held_out_journey_reaching_a_send_step_sends_nothing() -> None:
    """Bug caught: the `send and holdout` branch of `_advance` removed: the control group was mailed."""
    held = {**TWO_SENDS, "holdout_percent": 100}
    eng, sp = engine(held), stored()
    fx = eng.process(sp, messages=[track("Checkout Started", "cs1", NOW)], now=NOW)
    assert entered(fx, "cart") == {"holdout": 1}
    journey = sp.profile.journeys["cart"]
    assert journey["state"] == "control" and journey["holdout"] is True
    [item] = [d for d in fx.due if d.kind == "JOURNEY"]
    fx = eng.process(sp, due_items=[item], now=NOW + timedelta(hours=1))
    assert fx.sends == []
    assert journey["step"] == 2 and journey["last_send_step"] is None  # it follows the timeline all the same
    [item] = [d for d in fx.due if d.kind == "JOURNEY"]
    fx = eng.process(sp, due_items=[item], now=NOW + timedelta(days=2))
    assert fx.sends == [] and journey["ended_at"] and journey["state"] == "control"


def test_the_global_control_group_sends_nothing_but_transactional_rules_ignore_it() -> None:
    marketing = {**ONE_SEND}
    service = {**ONE_SEND, "id": "receipt", "category": "transactional", "trigger": {"event": "Receipt"}}
    eng = engine(marketing, service, control_group_percent=100)
    sp = stored()
    fx = eng.process(sp, messages=[track("News", "n1", NOW), track("Receipt", "r1", NOW)], now=NOW)
    assert [s.rule for s in fx.sends] == ["receipt"]
    assert sp.profile.journeys["news"]["state"] == "control"
    assert sp.profile.journeys["receipt"]["state"] == "completed"


def conversions(fx: Effects, rule: str) -> list[tuple[int, str, dict[str, float]]]:
    return [(step, variant, values) for r, step, variant, values in fx.counters if r == rule and "converted" in values]


def test_holdout_conversions_are_counted_on_the_holdout_row_with_revenue() -> None:
    """Bug caught: holdout conversions dropped (or counted on the treated row): uplift = treated vs holdout
    conversion, so without them every rule looks like a win."""
    held = {**TWO_SENDS, "holdout_percent": 100}
    eng, sp = engine(held), stored()
    eng.process(sp, messages=[track("Checkout Started", "cs1", NOW)], now=NOW)
    at = NOW + timedelta(hours=3)
    fx = eng.process(sp, messages=[track("Order Completed", "o1", at, order_id="o1", revenue=1500)], now=at)
    assert conversions(fx, "cart") == [(-1, "holdout", {"converted": 1, "revenue": 1500.0})]
    # one conversion per entry: a second order does not count again
    at2 = at + timedelta(hours=1)
    fx = eng.process(sp, messages=[track("Order Completed", "o2", at2, order_id="o2", revenue=10)], now=at2)
    assert conversions(fx, "cart") == []


def test_treated_conversion_without_a_send_counts_nothing() -> None:
    """Issue 14 item 12: a conversion counts only for a customer who was sent a message of the rule (or held
    out, for the uplift); an order before the first reminder was not the rule's doing ("sent 0, converted 1")."""
    eng, sp = engine(TWO_SENDS), stored(treated("cart"))
    cid = sp.profile.id
    eng.process(sp, messages=[track("Checkout Started", "cs1", NOW, cid=cid)], now=NOW)
    at = NOW + timedelta(minutes=30)  # before the first reminder: nothing sent to credit
    fx = eng.process(sp, messages=[track("Order Completed", "o1", at, cid=cid, order_id="o1", revenue=99)], now=at)
    assert conversions(fx, "cart") == []


# ---- the history horizon --------------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "starts"), [
    (timedelta(0), True),
    (timedelta(hours=1), True),
    (timedelta(hours=23, minutes=59), True),
    (timedelta(hours=24), True),  # exactly at the horizon still counts
    (timedelta(hours=24, minutes=1), False),
    (timedelta(days=30), False),
])
def test_history_horizon_an_event_up_to_24h_old_starts_a_journey(age: timedelta, starts: bool) -> None:
    """Bug caught: the horizon comparison changed (hours vs days, `>=` flipped): an import of last year's
    orders started journeys, or yesterday's cart started none."""
    eng, sp = engine(ONE_SEND), stored()
    fx = eng.process(sp, messages=[track("News", "n1", NOW - age)], now=NOW)
    assert ("news" in sp.profile.journeys) is starts
    assert len(fx.sends) == (1 if starts else 0)


def test_history_horizon_is_a_setting() -> None:
    eng, sp = engine(ONE_SEND, history_horizon_hours=2), stored()
    eng.process(sp, messages=[track("News", "n1", NOW - timedelta(hours=3))], now=NOW)
    assert "news" not in sp.profile.journeys
    eng.process(sp, messages=[track("News", "n2", NOW - timedelta(hours=1))], now=NOW)
    assert "news" in sp.profile.journeys


def test_an_old_event_still_updates_the_profile() -> None:
    eng, sp = engine(ONE_SEND), stored()
    at = NOW - timedelta(days=300)
    eng.process(sp, messages=[track("Order Completed", "o1", at, order_id="o1", revenue=500)], now=NOW)
    assert sp.profile.kpis["orders_count"] == 1
    assert sp.profile.journeys == {}


def test_segment_moves_of_a_history_import_start_no_journey() -> None:
    """Bug caught: the segment events of an old import treated as live: importing last year's orders moved
    customers between segments and started every `segment_entered` journey."""
    from retention.language.segments import default_groups
    lifecycle = ["promo_registered", "newbie", "neutral", "loyal", "unstable", "inactive", "lost"]
    rule = parse_rule({"id": "moved", "trigger": {"segment_entered": lifecycle},
                       "steps": [{"send": {"channel": "email", "template": "t"}}]})
    eng = Engine(Definitions(rules=[rule], groups=default_groups(), settings=Settings()))
    sp = stored()
    fx = eng.process(sp, messages=[track("Order Completed", "o1", NOW - timedelta(days=300), order_id="o1",
                                         revenue=500)], now=NOW)
    assert fx.transitions and fx.sends == [] and "moved" not in sp.profile.journeys
    sp2 = stored("c2")
    fx = eng.process(sp2, messages=[track("Order Completed", "o2", NOW - timedelta(hours=2), cid="c2",
                                          order_id="o2", revenue=500)], now=NOW)
    assert fx.transitions and "moved" in sp2.profile.journeys


# ---- the re-order time (issue 14 item 6: second-order at the category's typical re-order time) ------------

REORDER = {"id": "again", "trigger": {"event": "Order Completed"}, "exit_when": {"event": "Checkout Started"},
           "steps": [{"wait": {"reorder": "30d"}}, {"send": {"channel": "email", "template": "again"}}]}


@pytest.mark.parametrize(("products", "consumable", "days"), [
    ([{"category": "Coffee"}], {"coffee": 14}, 14),  # the shop's setting, matched without case
    ([{"category": "coffee"}, {"category": "Pet  food"}], {"Coffee": 21, "pet food": 365}, 21),  # the soonest
    ([{"category": "books"}], {"coffee": 14}, 30),  # not listed: the rule's own default
    ([{"category": "coffee"}], {}, 30),  # no setting: the default
    ([], {"coffee": 14}, 30),  # an order without categories
])
def test_a_reorder_wait_takes_the_days_the_categories_last(products: list[dict[str, Any]],
                                                           consumable: dict[str, int], days: int) -> None:
    eng, sp = engine(REORDER, consumable_categories=consumable), stored()
    fx = eng.process(sp, messages=[track("Order Completed", "o1", NOW, order_id="o1", revenue=10,
                                         products=products)], now=NOW)
    assert [d.at for d in fx.due if d.kind == "JOURNEY"] == [NOW + timedelta(days=days)]


def test_the_latest_orders_categories_count_not_a_late_arriving_older_order() -> None:
    from retention.journeys.engine import reorder_time
    eng, sp = engine(REORDER, consumable_categories={"coffee": 14, "tea": 60}), stored()
    eng.process(sp, messages=[track("Order Completed", "o2", NOW, order_id="o2", category="Tea")], now=NOW)
    eng.process(sp, messages=[track("Order Completed", "o1", NOW - timedelta(days=3), order_id="o1",
                                    products=[{"category": "coffee"}])], now=NOW)
    assert reorder_time(sp.profile, {"coffee": 14, "tea": 60}) == timedelta(days=60)


def test_a_reorder_wait_is_a_duration_or_reorder_not_both() -> None:
    from retention.core.errors import RetentionError
    with pytest.raises(RetentionError, match="duration or reorder"):
        parse_rule({**REORDER, "steps": [{"wait": {"reorder": "30d", "duration": "1d"}},
                                         {"send": {"template": "again"}}]})
