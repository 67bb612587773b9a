"""Engine behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md):
the step limit of one advance, the global control group's assignment, exit reasons, the reason of a
segment set by a journey, and the size guard of the trigger properties kept for templates.

Each test names the mutant it kills. Pure: no AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.core.config import Settings
from retention.customers.profile import Profile
from retention.customers.store import StoredProfile
from retention.ingestion.wire import Message
from retention.journeys.engine import Definitions, Engine, in_global_control
from retention.language.rules import parse_rule

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def engine(*bodies: dict[str, Any], **settings: Any) -> Engine:
    return Engine(Definitions(rules=[parse_rule(b) for b in bodies], groups=[], settings=Settings(**settings)))


def stored(cid: str = "c1") -> StoredProfile:
    return StoredProfile(profile=Profile(id=cid, created_at=NOW - timedelta(days=30)), version=1)


def track(event: str, mid: str, cid: str = "c1", **props: Any) -> Message:
    return Message(type="track", message_id=mid, user_id=cid, event=event, properties=props, timestamp=NOW,
                   received_at=NOW)


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.set_now(NOW)
    yield
    clock.reset()


# ---- the step limit of one advance -----------------------------------------------------------------


def chain(n: int) -> dict[str, Any]:
    """A rule of `n` steps that never wait (each jumps to the next; the last one ends the journey)."""
    steps: list[dict[str, Any]] = [{"goto": i + 1} for i in range(n - 1)] + [{"goto": "end"}]
    return {"id": "chain", "trigger": {"event": "Go"}, "steps": steps}


def test_one_advance_runs_at_most_fifty_steps() -> None:
    """Kills `MAX_STEPS_PER_ADVANCE = 50` → 49 / 51. A journey of 49 steps that never wait completes in
    one advance (49 steps, then the end: 50 turns); one of 50 steps is stopped as `too_many_steps` after
    running exactly 50 steps."""
    sp = stored()
    engine(chain(49)).process(sp, messages=[track("Go", "m1")], now=NOW)
    assert sp.profile.journeys["chain"]["state"] == "completed"
    assert sp.profile.journeys["chain"]["exit_reason"] is None

    sp, trace = stored(), []  # type: ignore[var-annotated]
    engine(chain(50)).process(sp, messages=[track("Go", "m1")], now=NOW, trace=trace)
    journey = sp.profile.journeys["chain"]
    assert (journey["state"], journey["exit_reason"]) == ("exited", "too_many_steps")
    assert [row["step"] for row in trace] == list(range(50))


# ---- exit reasons ------------------------------------------------------------------------------------


def test_a_journey_exited_by_its_goal_records_why() -> None:
    """Kills `_end`: `if reason:` → `if not reason:` (the reason of an exit was dropped)."""
    rule = {"id": "cart", "trigger": {"event": "Checkout Started"}, "exit_when": {"event": "Order Completed"},
            "steps": [{"wait": "1h"}, {"send": {"channel": "email", "template": "first"}}]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Checkout Started", "m1")], now=NOW)
    eng.process(sp, messages=[track("Order Completed", "m2")], now=NOW)
    journey = sp.profile.journeys["cart"]
    assert (journey["state"], journey["exit_reason"]) == ("exited", "goal:Order Completed")
    assert journey["ended_at"] == clock.iso(NOW) and journey["next_due"] is None


# ---- the global control group ------------------------------------------------------------------------


@pytest.mark.parametrize(("customer", "bucket"), [("cust-1", 38), ("cust-69", 23), ("c0", 4869), ("c1", 9241)])
def test_the_global_control_group_is_a_fixed_hash_bucket_of_the_customer_id(customer: str, bucket: int) -> None:
    """Kills `hexdigest()[:8]` → `[:9]` and `int(…, 16)` → `int(…, 17)`. The bucket (0-9999) is a published
    function of the customer id: the same customer stays in (or out of) the control group across releases,
    else the uplift compares groups that changed mid-measure. A customer is held out when bucket < percent
    × 100."""
    assert not in_global_control(customer, bucket / 100)
    assert in_global_control(customer, (bucket + 1) / 100)


def test_a_one_percent_global_control_group_holds_customers_out() -> None:
    """Kills `if percent <= 0` → `if percent <= 1` (a 1 % control group would be empty)."""
    assert in_global_control("cust-1", 1)  # bucket 38
    assert not in_global_control("cust-1", 0)
    held = sum(in_global_control(f"cust-{i}", 1) for i in range(2000))
    assert 8 <= held <= 40  # about 1 % of 2000


def test_a_customer_in_the_global_control_group_enters_held_out_and_gets_nothing() -> None:
    """The same bucket through the engine: at 1 %, `cust-1` (bucket 38) is held out of a marketing rule,
    `c0` (bucket 4869) is not."""
    rule = {"id": "news", "trigger": {"event": "News"}, "steps": [{"send": {"channel": "email", "template": "n"}}]}
    eng = engine(rule, control_group_percent=1)
    held, treated = stored("cust-1"), stored("c0")
    fx_held = eng.process(held, messages=[track("News", "m1", cid="cust-1")], now=NOW)
    fx_treated = eng.process(treated, messages=[track("News", "m1", cid="c0")], now=NOW)
    assert held.profile.journeys["news"]["holdout"] is True and fx_held.sends == []
    assert treated.profile.journeys["news"]["holdout"] is False and len(fx_treated.sends) == 1


# ---- a segment set by a journey ----------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected"), [(None, "journey winback"), ("won back", "won back")])
def test_a_segment_set_by_a_journey_says_why(reason: str | None, expected: str) -> None:
    """Kills `spec.reason or f"journey {rule.id}"` → `and`: without a reason of its own the manual segment
    names the journey; with one it keeps it."""
    change: dict[str, Any] = {"group": "lifecycle", "segment": "won"}
    if reason:
        change["reason"] = reason
    rule = {"id": "winback", "trigger": {"event": "Back"}, "steps": [{"set_segment": change}]}
    sp = stored()
    engine(rule).process(sp, messages=[track("Back", "m1")], now=NOW)
    assert sp.profile.meta["manual_segments"]["lifecycle"] == {"segment": "won", "reason": expected, "until": None}


# ---- trigger properties kept for templates -----------------------------------------------------------


def kept(props: dict[str, Any]) -> dict[str, Any]:
    rule = {"id": "cart", "trigger": {"event": "Checkout Started"}, "steps": [{"wait": "1h"}]}
    sp = stored()
    engine(rule).process(sp, messages=[track("Checkout Started", "m1", **props)], now=NOW)
    return sp.profile.journeys["cart"]["trigger"]["properties"]  # type: ignore[no-any-return]


def test_non_ascii_trigger_properties_are_measured_as_written() -> None:
    """Kills `json.dumps(props, …, ensure_ascii=False)` → `True` in `_small`: a cart of Cyrillic product
    names is 2 KB as stored, 6 KB once escaped; it fits the 4000-character bound and is kept whole."""
    items = [{"name": "Кофемашина автоматическая", "sku": f"sku-{i}"} for i in range(40)]
    assert len(json.dumps({"items": items}, ensure_ascii=False)) < 4000 < len(json.dumps({"items": items}))
    assert kept({"items": items, "total": 10}) == {"items": items, "total": 10}


def test_trigger_properties_over_4000_characters_keep_only_their_scalars() -> None:
    """The bound itself: 4000 characters of JSON are kept whole, 4001 lose their lists and objects."""
    def props(size: int) -> dict[str, Any]:
        base = {"items": [""], "total": 10}
        pad = size - len(json.dumps(base, ensure_ascii=False))
        return {"items": ["x" * pad], "total": 10}
    assert len(json.dumps(props(4000), ensure_ascii=False)) == 4000
    assert kept(props(4000)) == props(4000)
    assert kept(props(4001)) == {"total": 10}


# ---- ids derived from content: stable across releases ------------------------------------------------


def test_a_journey_entry_id_is_a_fixed_function_of_rule_and_trigger() -> None:
    """Kills `hexdigest()[:16]` → `[:17]` in `entry_id`: the entry id is how a trigger seen again (a retry,
    a replayed broadcast) is recognised, also after a deploy; it is also part of ledger ids and due refs."""
    rule = {"id": "cart", "trigger": {"event": "Checkout Started"}, "steps": [{"wait": "1h"}]}
    sp = stored()
    engine(rule).process(sp, messages=[track("Checkout Started", "m1")], now=NOW)
    assert sp.profile.journeys["cart"]["entry"] == "8d5c2169efa9df95"  # sha256("cart|m1")[:16]


def test_segment_events_are_internal_with_an_id_derived_from_the_move() -> None:
    """Kills `"internal": True` → False and `hexdigest()[:20]` → `[:19]` in `_segments`: a segment move
    is written to the timeline as an internal event whose id is a pure function of (customer, group,
    segment, kind, time), so a retried chunk writes the same item."""
    import hashlib

    from retention.language.segments import default_groups
    eng = Engine(Definitions(rules=[], groups=default_groups(), settings=Settings()))
    fx = eng.process(stored(), messages=[track("Order Completed", "o1", order_id="o1", revenue=10)], now=NOW)
    assert fx.transitions and len(fx.events) == len(fx.transitions)
    for t, ev in zip(fx.transitions, fx.events, strict=True):
        name = "Segment Entered" if t.kind == "entered" else "Segment Exited"
        digest = hashlib.sha256(f"c1|{t.group}|{t.segment}|{t.kind}|{clock.iso(NOW)}".encode()).hexdigest()
        assert ev["event"] == name and ev["internal"] is True
        assert ev["message_id"] == "seg-" + digest[:20]


# ---- the customer's timezone ---------------------------------------------------------------------------


@pytest.mark.parametrize(("timezone", "default", "due"), [
    ("Asia/Vladivostok", "UTC", datetime(2026, 11, 25, 0, 0, tzinfo=UTC)),  # 10:00 at UTC+10
    (None, "Europe/Moscow", datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),  # the shop's zone, 10:00 at UTC+3
])
def test_a_wait_until_an_hour_uses_the_customers_timezone_else_the_shops(
        timezone: str | None, default: str, due: datetime) -> None:
    """Kills `profile.traits.get("timezone") or defs.settings.default_timezone` → `and` in `customer_tz`."""
    rule = {"id": "morning", "trigger": {"event": "Go"}, "steps": [{"wait": {"until": {"hour": 10}}},
                                                                  {"send": {"channel": "email", "template": "t"}}]}
    sp = stored()
    if timezone:
        sp.profile.traits["timezone"] = timezone
    fx = engine(rule, default_timezone=default).process(sp, messages=[track("Go", "m1")], now=NOW)
    assert [d.at for d in fx.due if d.kind == "JOURNEY"] == [due]


# ---- which messages are events -------------------------------------------------------------------------


def test_only_track_messages_start_journeys_even_if_another_type_carries_an_event_field() -> None:
    """Kills `if msg.type == "track" and msg.event` → `or` in `process`: an identify that happens to carry
    an `event` field is not an event."""
    rule = {"id": "news", "trigger": {"event": "News"}, "steps": [{"send": {"channel": "email", "template": "n"}}]}
    identify = Message(type="identify", message_id="i1", user_id="c1", event="News", properties={},
                       traits={"first_name": "Anna"}, timestamp=NOW, received_at=NOW)
    sp = stored()
    fx = engine(rule).process(sp, messages=[identify], now=NOW)
    assert "news" not in sp.profile.journeys and fx.sends == []


# ---- attribution -----------------------------------------------------------------------------------------


def sent(rule: str, at: datetime, step: int = 0) -> dict[str, Any]:
    return {"rule": rule, "step": step, "variant": "default", "at": clock.iso(at), "ledger": f"L-{rule}"}


def conversions(fx: Any) -> list[tuple[str, int, str]]:
    return [(r, step, variant) for r, step, variant, values in fx.counters if values.get("converted")]


def test_an_order_converts_for_a_rule_no_longer_enabled() -> None:
    """Kills `if msg.event == GOAL_EVENT or …` → `if not msg.event == GOAL_EVENT or …`: an order is every
    rule's default goal, also of a rule since disabled (no rule enabled here)."""
    sp = stored()
    sp.sends.append(sent("old", NOW - timedelta(hours=2)))
    fx = engine().process(sp, messages=[track("Order Completed", "o1", order_id="o1", revenue=50)], now=NOW)
    assert conversions(fx) == [("old", 0, "default")]


def test_a_send_at_the_very_second_of_the_order_gets_the_conversion() -> None:
    """Kills `<= clock.parse_iso(s["at"]) <= at` → `< at` in `_attribute`: the window includes its end."""
    sp = stored()
    sp.sends.append(sent("promo", NOW))
    fx = engine().process(sp, messages=[track("Order Completed", "o1", order_id="o1", revenue=50)], now=NOW)
    assert conversions(fx) == [("promo", 0, "default")]


def test_every_journey_entered_in_the_window_converts_after_one_that_did_not() -> None:
    """Kills `continue` → `break` in `_attribute`'s journey loop: a journey entered before the window (5
    days) is passed over, not the end of the loop."""
    sp = stored()
    # held-out journeys (they convert on their entry row without any send: the uplift's control group)
    sp.profile.journeys["old"] = {"entry": "e-old", "state": "control", "holdout": True,
                                  "entered_at": clock.iso(NOW - timedelta(days=10))}
    sp.profile.journeys["recent"] = {"entry": "e-new", "state": "control", "holdout": True,
                                     "entered_at": clock.iso(NOW - timedelta(hours=1))}
    fx = engine().process(sp, messages=[track("Order Completed", "o1", order_id="o1", revenue=50)], now=NOW)
    assert conversions(fx) == [("recent", -1, "holdout")]
    assert sp.profile.journeys["recent"]["converted_entry"] == "e-new"
    assert "converted_entry" not in sp.profile.journeys["old"]


# ---- the dry-run's trace -------------------------------------------------------------------------------


def test_the_trace_names_labels_branch_targets_and_segment_steps() -> None:
    """Kills, in `_advance`'s trace rows: `if step.id:` → `if not step.id:` (the label), `next="end" if nxt
    is None else nxt` → `is not None` / `not … is None` (where a branch goes), and `… if kind ==
    "set_segment" else …` → `if not kind == …` (the group and segment of a segment step)."""
    rule = {"id": "sorting", "trigger": {"event": "Go"}, "steps": [
        {"id": "buyer", "branch": {"if": {"kpi": "orders_count", "gt": 0}, "then": 2}},
        {"set_segment": {"group": "lifecycle", "segment": "vip"}},
        {"clear_segment": {"group": "lifecycle"}},
        {"branch": {"if": {"kpi": "orders_count", "gt": 0}, "then": "end"}}]}
    trace: list[dict[str, Any]] = []
    engine(rule).process(stored(), messages=[track("Go", "m1")], now=NOW, trace=trace)
    rows = [{k: v for k, v in row.items() if k not in ("entry", "at")} for row in trace]
    assert rows == [
        {"step": 0, "kind": "branch", "label": "buyer", "taken": False, "next": 1},
        {"step": 1, "kind": "set_segment", "group": "lifecycle", "segment": "vip"},
        {"step": 2, "kind": "clear_segment", "group": "lifecycle"},
        {"step": 3, "kind": "branch", "taken": False, "next": "end"},
    ]


def test_a_journey_entered_at_the_very_second_of_the_order_converts() -> None:
    """Kills `<= clock.parse_iso(entered) <= at` → `< at` in `_attribute`'s journey loop: the window includes
    its end."""
    sp = stored()
    sp.profile.journeys["promo"] = {"entry": "e1", "state": "control", "holdout": True, "entered_at": clock.iso(NOW)}
    fx = engine().process(sp, messages=[track("Order Completed", "o1", order_id="o1", revenue=50)], now=NOW)
    assert conversions(fx) == [("promo", -1, "holdout")]


def test_a_wait_that_ends_now_does_not_wait() -> None:
    """Kills `if due_at > now` → `>=` in `_advance`: a wait until 09:00 reached at 09:00 sharp goes on to
    the next step in the same advance (no due item, no tick of delay)."""
    rule = {"id": "morning", "trigger": {"event": "Go"}, "steps": [{"wait": {"until": {"hour": 9}}},
                                                                  {"send": {"channel": "email", "template": "t"}}]}
    assert NOW.hour == 9 and NOW.minute == 0
    fx = engine(rule).process(stored(), messages=[track("Go", "m1")], now=NOW)
    assert [s.template for s in fx.sends] == ["t"]
    assert [d for d in fx.due if d.kind == "JOURNEY"] == []


def test_a_segment_set_by_a_journey_starts_the_journeys_it_triggers() -> None:
    """Kills `for ev in self._segments(…)` → `for ev in []` in `_advance`: the `Segment Entered` event of a
    segment set by one journey starts another journey triggered by it, in the same advance."""
    from retention.language.segments import parse_group
    tier = parse_group({"group": "tier", "mode": "multi", "segments": [{"id": "vip", "manual_only": True}]},
                       "tier.yaml")
    setter = {"id": "promote", "trigger": {"event": "Go"},
              "steps": [{"set_segment": {"group": "tier", "segment": "vip"}}]}
    welcome = {"id": "vip-welcome", "trigger": {"segment_entered": "vip"},
               "steps": [{"send": {"channel": "email", "template": "vip"}}]}
    eng = Engine(Definitions(rules=[parse_rule(setter), parse_rule(welcome)], groups=[tier], settings=Settings()))
    sp = stored()
    fx = eng.process(sp, messages=[track("Go", "m1")], now=NOW)
    assert sp.profile.journeys["vip-welcome"]["state"] == "completed"
    assert [(s.rule, s.template) for s in fx.sends] == [("vip-welcome", "vip")]


def test_an_event_due_now_keeps_its_properties_for_the_journey_it_starts() -> None:
    """Kills `dict(item.payload.get("properties") or {})` → `and {}` in `_on_due_event`: an event written ahead
    of time (a replenishment reminder) starts its journey with its properties (the product for the
    template), and is written to the timeline with them."""
    from retention.schedule.due import DueItem
    rule = {"id": "refill", "trigger": {"event": "Replenishment Due"},
            "steps": [{"send": {"channel": "email", "template": "refill"}}]}
    item = DueItem(at=NOW, kind="EVENT", customer_id="c1", ref="o1|p1",
                   payload={"name": "Replenishment Due", "properties": {"product_id": "p1", "order_id": "o1"}})
    sp = stored()
    fx = engine(rule).process(sp, due_items=[item], now=NOW)
    props = {"product_id": "p1", "order_id": "o1"}
    assert sp.profile.journeys["refill"]["trigger"]["properties"] == props
    assert [s.event for s in fx.sends] == [{"name": "Replenishment Due", "properties": props}]
    assert [(e["properties"], e["internal"]) for e in fx.events] == [(props, True)]


def test_a_checkout_with_an_empty_cart_ends_the_cart_journey_without_starting_another() -> None:
    """Kills `return True` → `return False` after `_end(…, "cart_emptied")` in `_refresh_trigger`: a
    `Checkout Started` is both a cart event and the rule's trigger; with an empty product list it ends the
    journey, and must not then start a new one with an empty cart."""
    rule = {"id": "cart", "trigger": {"events": ["Checkout Started", "Product Added"], "update": "cart"},
            "re_entry": {"cooldown": "7d"},
            "steps": [{"wait": "4h"}, {"send": {"channel": "email", "template": "cart-reminder"}}]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Product Added", "m1", product_id="a")], now=NOW)
    later = NOW + timedelta(minutes=5)
    empty = Message(type="track", message_id="m2", user_id="c1", event="Checkout Started",
                    properties={"products": []}, timestamp=later, received_at=later)
    fx = eng.process(sp, messages=[empty], now=later)
    journey = sp.profile.journeys["cart"]
    assert (journey["state"], journey["exit_reason"], journey["entries"]) == ("exited", "cart_emptied", 1)
    assert [d for d in fx.due if d.kind == "JOURNEY"] == []


def test_a_segment_entered_by_an_event_exactly_at_the_history_horizon_starts_its_journeys() -> None:
    """Kills `any(m.timestamp >= live_after …)` → `>` in `process`: an event exactly 24 h old (the history
    horizon) is live, so the segment it moves the customer into starts that segment's journeys."""
    from retention.language.segments import parse_group
    buyers = parse_group({"group": "buyers", "mode": "multi", "segments": [
        {"id": "buyer", "when": {"kpi": "orders_count", "gte": 1}}]}, "buyers.yaml")
    welcome = {"id": "buyer-welcome", "trigger": {"segment_entered": "buyer"},
               "steps": [{"send": {"channel": "email", "template": "thanks"}}]}
    eng = Engine(Definitions(rules=[parse_rule(welcome)], groups=[buyers], settings=Settings()))
    horizon = NOW - timedelta(hours=24)
    order = Message(type="track", message_id="o1", user_id="c1", event="Order Completed",
                    properties={"order_id": "o1", "revenue": 10}, timestamp=horizon, received_at=NOW)
    sp = stored()
    fx = eng.process(sp, messages=[order], now=NOW)
    assert [t.segment for t in fx.transitions if t.kind == "entered"] == ["buyer"]
    assert [s.rule for s in fx.sends] == ["buyer-welcome"]


def test_a_goto_shows_in_the_trace_as_a_branch_always_taken() -> None:
    """Kills `row.update(kind="branch", taken=True, …)` → `taken=False` for a goto in `_advance`."""
    rule = {"id": "jump", "trigger": {"event": "Go"}, "steps": [{"goto": 2}, {"wait": "1d"},
                                                               {"send": {"channel": "email", "template": "t"}}]}
    trace: list[dict[str, Any]] = []
    engine(rule).process(stored(), messages=[track("Go", "m1")], now=NOW, trace=trace)
    assert {k: v for k, v in trace[0].items() if k not in ("entry", "at")} == \
        {"step": 0, "kind": "branch", "taken": True, "next": 2}


def test_a_journey_entered_exactly_at_the_start_of_the_window_converts() -> None:
    """Kills `at - window(rule_id) <= clock.parse_iso(entered)` → `<` in `_attribute`: the 5-day window
    includes its first second."""
    sp = stored()
    sp.profile.journeys["promo"] = {"entry": "e1", "state": "control", "holdout": True,
                                    "entered_at": clock.iso(NOW - timedelta(days=5))}
    fx = engine().process(sp, messages=[track("Order Completed", "o1", order_id="o1", revenue=50)], now=NOW)
    assert conversions(fx) == [("promo", -1, "holdout")]
