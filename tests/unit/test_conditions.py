from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from retention.core import clock
from retention.core.errors import ValidationError
from retention.core.yamlio import LineMap, format_validation_error, load_yaml_documents
from retention.language.conditions import (
    AllCondition,
    Condition,
    evaluate,
    next_change_at,
    parse_condition,
    parse_duration,
    referenced_fields,
    referenced_segments,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def facts(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "traits": {},
        "kpis": {},
        "consent": {"email": False, "sms": False},
        "segments": set(),
        "now": NOW,
    }
    base.update(overrides)
    return base


def check(cond: dict[str, Any], **fact_overrides: Any) -> bool:
    return evaluate(parse_condition(cond), facts(**fact_overrides))


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("180d", timedelta(days=180)),
        ("2w", timedelta(days=14)),
        ("6mo", timedelta(days=180)),
        ("1y", timedelta(days=365)),
        ("1.5d", timedelta(hours=36)),
        ("45s", timedelta(seconds=45)),
        # the one grammar of rules and conditions (retention.language.durations)
        ("1d12h", timedelta(hours=36)),
        ("0d", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "3x", "d", "-1d", "1 month"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- combinators, consent, segments, events ---------------------------------------------------------


def test_all_any_not() -> None:
    gte2 = {"kpi": "orders_count", "gte": 2}
    vip = {"trait": "vip", "eq": True}
    kw = {"kpis": {"orders_count": 3}, "traits": {"vip": False}}
    assert check({"all": [gte2]}, **kw) is True
    assert check({"all": [gte2, vip]}, **kw) is False
    assert check({"any": [gte2, vip]}, **kw) is True
    assert check({"not": vip}, **kw) is True
    assert check({"not": {"any": [gte2, vip]}}, **kw) is False
    # empty lists: all() of nothing holds, any() of nothing does not
    assert check({"all": []}) is True
    assert check({"any": []}) is False


def test_consent() -> None:
    assert check({"consent": "email"}, consent={"email": True, "sms": False}) is True
    assert check({"consent": "sms"}, consent={"email": True, "sms": False}) is False
    assert check({"consent": "sms"}, consent={}) is False


def test_consent_state_tells_never_asked_from_refused() -> None:
    """Issue 14: the double opt-in asks those who never answered (or did not confirm), never a refusal."""
    ask = {"consent": "email", "state": ["unknown", "pending"]}
    assert check(ask, consent_state={"email": "unknown"}) is True
    assert check(ask, consent_state={"email": "pending"}) is True
    assert check(ask, consent_state={"email": "refused"}) is False
    assert check(ask, consent_state={"email": "granted"}, consent={"email": True}) is False
    assert check(ask) is True  # no state in the facts: never asked
    assert check({"consent": "email", "state": "refused"}, consent_state={"email": "refused"}) is True
    with pytest.raises(ValidationError):
        parse_condition({"consent": "email", "state": "maybe"})
    with pytest.raises(ValidationError):
        parse_condition({"consent": "email", "states": ["unknown"]})


def test_consent_states_of_a_profile() -> None:
    from retention.customers.profile import Consent, Profile, consent_states
    p = Profile(id="c")
    assert consent_states(p) == {"email": "unknown", "sms": "unknown"}
    p.consent["email"] = Consent(granted=True, double_opt_in=True, at=NOW)
    p.consent["sms"] = Consent(granted=False, at=NOW)
    assert consent_states(p) == {"email": "pending", "sms": "refused"}
    p.consent["email"] = Consent(granted=True, double_opt_in=True, at=NOW, confirmed_at=NOW)
    assert consent_states(p)["email"] == "granted"


def test_segment_membership() -> None:
    segs = {"loyal", "lifecycle/loyal", "nps_group/passive", "passive"}
    assert check({"in_segment": "loyal"}, segments=segs) is True
    assert check({"in_segment": "nps_group/passive"}, segments=segs) is True
    assert check({"in_segment": "fraud"}, segments=segs) is False
    assert check({"not_in_segment": "fraud"}, segments=segs) is True
    assert check({"not_in_segment": "loyal"}, segments=segs) is False
    assert check({"not_in_segment": "fraud"}, segments=None) is True


def test_event_name() -> None:
    event = {"name": "Order Completed", "properties": {}, "timestamp": NOW}
    assert check({"event": "Order Completed"}, event=event) is True
    assert check({"event": "Product Viewed"}, event=event) is False
    assert check({"event_in": ["Product Viewed", "Order Completed"]}, event=event) is True
    assert check({"event_in": ["Product Viewed"]}, event=event) is False
    assert check({"event": "Order Completed"}) is False  # no event in the facts


# --- comparisons -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", 3, 3, True),
        ("eq", 3, 3.0, True),
        ("eq", 3, 4, False),
        ("ne", 3, 4, True),
        ("ne", 3, 3, False),
        ("gt", 3, 4, True),
        ("gt", 3, 3, False),
        ("gte", 3, 3, True),
        ("lt", 3, 2.5, True),
        ("lt", 3, 3, False),
        ("lte", 3, 3, True),
        ("in", [1, 2], 2, True),
        ("in", [1, 2], 3, False),
        ("not_in", [1, 2], 3, True),
        ("not_in", [1, 2], 1, False),
        ("exists", True, 0, True),
        ("exists", False, 0, False),
    ],
)
def test_kpi_ops(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert check({"kpi": "orders_count", op: value}, kpis={"orders_count": actual}) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists"])
def test_missing_value_fails_every_op_but_exists_false(op: str) -> None:
    value: Any = {"in": [1], "not_in": [1], "exists": True}.get(op, 1)
    assert check({"kpi": "orders_count", op: value}) is False
    assert check({"kpi": "orders_count", op: value}, kpis={"orders_count": None}) is False
    assert check({"kpi": "orders_count", "exists": False}) is True


def test_several_ops_make_a_range() -> None:
    cond = {"kpi": "nps_last_score", "gte": 7, "lt": 9}
    assert [check(cond, kpis={"nps_last_score": s}) for s in (6, 7, 8, 9)] == [False, True, True, False]


def test_trait_values_are_coerced_to_the_target_kind() -> None:
    # shops send numbers and booleans as strings more often than not
    assert check({"trait": "age", "gte": 18}, traits={"age": "21"}) is True
    assert check({"trait": "age", "gte": 18}, traits={"age": "young"}) is False
    assert check({"trait": "vip", "eq": True}, traits={"vip": "true"}) is True
    assert check({"trait": "vip", "eq": True}, traits={"vip": 1}) is False  # 1 is not a boolean
    assert check({"trait": "vip", "eq": True}, traits={"vip": True}) is True
    assert check({"trait": "code", "eq": "42"}, traits={"code": 42}) is True
    assert check({"trait": "plan", "in": ["gold", "silver"]}, traits={"plan": "gold"}) is True
    assert check({"trait": "city", "gt": "M"}, traits={"city": "Tver"}) is True


def test_contains_and_list_values() -> None:
    assert check({"trait": "email", "contains": "@mail.ru"}, traits={"email": "a@mail.ru"}) is True
    assert check({"trait": "email", "contains": "@gmail"}, traits={"email": "a@mail.ru"}) is False
    assert check({"trait": "tags", "contains": "kids"}, traits={"tags": ["kids", "pets"]}) is True
    assert check({"trait": "tags", "contains": "cars"}, traits={"tags": ["kids", "pets"]}) is False
    # `in` with a list value: any element
    assert check({"trait": "tags", "in": ["pets", "cars"]}, traits={"tags": ["kids", "pets"]}) is True


def test_timestamp_kpi_compares_as_time() -> None:
    cond = {"kpi": "last_order_at", "gte": "2024-05-01T00:00:00Z"}
    assert check(cond, kpis={"last_order_at": "2024-05-01T03:00:00+03:00"}) is True  # = 00:00Z
    assert check(cond, kpis={"last_order_at": "2024-04-30T23:59:59Z"}) is False


def test_event_property_paths() -> None:
    event = {
        "name": "Order Completed",
        "properties": {"total": 1500, "shop": {"id": "s1"}, "products": [{"sku": "A"}, {"sku": "B"}]},
    }
    assert check({"property": "total", "gt": 1000}, event=event) is True
    assert check({"property": "shop.id", "eq": "s1"}, event=event) is True
    assert check({"property": "products.1.sku", "eq": "B"}, event=event) is True
    assert check({"property": "products.5.sku", "exists": False}, event=event) is True
    assert check({"property": "total.x", "exists": True}, event=event) is False
    assert check({"property": "total", "gt": 1000}) is False  # no event


# --- since -------------------------------------------------------------------------------------------


def test_since_fixed_duration_and_flip_time() -> None:
    cond = parse_condition({"since": "last_order_at", "gte": "180d"})
    last = NOW - timedelta(days=100)
    f = facts(kpis={"last_order_at": clock.iso(last)})
    assert evaluate(cond, f) is False
    assert next_change_at(cond, f) == last + timedelta(days=180)
    f["now"] = last + timedelta(days=180)
    assert evaluate(cond, f) is True
    assert next_change_at(cond, f) is None  # already flipped: nothing left to wait for


def test_since_strict_ops_flip_one_tick_after_the_boundary() -> None:
    last = NOW - timedelta(days=1)
    f = facts(kpis={"last_order_at": clock.iso(last)})
    boundary = last + timedelta(days=30)
    assert next_change_at(parse_condition({"since": "last_order_at", "gt": "30d"}), f) == boundary + timedelta(
        microseconds=1
    )
    assert next_change_at(parse_condition({"since": "last_order_at", "lt": "30d"}), f) == boundary
    f["now"] = boundary
    assert check({"since": "last_order_at", "gt": "30d"}, **f) is False
    assert check({"since": "last_order_at", "lte": "30d"}, **f) is True
    assert check({"since": "last_order_at", "lt": "30d"}, **f) is False


def test_since_looks_up_kpis_then_traits_then_profile() -> None:
    cond = {"since": "created_at", "lt": "7d"}
    assert check(cond, profile={"created_at": clock.iso(NOW - timedelta(days=2))}) is True
    assert (
        check(
            cond,
            traits={"created_at": clock.iso(NOW - timedelta(days=20))},
            profile={"created_at": clock.iso(NOW - timedelta(days=2))},
        )
        is False
    )
    assert check({"since": "signup", "lt": "7d"}, traits={"signup": NOW - timedelta(hours=1)}) is True


def test_since_missing_or_invalid_timestamp_is_false() -> None:
    cond = parse_condition({"since": "last_order_at", "lt": "30d"})
    assert evaluate(cond, facts()) is False
    assert next_change_at(cond, facts()) is None
    assert evaluate(cond, facts(kpis={"last_order_at": "yesterday"})) is False


def test_since_range() -> None:
    cond = {"since": "last_order_at", "gte": "30d", "lt": "60d"}
    at = [NOW - timedelta(days=d) for d in (10, 45, 70)]
    assert [check(cond, kpis={"last_order_at": clock.iso(t)}) for t in at] == [False, True, False]


def test_since_relative_to_the_customers_average_interval() -> None:
    raw = {"since": "last_order_at", "gt": {"kpi": "average_days_between_orders", "times": 1.5, "unit": "d"}}
    cond = parse_condition(raw)
    last = NOW - timedelta(days=20)
    kpis: dict[str, Any] = {"last_order_at": clock.iso(last), "average_days_between_orders": 10}
    assert evaluate(cond, facts(kpis=kpis)) is True  # 20 days > 15
    kpis["average_days_between_orders"] = 20
    f = facts(kpis=kpis)
    assert evaluate(cond, f) is False  # 20 days < 30
    assert next_change_at(cond, f) == last + timedelta(days=30, microseconds=1)
    # no average (fewer than two orders): the condition fails and waits for nothing
    kpis["average_days_between_orders"] = None
    assert evaluate(cond, facts(kpis=kpis)) is False
    assert next_change_at(cond, facts(kpis=kpis)) is None


def test_reference_duration_floor_and_ceiling() -> None:
    raw = {
        "since": "last_order_at",
        "gte": {"kpi": "average_days_between_orders", "times": 2, "unit": "d", "min": "14d", "max": "60d"},
    }
    cond = parse_condition(raw)
    last = NOW - timedelta(days=1)
    for avg, expected_days in ((0, 14), (10, 20), (90, 60)):
        f = facts(kpis={"last_order_at": clock.iso(last), "average_days_between_orders": avg})
        assert next_change_at(cond, f) == last + timedelta(days=expected_days)


def test_next_change_at_is_the_minimum_over_every_since_leaf() -> None:
    cond = parse_condition(
        {
            "any": [
                {"since": "last_order_at", "gte": "180d"},
                {"not": {"since": "first_order_at", "lt": "60d"}},
                {"all": [{"kpi": "orders_count", "gte": 1}, {"since": "last_seen_at", "gte": "30d"}]},
            ]
        }
    )
    kpis = {
        "last_order_at": clock.iso(NOW - timedelta(days=10)),
        "first_order_at": clock.iso(NOW - timedelta(days=50)),
        "last_seen_at": clock.iso(NOW - timedelta(days=40)),  # already past its 30 days
        "orders_count": 1,
    }
    assert next_change_at(cond, facts(kpis=kpis)) == NOW + timedelta(days=10)
    assert next_change_at(parse_condition({"kpi": "orders_count", "gte": 1}), facts(kpis=kpis)) is None


# --- parsing ----------------------------------------------------------------------------------------


def message_of(raw: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_condition(raw)
    return info.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"kpii": "orders_count", "gt": 1}, "condition: kpii: unknown operator 'kpii'"),
        ({"kpi": "orders_count", "gt": "abc"}, "condition: gt: kpi 'orders_count' is a number: got 'abc'"),
        ({"kpi": "orders_count", "eq": True}, "condition: eq: kpi 'orders_count' is a number: got True"),
        ({"all": [{"kpi": "orderz", "gt": 1}]}, "condition: all[0].kpi: unknown kpi 'orderz'"),
        ({"kpi": "orders_count", "gtt": 1}, "condition: gtt: unknown operator 'gtt'"),
        ({"kpi": "orders_count"}, "a kpi comparison needs an operator"),
        ({"kpi": "orders_count", "trait": "x", "eq": 1}, "exactly one of trait, kpi, property"),
        ({"kpi": "orders_count", "contains": 1}, "'contains' does not apply"),
        ({"kpi": "last_order_at", "gt": "soon"}, "is a timestamp: expected an ISO 8601 string"),
        ({"trait": "vip", "gt": True}, "'gt' needs a number or a string"),
        ({"trait": "vip", "in": "gold"}, "condition: in: Input should be a valid list"),
        ({"all": [], "any": []}, "exactly one operator, got 'all' and 'any'"),
        (
            {"all": [{"not": {"since": "last_order_at", "gt": 30}}]},
            "condition: all[0].not.gt: expected a duration",
        ),
        ({"since": "last_order_at", "gt": "3x"}, "condition: gt: invalid duration '3x'"),
        ({"since": "orders_count", "gt": "3d"}, "kpi 'orders_count' is a number, not a timestamp"),
        ({"since": "last_order_at"}, "'since' needs one of gt, gte, lt, lte"),
        ({"since": "last_order_at", "eq": "3d"}, "condition: eq: unknown operator 'eq'"),
        (
            {"since": "last_order_at", "gt": {"kpi": "last_seen_at", "times": 2}},
            "condition: gt.kpi: kpi 'last_seen_at' is not a known numeric kpi",
        ),
        ({"consent": "push"}, "condition: consent: Input should be 'email' or 'sms'"),
        ({"in_segment": "Loyal Customers"}, "condition: in_segment: invalid segment reference"),
        ({"event_in": []}, "condition: event_in: List should have at least 1 item"),
        ({"event": "Order Completed", "extra": 1}, "condition: extra: unknown key 'extra' next to operator"),
        ("loyal", "a condition is a mapping with one operator"),
        ({}, "empty condition"),
    ],
)
def test_invalid_conditions(raw: Any, expected: str) -> None:
    assert expected in message_of(raw)


def test_parse_condition_accepts_a_parsed_condition_and_round_trips() -> None:
    raw = {
        "all": [
            {"kpi": "orders_count", "gte": 2},
            {"not": {"in_segment": "fraud"}},
            {
                "since": "last_order_at",
                "gte": {"kpi": "average_days_between_orders", "times": 1.5, "unit": "d"},
            },
            {"trait": "plan", "in": ["gold", "silver"]},
            {"event_in": ["Order Completed"]},
        ]
    }
    cond = parse_condition(raw)
    assert isinstance(cond, AllCondition)
    assert cond.to_data() == raw
    assert parse_condition(cond) is cond
    assert parse_condition(cond.to_data()).to_data() == raw


def test_condition_as_a_field_type_with_yaml_lines() -> None:
    class Holder(BaseModel):
        when: Condition

    text = "when:\n  all:\n    - {kpi: orders_count, gte: 1}\n    - {since: last_order_at, gte: 6x}\n"
    [(data, linemap)] = load_yaml_documents(text, "x.yaml")
    with pytest.raises(Exception) as info:
        Holder.model_validate(data)
    message = format_validation_error(info.value, linemap, "x.yaml")  # type: ignore[arg-type]
    assert message.startswith("x.yaml:4: when.all[1].gte: invalid duration '6x'")
    assert isinstance(linemap, LineMap)


def test_referenced_segments_and_fields() -> None:
    cond = parse_condition(
        {
            "all": [
                {"in_segment": "loyal"},
                {"not": {"not_in_segment": "nps_group/detractor"}},
                {"consent": "email"},
                {"trait": "vip", "eq": True},
                {"property": "shop.id", "exists": True},
                {"since": "last_order_at", "gt": {"kpi": "average_days_between_orders"}},
                {"event_in": ["A", "B"]},
            ]
        }
    )
    assert referenced_segments(cond) == {"loyal", "nps_group/detractor"}
    assert referenced_fields(cond) == {
        ("segment", "loyal"),
        ("segment", "nps_group/detractor"),
        ("consent", "email"),
        ("trait", "vip"),
        ("property", "shop.id"),
        ("since", "last_order_at"),
        ("kpi", "average_days_between_orders"),
        ("event", "A"),
        ("event", "B"),
    }


def test_evaluation_never_raises_on_odd_fact_types() -> None:
    cond = parse_condition(
        {
            "any": [
                {"trait": "x", "gt": 5},
                {"trait": "x", "contains": "a"},
                {"trait": "x", "in": [1, "a"]},
                {"since": "x", "lt": "1d"},
                {"property": "a.b", "eq": 1},
            ]
        }
    )
    for odd in ({"k": 1}, [1, [2]], 3.5, object(), True):
        assert evaluate(cond, facts(traits={"x": odd}, event={"name": "e", "properties": {"a": odd}})) in (
            True,
            False,
        )


def test_one_duration_grammar_for_rules_and_conditions() -> None:
    """A wait and a `since` condition read the same spellings (combined parts and years alike)."""
    from retention.language.rules import parse_rule
    rule = parse_rule({"id": "r", "trigger": {"event": "Signed Up"},
                       "audience": {"since": "last_seen_at", "gte": "1d12h", "lt": "1y"},
                       "steps": [{"wait": "1y"}, {"wait": "1d12h"}]}, source="r.yaml", linemap=None)
    assert [s.wait.duration for s in rule.steps] == [timedelta(days=365), timedelta(hours=36)]  # type: ignore[union-attr]
    parse_condition({"since": "last_seen_at", "gte": "1d12h", "lt": "1y"})
