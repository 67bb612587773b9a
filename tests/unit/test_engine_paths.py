"""Engine paths that `make mutate` found untested (bench/results/mutation.md): re-entry rules and cooldowns,
last-touch attribution, date triggers, keyed slots, variants, segment steps, branches, revenue parsing,
bounded trigger properties."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.core.config import Settings
from retention.journeys.engine import Definitions, Engine, _prune_keyed, _revenue, _small
from retention.language.rules import parse_rule
from retention.schedule.due import DueItem

from tests.unit.test_engine_guards import NOW, ONE_SEND, engine, stored, track

SEND = [{"send": {"channel": "email", "template": "t"}}]


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.set_now(NOW)
    yield
    clock.reset()


# ---- re-entry -------------------------------------------------------------------------------------------------


def test_a_running_journey_is_not_restarted_by_a_new_trigger() -> None:
    rule = {"id": "r", "trigger": {"event": "Go"}, "steps": [{"wait": "1d"}, *SEND]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Go", "g1", NOW)], now=NOW)
    first = sp.profile.journeys["r"]["entry"]
    fx = eng.process(sp, messages=[track("Go", "g2", NOW + timedelta(hours=1))], now=NOW + timedelta(hours=1))
    assert sp.profile.journeys["r"]["entry"] == first and sp.profile.journeys["r"]["entries"] == 1
    assert not [c for c in fx.counters if "entered" in c[3]]


def test_re_entry_not_allowed_means_once_ever() -> None:
    eng, sp = engine({**ONE_SEND, "re_entry": {"allowed": False}}), stored()
    assert len(eng.process(sp, messages=[track("News", "n1", NOW)], now=NOW).sends) == 1
    later = NOW + timedelta(days=400)
    assert eng.process(sp, messages=[track("News", "n2", later)], now=later).sends == []


def test_re_entry_cooldown_is_counted_from_the_entry() -> None:
    eng, sp = engine({**ONE_SEND, "re_entry": {"cooldown": "7d"}}), stored()
    eng.process(sp, messages=[track("News", "n1", NOW)], now=NOW)
    almost = NOW + timedelta(days=7) - timedelta(seconds=1)
    assert eng.process(sp, messages=[track("News", "n2", almost)], now=almost).sends == []
    at = NOW + timedelta(days=7)
    assert len(eng.process(sp, messages=[track("News", "n3", at)], now=at).sends) == 1


# ---- attribution ---------------------------------------------------------------------------------------------


def sent(rule: str, step: int, at: Any, variant: str = "default") -> dict[str, Any]:
    return {"at": clock.iso(at), "rule": rule, "step": step, "variant": variant, "channel": "email",
            "marketing": True, "ledger": f"L-{rule}-{step}-{clock.iso(at)}"}


def converted(fx: Any) -> list[tuple[str, int, str, dict[str, float]]]:
    return [c for c in fx.counters if "converted" in c[3]]


def test_last_touch_within_the_window_gets_the_conversion_and_revenue() -> None:
    eng, sp = engine(ONE_SEND), stored()
    order_at = NOW
    sp.sends = [sent("old", 0, order_at - timedelta(days=5, seconds=1)),  # just outside 5 days
                sent("edge", 1, order_at - timedelta(days=5))]  # exactly at the window's start: inside
    fx = eng.process(sp, messages=[track("Order Completed", "o1", order_at, order_id="o1", revenue="99.999")],
                     now=order_at)
    assert converted(fx) == [("edge", 1, "default", {"converted": 1, "revenue": 100.0})]
    assert sp.profile.meta["conversions"][-1]["rule"] == "edge"


def test_the_latest_send_wins_and_conversions_stay_bounded() -> None:
    eng, sp = engine(ONE_SEND), stored()
    sp.sends = [sent("a", 0, NOW - timedelta(days=2)), sent("b", 3, NOW - timedelta(hours=1), "B")]
    for i in range(25):
        at = NOW + timedelta(minutes=i)
        fx = eng.process(sp, messages=[track("Order Completed", f"o{i}", at, order_id=f"o{i}", revenue=1)], now=at)
        assert converted(fx)[0][:3] == ("b", 3, "B")
    assert len(sp.profile.meta["conversions"]) == 20


def test_a_rules_own_goal_event_is_attributed() -> None:
    rule = {**ONE_SEND, "id": "sub", "trigger": {"event": "Form Seen"}, "goal": {"event": "Subscribed"}}
    eng, sp = engine(rule), stored()
    sp.sends = [sent("sub", 0, NOW - timedelta(hours=1))]
    fx = eng.process(sp, messages=[track("Subscribed", "s1", NOW)], now=NOW)
    assert [c[:2] for c in converted(fx)] == [("sub", 0)]
    fx = eng.process(sp, messages=[track("Page Viewed", "p1", NOW)], now=NOW)
    assert converted(fx) == []


# ---- profile changes and segments ------------------------------------------------------------------------------


def test_a_message_changes_the_profile_even_without_rules() -> None:
    eng = Engine(Definitions(rules=[], groups=[], settings=Settings()))
    fx = eng.process(stored(), messages=[track("Page Viewed", "p1", NOW)], now=NOW)
    assert fx.changed


def test_segment_moves_say_why_and_schedule_the_next_change() -> None:
    from retention.language.segments import default_groups
    eng = Engine(Definitions(rules=[], groups=default_groups(), settings=Settings()))
    sp = stored()
    fx = eng.process(sp, messages=[track("Order Completed", "o1", NOW, order_id="o1", revenue=10)], now=NOW)
    assert fx.history and {h["reason"] for h in fx.history} == {"event"}
    seg = [d for d in fx.due if d.kind == "SEGMENT"]
    assert len(seg) == 1 and seg[0].at > NOW and seg[0].ref == "segments"
    assert sp.profile.meta["segments_due_at"] == clock.iso(seg[0].at)
    later = seg[0].at
    fx = eng.process(sp, due_items=[], now=later, recheck_segments=True)
    assert fx.history and {h["reason"] for h in fx.history} == {"deadline"}


# ---- date triggers ----------------------------------------------------------------------------------------------


def test_every_date_rule_is_scheduled_whatever_comes_first() -> None:
    rules = [{"id": "plain", "trigger": {"event": "X"}, "steps": SEND},
             {"id": "wedding", "trigger": {"date_attribute": "wedding_day"}, "steps": SEND},
             {"id": "bday", "trigger": {"date_attribute": "birthday", "at": "10:00"}, "steps": SEND}]
    eng, sp = engine(*rules), stored()
    from retention.ingestion.wire import Message
    msg = Message(type="identify", message_id="i1", user_id="c1", traits={"birthday": "1990-03-15"},
                  timestamp=NOW, received_at=NOW)
    fx = eng.process(sp, messages=[msg], now=NOW)
    [item] = [d for d in fx.due if d.kind == "TRIGGER"]
    assert item.payload["rule"] == "bday" and item.at.month == 3 and fx.changed
    assert sp.profile.meta["date_triggers"]["bday"] == clock.iso(item.at)


def test_a_date_trigger_fires_once_and_schedules_next_year() -> None:
    rule = {"id": "bday", "trigger": {"date_attribute": "birthday", "at": "10:00"}, "steps": SEND}
    eng, sp = engine(rule), stored()
    from retention.ingestion.wire import Message
    msg = Message(type="identify", message_id="i1", user_id="c1", traits={"birthday": "1990-03-15"},
                  timestamp=NOW, received_at=NOW)
    [item] = [d for d in eng.process(sp, messages=[msg], now=NOW).due if d.kind == "TRIGGER"]
    stale = DueItem(at=item.at, kind="TRIGGER", customer_id="c1", ref="bday|old",
                    payload={**item.payload, "date": "2026-01-01T10:00:00.000000Z"})
    assert eng.process(sp, due_items=[stale], now=item.at).sends == []  # the date changed since
    fx = eng.process(sp, due_items=[item], now=item.at)
    assert len(fx.sends) == 1 and sp.profile.journeys["bday"]["state"] == "completed"
    [nxt] = [d for d in fx.due if d.kind == "TRIGGER"]
    assert timedelta(days=364) < nxt.at - item.at < timedelta(days=367)


# ---- keyed slots, variants, segment steps, branches --------------------------------------------------------------


def test_a_keyed_journey_lives_in_its_own_slot_and_its_items_name_it() -> None:
    rule = {"id": "ship", "journey_key": "order_id", "trigger": {"event": "Order Shipped"},
            "steps": [{"wait": "1d"}, *SEND]}
    eng, sp = engine(rule), stored()
    fx = eng.process(sp, messages=[track("Order Shipped", "s1", NOW, order_id="A7")], now=NOW)
    assert sp.profile.journeys["ship#A7"]["slot"] == "ship#A7"
    [item] = [d for d in fx.due if d.kind == "JOURNEY"]
    assert item.ref.startswith("ship#A7|")
    assert len(eng.process(sp, due_items=[item], now=NOW + timedelta(days=1)).sends) == 1
    plain, sp2 = engine(ONE_SEND), stored("c2")
    plain.process(sp2, messages=[track("News", "n1", NOW, cid="c2")], now=NOW)
    assert "slot" not in sp2.profile.journeys["news"]


def test_the_chosen_variant_is_kept_on_the_journey() -> None:
    rule = {"id": "ab", "trigger": {"event": "Go"},
            "steps": [{"send": {"channel": "email", "variants": [{"template": "a", "weight": 50, "name": "A"},
                                                                  {"template": "b", "weight": 50, "name": "B"}]}}]}
    eng, sp = engine(rule), stored()
    [req] = eng.process(sp, messages=[track("Go", "g1", NOW)], now=NOW).sends
    assert req.variant in ("A", "B") and sp.profile.journeys["ab"]["variant"] == req.variant


def test_a_set_segment_step_expires_after_its_until() -> None:
    rule = {"id": "calm", "trigger": {"event": "Go"},
            "steps": [{"set_segment": {"group": "lifecycle", "segment": "complaint", "until": "30d"}}]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Go", "g1", NOW)], now=NOW)
    manual = sp.profile.meta["manual_segments"]["lifecycle"]
    assert manual["segment"] == "complaint" and manual["until"] == clock.iso(NOW + timedelta(days=30))


def test_an_engagement_branch_reads_the_previous_message() -> None:
    rule = {"id": "eng", "trigger": {"event": "Go"},
            "steps": [{"send": {"channel": "email", "template": "first"}}, {"wait": "1d"},
                      {"branch": {"if": {"opened_previous": True}, "then": "end"}},
                      {"send": {"channel": "email", "template": "nudge"}}]}
    outcomes = {}
    for opened in (True, False):
        eng, sp = engine(rule), stored()
        fx = eng.process(sp, messages=[track("Go", "g1", NOW)], now=NOW)
        entry = sp.profile.journeys["eng"]["entry"]
        if opened:
            sp.profile.meta["engagement"] = {f"eng|{entry}|0": ["opened"]}
        [item] = [d for d in fx.due if d.kind == "JOURNEY"]
        outcomes[opened] = [s.template for s in eng.process(sp, due_items=[item], now=NOW + timedelta(days=1)).sends]
    assert outcomes == {True: [], False: ["nudge"]}


def test_a_condition_branch_sees_the_trigger_event() -> None:
    rule = {"id": "st", "trigger": {"event": ["Order Shipped", "Order Ready for Pickup"]},
            "steps": [{"branch": {"if": {"event": "Order Ready for Pickup"}, "then": "remind", "else": "end"}},
                      {"id": "remind", "send": {"channel": "email", "template": "pickup"}}]}
    eng = engine(rule)
    shipped = eng.process(stored(), messages=[track("Order Shipped", "a", NOW)], now=NOW)
    ready = eng.process(stored(), messages=[track("Order Ready for Pickup", "b", NOW)], now=NOW)
    assert (len(shipped.sends), len(ready.sends)) == (0, 1)


# ---- small helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("props", "value"), [
    ({"revenue": "12.345"}, 12.35), ({"revenue": "abc", "total": 5}, 5.0), ({"revenue": [1], "value": 2}, 2.0),
    ({"total": 7.456}, 7.46), ({}, 0.0), ({"revenue": None, "total": None}, 0.0),
])
def test_revenue_from_the_first_numeric_key(props: dict[str, Any], value: float) -> None:
    assert _revenue(props) == value


def test_trigger_properties_are_bounded_at_4000_characters() -> None:
    import json
    props = {"a": "x" * 10, "items": [{"p": 1}], "cart": {"id": "k1"}}
    pad = 4000 - len(json.dumps({**props, "pad": ""}, ensure_ascii=False))
    whole = {**props, "pad": "y" * pad}
    assert len(json.dumps(whole, ensure_ascii=False)) == 4000 and _small(whole) == whole
    over = {**whole, "pad": "y" * (pad + 1)}
    assert _small(over) == {"a": "x" * 10, "pad": "y" * (pad + 1)}


def test_keyed_journeys_ended_exactly_30_days_ago_are_kept() -> None:
    horizon = clock.iso(NOW - timedelta(days=30))
    journeys = {"k#1": {"ended_at": horizon}, "k#2": {"ended_at": clock.iso(NOW - timedelta(days=30, seconds=1))}}
    _prune_keyed(journeys, "k", NOW)
    assert set(journeys) == {"k#1"}


def test_parse_of_the_rules_used_here() -> None:
    assert parse_rule({**ONE_SEND, "re_entry": {"cooldown": "7d"}}).re_entry.cooldown == timedelta(days=7)


# ---- survivors of the second make mutate run ---------------------------------------------------------------------


def test_a_one_percent_global_control_group_holds_about_one_percent() -> None:
    from retention.journeys.engine import in_global_control
    held = sum(in_global_control(f"c{i}", 1) for i in range(20_000))
    assert 120 < held < 280


def test_a_goal_exit_records_its_reason_and_a_set_segment_names_its_journey() -> None:
    rule = {"id": "calm", "trigger": {"event": "Go"}, "exit_when": {"event": "Stop"},
            "steps": [{"set_segment": {"group": "lifecycle", "segment": "complaint"}}, {"wait": "1d"}, *SEND]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Go", "g1", NOW)], now=NOW)
    assert sp.profile.meta["manual_segments"]["lifecycle"]["reason"] == "journey calm"
    eng.process(sp, messages=[track("Stop", "s1", NOW + timedelta(hours=1))], now=NOW + timedelta(hours=1))
    assert sp.profile.journeys["calm"]["exit_reason"] == "goal:Stop"


def test_the_trigger_properties_cap_counts_characters_not_escapes() -> None:
    props = {"name": "я" * 3900, "items": [{"p": 1}]}
    assert _small(props) == props  # 3,900 Cyrillic letters are under 4,000 characters (not 23,400 escapes)
