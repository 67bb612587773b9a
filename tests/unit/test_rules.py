"""The rule language: parsing, validation with file:line, deterministic assignment, time helpers."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from retention.core.errors import ValidationError
from retention.language import rules
from retention.language.rules import (
    RuleValidationError,
    choose_variant,
    diff_rules,
    format_duration,
    in_holdout,
    load_rules,
    next_birthday_at,
    next_schedule_at,
    next_wait_due,
    parse_duration,
    parse_rule,
    rule_hash,
)

TEMPLATES = {"cart-reminder", "cart-discount-a", "cart-discount-b", "welcome", "nps-survey"}
GROUPS = {
    "lifecycle": ["promo_registered", "newbie", "neutral", "loyal", "unstable", "inactive", "lost",
                  "complaint", "fraud"],
    "nps_group": ["promoter", "passive", "detractor"],
    "potential": ["active", "passive", "cold", "warm", "hot"],
    "flags": ["vip", "has_account", "mobile_app", "prefers_email", "prefers_sms"],
    "markers": ["reactivation_exhausted"],
}

DESIGN_EXAMPLE = """\
id: abandoned-cart
enabled: true
trigger: {event: Checkout Started}
audience: {all: [{consent: email}, {not_in_segment: fraud}]}
exit_when: {event: Order Completed}
re_entry: {cooldown: 7d}
holdout_percent: 10
steps:
  - wait: 4h
  - send: {channel: email, template: cart-reminder}
  - wait: 1d
  - send: {channel: email, variants: [{template: cart-discount-a, weight: 50},
                                      {template: cart-discount-b, weight: 50}]}
"""


def load_one(text: str, **kwargs: Any) -> rules.Rule:
    return load_rules({"rules/r.yaml": textwrap.dedent(text)}, **kwargs)[0]


def problems_of(text: str, **kwargs: Any) -> list[str]:
    kwargs.setdefault("templates", TEMPLATES)
    kwargs.setdefault("segment_groups", GROUPS)
    with pytest.raises(RuleValidationError) as info:
        load_rules({"rules/r.yaml": textwrap.dedent(text)}, **kwargs)
    assert isinstance(info.value, ValidationError)
    return info.value.problems


def base(steps: str, head: str = "") -> str:
    """A valid rule with the given steps (YAML, 2-space indented list items)."""
    return (
        "id: r\n"
        "trigger: {event: Checkout Started}\n"
        "audience: {all: [{consent: email}]}\n"
        + head
        + "steps:\n"
        + textwrap.indent(textwrap.dedent(steps).lstrip("\n"), "  ")
    )


# ---- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(days=14)),
        ("6mo", timedelta(days=180)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(hours=36)),
        (" 4H ", timedelta(hours=4)),
        # the one grammar of rules and conditions (retention.language.durations)
        ("1y", timedelta(days=365)),
        ("1.5h", timedelta(minutes=90)),
        ("1y6mo", timedelta(days=545)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0h", "0m", "-1d", "-30m", "0d0h"])
def test_parse_duration_rejects_zero_and_negative(text: str) -> None:
    with pytest.raises(ValueError, match="must be longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["abc", "4 hours", "1.5", "h", "", "4x"])
def test_parse_duration_rejects_garbage(value: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_parse_duration_rejects_a_number_without_unit() -> None:
    with pytest.raises(ValueError, match="has no unit"):
        parse_duration(3600)
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(0)
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(True)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=14), "2w"), (timedelta(hours=36), "36h"), (timedelta(days=180), "180d"),
    (timedelta(minutes=90), "90m"), (timedelta(seconds=61), "61s"),
])
def test_format_duration_round_trips(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


# ---- parsing -------------------------------------------------------------------------------------


def test_design_example_parses() -> None:
    rule = load_one(DESIGN_EXAMPLE, templates=TEMPLATES, segment_groups=GROUPS)
    assert rule.id == "abandoned-cart"
    assert rule.holdout_percent == 10
    assert rule.re_entry.cooldown == timedelta(days=7)
    assert rule.re_entry.cooldown_delta == timedelta(days=7)
    assert rule.attribution_window == timedelta(days=5)
    assert rule.goal_event == "Order Completed"
    assert [rules.step_kind(s) for s in rule.steps] == ["wait", "send", "wait", "send"]
    assert rule.steps[0].wait.duration == timedelta(hours=4)
    discount = rule.steps[3].send
    assert [(v.template, v.name, v.weight) for v in discount.variants] == [
        ("cart-discount-a", "A", 50.0), ("cart-discount-b", "B", 50.0)]
    assert rule.templates() == {"cart-reminder", "cart-discount-a", "cart-discount-b"}
    assert rule.trigger_events == ["Checkout Started"]
    assert not rule.is_transactional


def test_every_trigger_kind_parses() -> None:
    triggers = {
        "{event: [Checkout Started, Product Added], where: {property: value, gt: 0}}": rules.EventTrigger,
        "{events: [Order Shipped]}": rules.EventTrigger,
        "{segment_entered: loyal}": rules.SegmentEnteredTrigger,
        "{segment_exited: [loyal, nps_group/passive]}": rules.SegmentExitedTrigger,
        "{date_attribute: birthday, offset_days: -3, at: '10:00'}": rules.DateAttributeTrigger,
        "{schedule: 'cron(0 10 ? * MON *)', timezone: Europe/Moscow, rate_per_minute: 500}": rules.ScheduleTrigger,
        "{product_event: Product Back in Stock, interest: [viewed, carted], window: 30d}": rules.ProductEventTrigger,
    }
    for text, kind in triggers.items():
        rule = load_one(f"id: r\ntrigger: {text}\nsteps: [{{send: {{template: welcome}}}}]\n",
                        segment_groups=GROUPS)
        assert isinstance(rule.trigger, kind), text
    product = load_one("id: r\ntrigger: {product_event: Product Low Stock}\nsteps: [{send: {template: welcome}}]\n")
    assert product.trigger.interest == ["viewed", "carted", "subscribed"]
    assert product.trigger.window == timedelta(days=30)


def test_wait_forms() -> None:
    rule = load_one(base("""
        - wait: 4h
        - wait: {duration: 1d}
        - wait: {until: {weekday: fri, hour: 10}}
        - wait: {duration: 1d, until: {weekday: [Monday, tue], hour: 9, minute: 30}}
        - send: {template: welcome}
    """))
    waits = [s.wait for s in rule.steps[:4]]
    assert waits[0].duration == timedelta(hours=4) and waits[0].until is None
    assert waits[1].duration == timedelta(days=1)
    assert waits[2].until.weekday == ["fri"] and waits[2].until.hour == 10
    assert waits[3].until.weekday == ["mon", "tue"] and waits[3].until.minute == 30


def test_to_dict_round_trips_and_hash_ignores_spelling() -> None:
    rule = load_one(DESIGN_EXAMPLE)
    again = parse_rule(rule.to_dict())
    assert again.to_dict() == rule.to_dict()
    assert rule_hash(again) == rule_hash(rule)
    respelled = DESIGN_EXAMPLE.replace("wait: 4h", "wait: {duration: 240m}").replace(
        "{event: Order Completed}", "{events: [Order Completed]}")
    assert rule_hash(load_one(respelled)) == rule_hash(rule)
    changed = DESIGN_EXAMPLE.replace("wait: 4h", "wait: 5h")
    assert rule_hash(load_one(changed)) != rule_hash(rule)
    assert len(rule_hash(rule)) == 64


def test_json_documents_parse_without_line_map() -> None:
    doc = yaml.safe_load(DESIGN_EXAMPLE)
    doc["holdout_percent"] = 120
    with pytest.raises(RuleValidationError) as info:
        parse_rule(doc, source="rule abandoned-cart")
    assert info.value.problems == [
        "rule abandoned-cart: holdout_percent: holdout_percent must be a number from 0 to 100, got 120"]


# ---- validation: every problem with file:line ------------------------------------------------------


def test_invalid_yaml_names_the_line() -> None:
    assert problems_of("id: r\ntrigger: {event: X}\nsteps: [\n  - wait: 1h\n") == [
        "rules/r.yaml:4: invalid YAML: expected the node content, but found '-'"]


def test_unknown_fields_name_their_line() -> None:
    text = base("""
        - wait: 4h
        - send: {channel: email, tempalte: cart-reminder}
    """, head="colour: blue\n")
    assert problems_of(text) == [
        "rules/r.yaml:4: colour: unknown field 'colour'",
        "rules/r.yaml:7: steps[1].send.tempalte: unknown field 'tempalte'",
    ]


def test_missing_required_fields() -> None:
    assert problems_of("id: r\ntrigger: {event: X}\n") == ["rules/r.yaml:1: missing required field 'steps'"]
    assert problems_of("trigger: {event: X}\nsteps: [{send: {template: welcome}}]\n") == [
        "rules/r.yaml:1: missing required field 'id'"]


def test_unknown_template_id() -> None:
    text = base("""
        - send: {template: cart-reminder}
        - send:
            variants:
              - {template: cart-discount-a}
              - {template: cart-discount-c}
    """)
    assert problems_of(text) == ["rules/r.yaml:9: steps[1].send.variants[1].template: unknown template 'cart-discount-c'"]


def test_template_that_cannot_render_is_reported_at_the_send() -> None:
    template = {"id": "welcome", "category": "transactional",
                "locales": {"ru": {"subject": "Привет, {{ customer.nickname }}", "text": "Текст"}}}
    problems = problems_of(base("- send: {template: welcome}\n"), templates={"welcome": template})
    assert len(problems) == 1
    assert problems[0].startswith("rules/r.yaml:5: steps[0].send.template: template 'welcome': locales.ru.subject")
    assert "nickname" in problems[0]


def test_template_without_content_for_the_channel() -> None:
    template = {"id": "welcome", "category": "transactional",
                "locales": {"ru": {"subject": "Привет", "text": "Текст"}}}
    assert problems_of(base("- send: {channel: sms, template: welcome}\n"), templates={"welcome": template}) == [
        "rules/r.yaml:5: steps[0].send.template: channel sms, but template 'welcome' has no sms content"]


def test_cycle_in_gotos_and_branches() -> None:
    goto_loop = base("""
        - id: again
          send: {template: welcome}
        - wait: 1d
        - goto: again
    """)
    assert problems_of(goto_loop) == [
        "rules/r.yaml:8: steps[2].goto: steps form a loop (0 → 1 → 2 → 0): a journey must not repeat steps"]
    branch_loop = base("""
        - send: {template: welcome}
        - wait: 1d
        - branch: {if: {opened_previous: false}, then: 0}
    """)
    assert problems_of(branch_loop) == [
        "rules/r.yaml:7: steps[2].branch: steps form a loop (0 → 1 → 2 → 0): a journey must not repeat steps"]


def test_forward_jumps_are_fine_and_bad_targets_are_not() -> None:
    ok = load_one(base("""
        - branch: {if: {kpi: orders_count, gt: 0}, then: buyer, else: 2}
        - goto: end
        - send: {template: welcome}
        - goto: end
        - id: buyer
          send: {template: cart-reminder}
    """))
    assert ok.labels() == {"buyer": 4}
    assert problems_of(base("""
        - branch: {if: {clicked_previous: true}, then: nowhere, else: 7}
        - id: dup
          send: {template: welcome}
        - id: dup
          send: {template: welcome}
    """)) == [
        "rules/r.yaml:5: steps[0].branch.then: unknown step label 'nowhere' (labels: dup; or end)",
        "rules/r.yaml:5: steps[0].branch.else: step index 7 is out of range 0-2",
        "rules/r.yaml:5: steps[0].branch.if: clicked_previous needs a send step before it",
        "rules/r.yaml:8: steps[2].id: duplicate step label 'dup' (also steps[1])",
    ]


def test_zero_or_negative_waits() -> None:
    text = base("""
        - wait: 0h
        - wait: {duration: -2d}
        - set_segment: {group: lifecycle, segment: lost, until: 0d}
        - send: {template: welcome}
    """)
    assert problems_of(text) == [
        "rules/r.yaml:5: steps[0].wait: duration '0h' must be longer than zero",
        "rules/r.yaml:6: steps[1].wait.duration: duration '-2d' must be longer than zero",
        "rules/r.yaml:7: steps[2].set_segment.until: duration '0d' must be longer than zero",
    ]


def test_send_on_a_channel_the_audience_excludes() -> None:
    text = """\
        id: r
        trigger: {event: X}
        audience:
          all:
            - {consent: email}
            - not: {consent: sms}
        steps:
          - send: {channel: sms, template: welcome}
          - send: {channel: email, template: welcome}
          - send: {channel: preferred, template: welcome}
    """
    assert problems_of(text) == [
        "rules/r.yaml:8: steps[0].send.channel: channel sms can never be delivered: "
        "the audience requires no sms consent"]
    both = text.replace("- {consent: email}", "- not: {consent: email}")
    assert len(problems_of(both)) == 3
    # Transactional messages go without marketing consent: no contradiction there.
    transactional = text.replace("id: r", "id: r\n        category: transactional")
    assert load_one(transactional, templates=TEMPLATES).is_transactional


def test_unknown_segments_in_triggers_set_segment_and_conditions() -> None:
    text = """\
        id: r
        trigger: {segment_entered: [loyal, vip_gold]}
        audience:
          all:
            - {not_in_segment: fraud}
            - {in_segment: passive}
            - {in_segment: lifecycle/champion}
        steps:
          - set_segment: {group: lifecycle, segment: vip}
          - clear_segment: {group: tiers}
          - send: {template: welcome}
    """
    assert problems_of(text) == [
        "rules/r.yaml:2: trigger.segment_entered: unknown segment 'vip_gold'",
        "rules/r.yaml:6: audience.all[1].in_segment: ambiguous segment 'passive' (in nps_group, potential): "
        "write 'nps_group/passive' or 'potential/passive'",
        "rules/r.yaml:7: audience.all[2].in_segment: unknown segment 'lifecycle/champion': "
        "group 'lifecycle' has no segment 'champion'",
        "rules/r.yaml:9: steps[0].set_segment.segment: unknown segment 'vip' in group 'lifecycle'",
        "rules/r.yaml:10: steps[1].clear_segment.group: unknown segment group 'tiers' "
        "(known: flags, lifecycle, markers, nps_group, potential)",
    ]
    # With a plain set of ids only the ids are checked.
    assert problems_of(text, segment_groups=None, segments={"loyal", "fraud", "passive"}) == [
        "rules/r.yaml:2: trigger.segment_entered: unknown segment 'vip_gold'",
        "rules/r.yaml:7: audience.all[2].in_segment: unknown segment 'lifecycle/champion'",
        "rules/r.yaml:9: steps[0].set_segment.segment: unknown segment 'vip'",
    ]


def test_variant_weights_and_holdout_range() -> None:
    assert problems_of(base("""
        - send: {variants: [{template: cart-discount-a, weight: 0}, {template: cart-discount-b, weight: 0}]}
        - send: {variants: [{template: cart-discount-a, weight: -5}]}
    """, head="holdout_percent: 101\n")) == [
        "rules/r.yaml:4: holdout_percent: holdout_percent must be a number from 0 to 100, got 101",
        "rules/r.yaml:6: steps[0].send.variants: variant weights must sum to more than zero",
        "rules/r.yaml:7: steps[1].send.variants[0].weight: Input should be greater than or equal to 0",
    ]
    assert problems_of(base("- send: {template: welcome}\n", head="holdout_percent: -1\n")) == [
        "rules/r.yaml:4: holdout_percent: holdout_percent must be a number from 0 to 100, got -1"]
    assert problems_of(base("- send: {template: welcome}\n", head="category: transactional\nholdout_percent: 5\n")) == [
        "rules/r.yaml:5: holdout_percent: a transactional rule cannot hold customers out of service messages"]


def test_a_transactional_rule_carries_no_coupon_or_product_block() -> None:
    """Issue 14 item 3: a service message goes without consent, caps or holdout, so it must not carry an
    offer: the step-level coupon pools and recommendation blocks (issue 18) are promotion too."""
    found = problems_of(base("- send: {template: welcome, coupon: {pool: welcome, fallback: hmac}}\n"
                             "- send: {template: welcome, min_recommendations: 1}\n",
                             head="category: transactional\n"))
    assert [p.split(": ", 2)[1] for p in found] == ["steps[0].send.coupon", "steps[1].send.min_recommendations"]
    assert all("a transactional rule carries no promotion" in p for p in found)
    marketing = load_one(base("- send: {template: welcome, coupon: {pool: welcome, fallback: hmac}}\n"),
                         templates=TEMPLATES, segment_groups=GROUPS)
    assert marketing.steps[0].send.coupon is not None  # the same step in a marketing rule is fine


def test_shape_errors_have_clear_messages() -> None:
    assert problems_of("""\
        id: r
        trigger: {event: X, segment_entered: loyal}
        steps:
          - sned: {template: welcome}
          - {wait: 1h, send: {template: welcome}}
          - wait: {until: {weekday: funday, hour: 25}}
          - send: {channel: fax, template: welcome}
    """) == [
        "rules/r.yaml:2: trigger: a trigger has exactly one of event, segment_entered, segment_exited, "
        "date_attribute, schedule, product_event; got event, segment_entered",
        "rules/r.yaml:4: steps[0]: unknown step action 'sned': use one of wait, send, branch, goto, "
        "set_segment, clear_segment",
        "rules/r.yaml:5: steps[1]: a step has exactly one action, got wait, send",
        "rules/r.yaml:6: steps[2].wait.until.weekday: unknown weekday 'funday': use mon, tue, wed, thu, fri, sat, sun",
        "rules/r.yaml:6: steps[2].wait.until.hour: Input should be less than or equal to 23",
        "rules/r.yaml:7: steps[3].send.channel: Input should be 'email', 'sms' or 'preferred', got 'fax'",
    ]


def test_condition_errors_point_inside_the_condition() -> None:
    text = """\
        id: r
        trigger: {event: X, where: {property: total, between: 5}}
        audience:
          all:
            - {consent: email}
            - {kpi: orders_cnt, gt: 1}
        steps: [{send: {template: welcome}}]
    """
    problems = problems_of(text)
    assert problems[0] == ("rules/r.yaml:2: trigger.where.between: unknown operator 'between' "
                           "(expected one of: eq, ne, gt, gte, lt, lte, in, not_in, exists, contains)")
    assert problems[1].startswith("rules/r.yaml:6: audience.all[1].kpi: unknown kpi 'orders_cnt'")


def test_schedule_and_date_attribute_validation() -> None:
    assert problems_of("""\
        id: r
        trigger: {schedule: "cron(0 10 * * MON *)", timezone: Mars/Olympus}
        steps: [{send: {template: welcome}}]
    """) == [
        "rules/r.yaml:2: trigger.schedule: schedule 'cron(0 10 * * MON *)': exactly one of day-of-month "
        "and day-of-week must be '?'",
        "rules/r.yaml:2: trigger.timezone: unknown timezone 'Mars/Olympus': use an IANA name such as Europe/Moscow",
    ]
    assert problems_of("""\
        id: r
        trigger: {date_attribute: birthday, offset_days: -3, at: "25:00"}
        steps: [{send: {template: welcome}}]
    """) == ["rules/r.yaml:2: trigger.at: invalid time of day '25:00': use HH:MM, e.g. 10:00"]


def test_all_problems_of_all_files_at_once_and_duplicate_ids() -> None:
    texts = {
        "rules/a.yaml": base("- send: {template: welcome}\n"),
        "rules/b.yaml": base("- wait: 0m\n- send: {template: nope}\n"),
        "rules/c.yaml": base("- send: {template: welcome}\n") + "---\n" + base("- send: {template: nope}\n"),
    }
    with pytest.raises(RuleValidationError) as info:
        load_rules(texts, templates=TEMPLATES)
    assert info.value.problems == [
        "rules/b.yaml:5: steps[0].wait: duration '0m' must be longer than zero",
        # in the same round as the schema error (it used to show only once the wait was fixed)
        "rules/b.yaml:6: steps[1].send.template: unknown template 'nope'",
        "rules/c.yaml:1: id: duplicate rule id 'r' (also in rules/a.yaml)",
        "rules/c.yaml:11: steps[0].send.template: unknown template 'nope'",
    ]
    assert str(info.value).splitlines() == info.value.problems


# ---- matching and the step helpers the engine uses ------------------------------------------------


def test_trigger_and_exit_matching() -> None:
    rule = load_one("""\
        id: r
        trigger: {event: [Checkout Started, Product Added], where: {property: value, gte: 100}}
        exit_when: {events: [Order Completed], where: {property: revenue, gt: 0}}
        steps: [{send: {template: welcome}}]
    """)
    assert rule.trigger_matches_event("Checkout Started", {"value": 150})
    assert rule.trigger_matches_event("Product Added", {"value": "100"})
    assert not rule.trigger_matches_event("Checkout Started", {"value": 50})
    assert not rule.trigger_matches_event("Checkout Started", {})
    assert not rule.trigger_matches_event("Order Completed", {"value": 150})
    assert rule.exit_matches("Order Completed", {"revenue": 10})
    assert not rule.exit_matches("Order Completed", {"revenue": 0})
    assert not rule.exit_matches("Checkout Started", {"revenue": 10})


def test_segment_trigger_matching_with_group_references() -> None:
    rule = load_one("""\
        id: r
        trigger: {segment_entered: [nps_group/passive, detractor]}
        steps: [{send: {template: welcome}}]
    """)
    entered = "Segment Entered"
    assert rule.trigger_events == [entered]
    assert rule.trigger_matches_event(entered, {"group": "nps_group", "segment": "passive"})
    assert not rule.trigger_matches_event(entered, {"group": "potential", "segment": "passive"})
    assert rule.trigger_matches_event(entered, {"group": "nps_group", "segment": "detractor"})
    assert not rule.trigger_matches_event("Segment Exited", {"group": "nps_group", "segment": "detractor"})
    exited = load_one("id: r\ntrigger: {segment_exited: loyal}\nsteps: [{send: {template: welcome}}]\n")
    assert exited.trigger_matches_event("Segment Exited", {"group": "lifecycle", "segment": "loyal"})
    assert not exited.trigger_matches_event("Segment Entered", {"group": "lifecycle", "segment": "loyal"})


def test_step_helpers() -> None:
    rule = load_one(base("""
        - send: {channel: preferred, template: welcome}
        - branch: {if: {opened_previous: false}, then: nudge}
        - goto: end
        - id: nudge
          send: {channel: email, template: cart-reminder}
        - set_segment: {group: lifecycle, segment: lost, reason: done, until: 30d}
        - clear_segment: {group: markers, reason: reset}
        - branch: {if: {kpi: orders_count, gt: 0}, then: end}
    """))
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert rule.step_at(0) is rule.steps[0]
    assert rule.step_at(7) is None
    assert rules.send_target(rule.steps[0], "c1", "r") == ("welcome", "default", "preferred")
    # opened_previous: false → `then` when the message was NOT opened.
    assert rules.branch_condition(rule.steps[1]) == "opened_previous"
    want, expected = rule.steps[1].branch.engagement  # the engine unpacks it
    assert (want, expected) == ("opened", False) == (rule.steps[1].branch.engagement.what, False)
    assert rules.branch_next(rule, rule.steps[1], 1, False) == 3
    assert rules.branch_next(rule, rule.steps[1], 1, True) == 2
    # goto: an unconditional branch; `end` is len(steps).
    assert rules.step_kind(rule.steps[2]) == "branch"
    assert rules.branch_condition(rule.steps[2]).evaluate({}) is True
    assert rules.branch_next(rule, rule.steps[2], 2, True) == len(rule.steps)
    assert rules.segment_assignment(rule.steps[4], now) == ("lifecycle", "lost", "done", now + timedelta(days=30))
    assert rules.segment_assignment(rule.steps[5], now) == ("markers", None, "reset", None)
    condition = rules.branch_condition(rule.steps[6])
    assert condition.evaluate({"kpis": {"orders_count": 2}}) is True
    assert rules.branch_next(rule, rule.steps[6], 6, True) == 7
    assert rules.branch_next(rule, rule.steps[6], 6, False) == 7
    assert rule.next_index(3) == 4


# ---- deterministic assignment ---------------------------------------------------------------------


def _send(variants: str) -> rules.SendSpec:
    return rules.SendSpec.model_validate(yaml.safe_load(variants))


def test_variant_assignment_is_sticky() -> None:
    spec = _send("{variants: [{template: a, weight: 50}, {template: b, weight: 50}]}")
    first = [choose_variant(spec, f"cust-{i}", "abandoned-cart") for i in range(200)]
    again = [choose_variant(spec, f"cust-{i}", "abandoned-cart") for i in range(200)]
    assert first == again
    assert {v for _, v in first} == {"A", "B"}
    assert all((t, v) in {("a", "A"), ("b", "B")} for t, v in first)
    # A different rule re-shuffles customers.
    other = [choose_variant(spec, f"cust-{i}", "browse-abandonment") for i in range(200)]
    assert other != first


@pytest.mark.parametrize("weights", [(50, 50), (80, 20), (1, 1, 2), (10, 0, 90)])
def test_variant_distribution_follows_weights(weights: tuple[int, ...]) -> None:
    items = ", ".join(f"{{template: t{i}, weight: {w}}}" for i, w in enumerate(weights))
    spec = _send(f"{{variants: [{items}]}}")
    counts = Counter(choose_variant(spec, f"customer-{i}", "rule-x")[0] for i in range(10_000))
    total = sum(weights)
    for i, weight in enumerate(weights):
        share = counts.get(f"t{i}", 0) / 10_000
        assert abs(share - weight / total) < 0.02, (weights, counts)
    if 0 in weights:
        assert counts.get(f"t{weights.index(0)}", 0) == 0


def test_holdout_is_deterministic_near_its_percent_and_independent_of_variants() -> None:
    ids = [f"customer-{i}" for i in range(10_000)]
    held = [in_holdout(c, "abandoned-cart", 10) for c in ids]
    assert held == [in_holdout(c, "abandoned-cart", 10) for c in ids]
    assert 0.085 < sum(held) / len(ids) < 0.115
    assert not any(in_holdout(c, "r", 0) for c in ids[:100])
    assert all(in_holdout(c, "r", 100) for c in ids[:100])
    spec = _send("{variants: [{template: a, weight: 50}, {template: b, weight: 50}]}")
    in_a = [choose_variant(spec, c, "abandoned-cart")[1] == "A" for c in ids]
    held_a = sum(1 for h, a in zip(held, in_a, strict=True) if h and a)
    # A different salt: about half of the holdout would have got variant A.
    assert 0.4 < held_a / sum(held) < 0.6


# ---- time ----------------------------------------------------------------------------------------


def _wait(text: str) -> rules.WaitSpec:
    return rules.WaitSpec.model_validate(yaml.safe_load(text))


def test_wait_duration() -> None:
    now = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
    assert next_wait_due(_wait("4h"), now, "Asia/Vladivostok") == now + timedelta(hours=4)


def test_wait_until_weekday_hour_in_vladivostok() -> None:
    # Wed 2024-05-15 12:00 UTC = Wed 22:00 in Vladivostok (UTC+10); Friday 10:00 there = Fri 00:00 UTC.
    now = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
    due = next_wait_due(_wait("{until: {weekday: fri, hour: 10}}"), now, "Asia/Vladivostok")
    assert due == datetime(2024, 5, 17, 0, 0, tzinfo=UTC)
    # Only an hour: local 22:00 → tomorrow 10:00 local = 00:00 UTC on the 16th.
    assert next_wait_due(_wait("{until: {hour: 10}}"), now, "Asia/Vladivostok") == datetime(2024, 5, 16, 0, tzinfo=UTC)
    # Before 10:00 local: the same local day.
    early = datetime(2024, 5, 15, 20, 0, tzinfo=UTC)  # 06:00 on the 16th in Vladivostok
    assert next_wait_due(_wait("{until: {hour: 10}}"), early, "Asia/Vladivostok") == datetime(2024, 5, 16, 0, tzinfo=UTC)
    # At exactly the moment: no wait.
    exact = datetime(2024, 5, 17, 0, 0, tzinfo=UTC)
    assert next_wait_due(_wait("{until: {weekday: fri, hour: 10}}"), exact, "Asia/Vladivostok") == exact


def test_wait_until_across_a_dst_change_and_with_a_duration() -> None:
    # Sat 2024-03-09 12:00 EST; clocks go forward on Sunday: 10:00 EDT = 14:00 UTC.
    now = datetime(2024, 3, 9, 17, 0, tzinfo=UTC)
    assert next_wait_due(_wait("{until: {weekday: sun, hour: 10}}"), now, "America/New_York") == datetime(
        2024, 3, 10, 14, 0, tzinfo=UTC)
    # 1 day, then the next weekday morning: Fri 20:00 UTC + 1d = Sat → Monday 09:30 Moscow = 06:30 UTC.
    friday = datetime(2024, 5, 17, 20, 0, tzinfo=UTC)
    spec = _wait("{duration: 1d, until: {weekday: [mon, tue, wed, thu, fri], hour: 9, minute: 30}}")
    assert next_wait_due(spec, friday, "Europe/Moscow") == datetime(2024, 5, 20, 6, 30, tzinfo=UTC)
    # An unknown timezone falls back to UTC instead of failing the journey.
    assert next_wait_due(_wait("{until: {hour: 10}}"), friday, "Nowhere/City") == datetime(2024, 5, 18, 10, tzinfo=UTC)


def test_next_birthday() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert next_birthday_at("1990-05-20", -3, "10:00", "Europe/Moscow", now) == datetime(2024, 5, 17, 7, tzinfo=UTC)
    assert next_birthday_at("05-20", 0, "10:00", "Europe/Moscow", now) == datetime(2024, 5, 20, 7, tzinfo=UTC)
    # Passed this year → next year.
    assert next_birthday_at("1990-04-20", 0, "10:00", "UTC", now) == datetime(2025, 4, 20, 10, tzinfo=UTC)


def test_next_birthday_offsets_across_the_year_end() -> None:
    # Jan 2 − 3 days = Dec 30 of the year before.
    assert next_birthday_at("1985-01-02", -3, "10:00", "UTC", datetime(2024, 12, 1, tzinfo=UTC)) == datetime(
        2024, 12, 30, 10, tzinfo=UTC)
    assert next_birthday_at("1985-01-02", -3, "10:00", "UTC", datetime(2024, 12, 31, tzinfo=UTC)) == datetime(
        2025, 12, 30, 10, tzinfo=UTC)
    # Dec 30 + 5 days = Jan 4 of the next year.
    assert next_birthday_at("12-30", 5, "09:00", "UTC", datetime(2024, 12, 31, tzinfo=UTC)) == datetime(
        2025, 1, 4, 9, tzinfo=UTC)
    # Vladivostok is already in the next year while UTC is not.
    assert next_birthday_at("01-01", 0, "10:00", "Asia/Vladivostok", datetime(2024, 12, 31, 20, tzinfo=UTC)) == datetime(
        2025, 1, 1, 0, tzinfo=UTC)


def test_next_birthday_feb_29() -> None:
    # Common years: Feb 28; leap years: Feb 29.
    assert next_birthday_at("2000-02-29", 0, "10:00", "UTC", datetime(2025, 1, 1, tzinfo=UTC)) == datetime(
        2025, 2, 28, 10, tzinfo=UTC)
    assert next_birthday_at("--02-29", 0, "10:00", "UTC", datetime(2027, 3, 1, tzinfo=UTC)) == datetime(
        2028, 2, 29, 10, tzinfo=UTC)
    assert next_birthday_at("2000-02-29", -3, "10:00", "UTC", datetime(2028, 1, 1, tzinfo=UTC)) == datetime(
        2028, 2, 26, 10, tzinfo=UTC)
    assert next_birthday_at("2000-02-29", 1, "10:00", "UTC", datetime(2025, 1, 1, tzinfo=UTC)) == datetime(
        2025, 3, 1, 10, tzinfo=UTC)


def test_next_birthday_is_strictly_after_now_and_tolerates_bad_values() -> None:
    moment = datetime(2024, 5, 20, 10, tzinfo=UTC)
    assert next_birthday_at("05-20", 0, "10:00", "UTC", moment) == datetime(2025, 5, 20, 10, tzinfo=UTC)
    for bad in ("", "tomorrow", "1990-02-30", "13-01", None, 19900520):
        assert next_birthday_at(bad, 0, "10:00", "UTC", moment) is None


def test_cron_schedules() -> None:
    after = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)  # a Wednesday
    # Thursday 10:00 in Moscow (UTC+3).
    assert next_schedule_at("cron(0 10 ? * THU *)", after, "Europe/Moscow") == datetime(2024, 5, 16, 7, tzinfo=UTC)
    assert next_schedule_at("cron(0 10 ? * 5 *)", after, "Europe/Moscow") == datetime(2024, 5, 16, 7, tzinfo=UTC)
    assert next_schedule_at("cron(0/15 * * * ? *)", after) == datetime(2024, 5, 15, 12, 15, tzinfo=UTC)
    assert next_schedule_at("cron(0 9 1 * ? *)", after) == datetime(2024, 6, 1, 9, tzinfo=UTC)
    assert next_schedule_at("cron(0 9 L * ? *)", after) == datetime(2024, 5, 31, 9, tzinfo=UTC)
    assert next_schedule_at("cron(0 9 ? * MON#1 *)", after) == datetime(2024, 6, 3, 9, tzinfo=UTC)
    assert next_schedule_at("cron(30 8 ? * MON-FRI *)", datetime(2024, 5, 17, 9, tzinfo=UTC)) == datetime(
        2024, 5, 20, 8, 30, tzinfo=UTC)
    assert next_schedule_at("cron(0 9 1 1 ? 2020)", after) is None
    for bad in ("rate(1 day)", "cron(0 10 * * *)", "cron(61 10 ? * MON *)", "cron(0 10 ? * FUNDAY *)"):
        with pytest.raises(ValueError):
            rules.parse_cron(bad)


# ---- diffs ---------------------------------------------------------------------------------------


def test_diff_rules_reads_like_a_change_list() -> None:
    old = yaml.safe_load(DESIGN_EXAMPLE)
    new = yaml.safe_load(DESIGN_EXAMPLE)
    new["holdout_percent"] = 20
    new["steps"].insert(2, {"branch": {"if": {"clicked_previous": True}, "then": "end"}})
    new["steps"][0]["wait"] = "6h"
    del new["re_entry"]
    new["title"] = "Abandoned cart"
    assert diff_rules(old, new) == [
        "- re_entry: {\"cooldown\": \"7d\"}",
        "~ holdout_percent: 10 → 20",
        "~ steps[0].wait: 4h → 6h",
        "+ steps[2]: {\"branch\": {\"if\": {\"clicked_previous\": true}, \"then\": \"end\"}}",
        "+ title: Abandoned cart",
    ]
    assert diff_rules(old, old) == []
    assert diff_rules(None, old) == ["+ new rule abandoned-cart"]
    assert diff_rules(old, None) == ["- rule abandoned-cart removed"]


def test_schema_errors_and_unknown_references_are_reported_in_one_round() -> None:
    """A schema error used to hide the unknown template, segment and jump label: fixing it revealed them."""
    text = """\
        id: r
        trigger: {event: Checkout Started}
        audience: {all: [{consent: email}, {not_in_segment: frod}]}
        holdout_percent: 200
        steps:
          - send: {channel: pigeon, template: cart-reminder}
          - send: {channel: email, template: cart-remindr}
          - goto: nowhere
    """
    problems = problems_of(text)
    assert problems[0].startswith("rules/r.yaml:3: audience") and "frod" in problems[0]
    assert problems[1].startswith("rules/r.yaml:4: holdout_percent: ")
    assert problems[2].startswith("rules/r.yaml:6: steps[0].send.channel: ")
    assert problems[3] == "rules/r.yaml:7: steps[1].send.template: unknown template 'cart-remindr'"
    assert problems[4].startswith("rules/r.yaml:8: steps[2].goto: ") and "nowhere" in problems[4]
    assert len(problems) == 5, problems
