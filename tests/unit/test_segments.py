from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from retention.core import clock
from retention.core.errors import ValidationError
from retention.core.yamlio import load_yaml_documents
from retention.language import segments
from retention.language.segments import (
    Evaluation,
    SegmentGroup,
    Transition,
    apply_evaluation,
    default_groups,
    evaluate,
    load_groups,
    membership_set,
    summarize,
)

T0 = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]


def iso(dt: datetime) -> str:
    return clock.iso(dt)


def order_kpis(order_times: list[datetime]) -> dict[str, Any]:
    """The KPI shape the profiles module computes, for a list of order times."""
    if not order_times:
        return {"orders_count": 0}
    first, last = min(order_times), max(order_times)
    n = len(order_times)
    return {
        "orders_count": n,
        "first_order_at": iso(first),
        "last_order_at": iso(last),
        "average_days_between_orders": (last - first).total_seconds() / 86400 / (n - 1) if n > 1 else None,
        "repeat_orders_count": n - 1,
    }


def make_facts(
    *,
    kpis: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    consent: dict[str, bool] | None = None,
    profile: dict[str, Any] | None = None,
    now: datetime = T0,
) -> dict[str, Any]:
    return {
        "traits": traits or {},
        "kpis": kpis or {},
        "consent": consent or {"email": False, "sms": False},
        "segments": set(),
        "now": now,
        "profile": profile or {},
    }


@pytest.fixture(scope="module")
def library() -> list[SegmentGroup]:
    return default_groups()


def lifecycle(groups: list[SegmentGroup], facts: dict[str, Any], manual: Any = None) -> Evaluation:
    return evaluate(groups, facts, manual, facts["now"])


# --- the default library ---------------------------------------------------------------------------------


def test_default_library_loads_in_dependency_order(library: list[SegmentGroup]) -> None:
    names = [g.group for g in library]
    assert set(names) == {"lifecycle", "flags", "nps_group", "potential", "markers", "welcome_chain"}
    # lifecycle refers to nps_group (complaint ← detractor) and markers (lost)
    assert names.index("nps_group") < names.index("lifecycle")
    assert names.index("markers") < names.index("lifecycle")
    by = {g.group: g for g in library}
    assert by["lifecycle"].segment_ids() == [
        "fraud",
        "complaint",
        "lost",
        "inactive",
        "unstable",
        "loyal",
        "newbie",
        "promo_registered",
        "neutral",
    ]
    assert by["lifecycle"].exclusive and by["lifecycle"].default == "neutral"
    assert by["nps_group"].segment_ids() == ["promoter", "passive", "detractor"]
    assert by["nps_group"].default is None
    assert set(by["potential"].segment_ids()) == {"cold", "warm", "hot", "active", "passive"}
    assert {"vip", "has_account", "mobile_app", "prefers_email", "prefers_sms"} <= set(by["flags"].segment_ids())


def test_default_library_round_trips_through_dicts(library: list[SegmentGroup]) -> None:
    # what the CLI stores in DynamoDB and the Lambdas read back
    stored = {f"SEGDEF#{g.group}": g.to_data() for g in library}
    again = load_groups(stored)
    assert [g.to_data() for g in again] == [g.to_data() for g in library]


def test_scenarios_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "only.yaml").write_text(
        "group: only\nmode: multi\nsegments:\n  - {id: vip, when: {trait: vip, eq: true}}\n", encoding="utf-8"
    )
    monkeypatch.setenv(segments.SCENARIOS_ENV, str(tmp_path))
    assert [g.group for g in default_groups()] == ["only"]
    monkeypatch.delenv(segments.SCENARIOS_ENV)
    assert segments.scenarios_dir() == REPO / "scenarios"


# --- lifecycle over six months ----------------------------------------------------------------------------


def test_lifecycle_newbie_loyal_unstable_inactive_lost(library: list[SegmentGroup]) -> None:
    orders: list[datetime] = []
    current: dict[str, dict[str, dict[str, Any]]] = {}

    def step(now: datetime, manual: Any = None) -> tuple[Evaluation, list[Transition]]:
        ev = lifecycle(library, make_facts(kpis=order_kpis(orders), now=now), manual)
        return ev, apply_evaluation(current, ev, now, "event")

    # signed up, nothing bought: registered in the promo
    ev, moves = step(T0 - 5 * DAY)
    assert ev.segment("lifecycle") == "promo_registered"
    assert ev.next_change_at is None
    assert ("lifecycle", "promo_registered", "entered") in {(t.group, t.segment, t.kind) for t in moves}

    # first order: newbie for 60 days
    orders.append(T0)
    ev, moves = step(T0)
    assert ev.segment("lifecycle") == "newbie"
    assert ev.next_change_at == T0 + 60 * DAY
    lifecycle_moves = [(t.segment, t.kind) for t in moves if t.group == "lifecycle"]
    assert lifecycle_moves == [("promo_registered", "exited"), ("newbie", "entered")]
    assert current["lifecycle"] == {"newbie": {"since": iso(T0), "manual": False}}

    # second order 20 days later: two orders at a normal pace → neutral; unstable after 1.5 × 20 days
    orders.append(T0 + 20 * DAY)
    ev, _ = step(T0 + 20 * DAY)
    assert ev.segment("lifecycle") == "neutral"
    assert ev.next_change_at == T0 + 20 * DAY + 30 * DAY

    # third order: loyal; the next deadline is the pause of 1.5 × the average interval
    orders.append(T0 + 40 * DAY)
    ev, _ = step(T0 + 40 * DAY)
    assert ev.segment("lifecycle") == "loyal"
    assert ev.next_change_at == T0 + 70 * DAY

    # a day before the deadline nothing changes
    ev, moves = step(T0 + 69 * DAY)
    assert ev.segment("lifecycle") == "loyal"
    assert [t for t in moves if t.group == "lifecycle"] == []

    # the pause is longer than 1.5 × average: unstable ("we are losing him"); inactive at last order + 180 days
    ev, moves = step(T0 + 70 * DAY)
    assert ev.segment("lifecycle") == "unstable"
    # the earliest deadline over all groups: potential active → passive 90 days after the last order
    assert ev.next_change_at == T0 + 40 * DAY + 90 * DAY
    # the lifecycle alone (with the groups it depends on) waits for last order + 180 days
    only = [g for g in library if g.group in ("lifecycle", "nps_group", "markers")]
    alone = evaluate(only, make_facts(kpis=order_kpis(orders), now=T0 + 70 * DAY), None, T0 + 70 * DAY)
    assert alone.segment("lifecycle") == "unstable"
    assert alone.next_change_at == T0 + 40 * DAY + 180 * DAY
    assert [(t.segment, t.kind) for t in moves if t.group == "lifecycle"] == [
        ("loyal", "exited"),
        ("unstable", "entered"),
    ]

    # six months without a purchase: inactive, nothing more to wait for
    ev, _ = step(T0 + 220 * DAY)
    assert ev.segment("lifecycle") == "inactive"
    assert ev.segment("potential") == "passive"
    assert ev.next_change_at is None
    assert current["lifecycle"] == {"inactive": {"since": iso(T0 + 220 * DAY), "manual": False}}

    # the reactivation journey gave up: it marks the customer and the lifecycle says lost
    marker = {"markers": {"segment": "reactivation_exhausted", "reason": "journey:reactivation", "until": None}}
    ev, moves = step(T0 + 235 * DAY, marker)
    assert ev.segment("lifecycle") == "lost"
    assert ev.memberships["markers"] == ["reactivation_exhausted"]
    assert ev.manual == {"markers": {"reactivation_exhausted": "journey:reactivation"}}
    marker_move = next(t for t in moves if t.group == "markers")
    assert (marker_move.kind, marker_move.reason, marker_move.manual) == (
        "entered",
        "journey:reactivation",
        True,
    )

    # a new order clears the marker (keep_while) and brings the customer back
    orders.append(T0 + 240 * DAY)
    ev, moves = step(T0 + 240 * DAY, marker)
    assert ev.expired_manual == [("markers", "reactivation_exhausted")]
    assert ev.memberships["markers"] == []
    assert ev.segment("lifecycle") == "loyal"
    assert ev.segment("potential") == "active"
    assert "markers" not in current  # empty groups are dropped from the profile
    assert {(t.group, t.segment, t.kind) for t in moves} >= {
        ("markers", "reactivation_exhausted", "exited"),
        ("lifecycle", "lost", "exited"),
        ("lifecycle", "loyal", "entered"),
    }


def test_newbie_without_second_order_becomes_neutral(library: list[SegmentGroup]) -> None:
    kpis = order_kpis([T0])
    assert lifecycle(library, make_facts(kpis=kpis, now=T0 + 59 * DAY)).segment("lifecycle") == "newbie"
    ev = lifecycle(library, make_facts(kpis=kpis, now=T0 + 60 * DAY))
    assert ev.segment("lifecycle") == "neutral"
    assert ev.segment("potential") == "active"
    assert ev.next_change_at == T0 + 90 * DAY  # potential: active → passive
    ev = lifecycle(library, make_facts(kpis=kpis, now=T0 + 90 * DAY))
    assert (ev.segment("lifecycle"), ev.segment("potential")) == ("neutral", "passive")
    assert ev.next_change_at == T0 + 180 * DAY  # lifecycle: inactive


def test_unstable_floor_for_same_day_orders(library: list[SegmentGroup]) -> None:
    kpis = order_kpis([T0, T0 + timedelta(hours=2)])
    assert kpis["average_days_between_orders"] < 0.1
    ev = lifecycle(library, make_facts(kpis=kpis, now=T0 + DAY))
    assert ev.segment("lifecycle") == "neutral"
    assert ev.next_change_at == T0 + timedelta(hours=2) + 14 * DAY


def test_fraud_and_complaint_win(library: list[SegmentGroup]) -> None:
    kpis = order_kpis([T0, T0 + 10 * DAY, T0 + 20 * DAY])
    now = T0 + 21 * DAY
    assert lifecycle(library, make_facts(kpis=kpis, now=now)).segment("lifecycle") == "loyal"
    complaint = lifecycle(library, make_facts(kpis=kpis, traits={"complaint_open": True}, now=now))
    assert complaint.segment("lifecycle") == "complaint"
    answered = {"nps_last_at": (now - DAY).isoformat()}
    detractor = lifecycle(library, make_facts(kpis={**kpis, "nps_last_score": 4}, profile=answered, now=now))
    assert detractor.segment("nps_group") == "detractor"
    assert detractor.segment("lifecycle") == "complaint"  # uses nps_group, evaluated before
    # a month after the answer the detractor is no longer "in complaint" (and can be surveyed again)
    later = lifecycle(library, make_facts(kpis={**kpis, "nps_last_score": 4}, profile=answered, now=now + 30 * DAY))
    assert later.segment("nps_group") == "detractor" and later.segment("lifecycle") != "complaint"
    fraud = lifecycle(library, make_facts(kpis=kpis, traits={"fraud": True, "complaint_open": True}, now=now))
    assert fraud.segment("lifecycle") == "fraud"


@pytest.mark.parametrize(
    ("score", "group"),
    [(10, "promoter"), (9, "promoter"), (8, "passive"), (7, "passive"), (6, "detractor"), (0, "detractor")],
)
def test_nps_groups(library: list[SegmentGroup], score: int, group: str) -> None:
    assert lifecycle(library, make_facts(kpis={"nps_last_score": score})).segment("nps_group") == group


def test_nps_group_is_empty_without_an_answer(library: list[SegmentGroup]) -> None:
    ev = lifecycle(library, make_facts())
    assert ev.memberships["nps_group"] == []
    assert ev.segment("nps_group") is None


def test_flags(library: list[SegmentGroup]) -> None:
    traits = {"preferred_channel": "sms", "vip": True, "has_account": True, "has_mobile_app": False}
    ev = lifecycle(library, make_facts(traits=traits))
    assert ev.memberships["flags"] == ["prefers_sms", "vip", "has_account"]


def test_potential_cold_warm_hot(library: list[SegmentGroup]) -> None:
    now = T0
    nothing = lifecycle(library, make_facts(now=now))
    assert nothing.segment("potential") is None
    cold = lifecycle(library, make_facts(consent={"email": True, "sms": False}, now=now))
    assert cold.segment("potential") == "cold"
    viewed = {"last_product_viewed_at": iso(now - 5 * DAY)}
    warm = lifecycle(library, make_facts(consent={"email": True, "sms": False}, profile=viewed, now=now))
    assert warm.segment("potential") == "warm"
    assert warm.next_change_at == now + 25 * DAY
    carted = {"last_cart_at": iso(now - DAY), **viewed}
    hot = lifecycle(library, make_facts(profile=carted, now=now))
    assert hot.segment("potential") == "hot"
    assert hot.next_change_at == now + 2 * DAY  # hot cools down to warm after 3 days
    later = lifecycle(library, make_facts(profile=carted, now=now + 2 * DAY))
    assert later.segment("potential") == "warm"
    buyer = lifecycle(library, make_facts(kpis=order_kpis([now]), profile=carted, now=now))
    assert buyer.segment("potential") == "active"


# --- manual assignments ------------------------------------------------------------------------------------


def test_manual_assignment_wins_until_it_expires(library: list[SegmentGroup]) -> None:
    kpis = order_kpis([T0])
    until = T0 + 10 * DAY
    manual = {"lifecycle": {"segment": "loyal", "reason": "support: VIP complaint solved", "until": iso(until)}}
    current: dict[str, dict[str, dict[str, Any]]] = {}

    ev = lifecycle(library, make_facts(kpis=kpis, now=T0 + DAY), manual)
    assert ev.segment("lifecycle") == "loyal"
    assert ev.manual["lifecycle"] == {"loyal": "support: VIP complaint solved"}
    assert ev.next_change_at == until  # the expiry is the next deadline (before newbie's 60 days)
    moves = apply_evaluation(current, ev, T0 + DAY, "event")
    entered = next(t for t in moves if t.group == "lifecycle")
    assert (entered.segment, entered.kind, entered.reason, entered.manual) == (
        "loyal",
        "entered",
        "support: VIP complaint solved",
        True,
    )
    assert current["lifecycle"]["loyal"]["manual"] is True

    ev = lifecycle(library, make_facts(kpis=kpis, now=until), manual)
    assert ev.segment("lifecycle") == "newbie"
    assert ev.expired_manual == [("lifecycle", "loyal")]
    assert ev.next_change_at == T0 + 60 * DAY
    moves = apply_evaluation(current, ev, until, "deadline")
    assert [(t.segment, t.kind, t.reason) for t in moves if t.group == "lifecycle"] == [
        ("loyal", "exited", "deadline"),
        ("newbie", "entered", "deadline"),
    ]


def test_manual_assignment_without_expiry_and_unknown_segment(library: list[SegmentGroup]) -> None:
    ev = lifecycle(library, make_facts(), {"lifecycle": {"segment": "fraud", "reason": "chargebacks", "until": None}})
    assert ev.segment("lifecycle") == "fraud"
    assert ev.next_change_at is None
    stale = lifecycle(library, make_facts(), {"lifecycle": {"segment": "gone", "reason": "x", "until": None}})
    assert stale.segment("lifecycle") == "promo_registered"
    assert stale.expired_manual == [("lifecycle", "gone")]


def test_manual_assignment_with_unreadable_expiry_is_dropped(library: list[SegmentGroup]) -> None:
    ev = lifecycle(library, make_facts(), {"lifecycle": {"segment": "loyal", "reason": "x", "until": "someday"}})
    assert ev.segment("lifecycle") == "promo_registered"
    assert ev.expired_manual == [("lifecycle", "loyal")]


def test_manual_in_multi_group_adds_to_the_rules(library: list[SegmentGroup]) -> None:
    manual = {"flags": [{"segment": "vip", "reason": "board member", "until": None}]}
    ev = lifecycle(library, make_facts(traits={"has_account": True}), manual)
    assert ev.memberships["flags"] == ["vip", "has_account"]
    assert ev.manual == {"flags": {"vip": "board member"}}


def test_apply_evaluation_keeps_since_and_updates_manual_flag() -> None:
    current = {"g": {"a": {"since": "2024-01-01T00:00:00.000000Z", "manual": True}}}
    ev = Evaluation(memberships={"g": ["a", "b"]}, next_change_at=None)
    moves = apply_evaluation(current, ev, T0, "event")
    assert current == {
        "g": {
            "a": {"since": "2024-01-01T00:00:00.000000Z", "manual": False},
            "b": {"since": iso(T0), "manual": False},
        }
    }
    assert moves == [Transition("g", "b", "entered", T0, "event", False)]
    assert moves[0].event_name == "Segment Entered"
    assert moves[0].properties() == {"group": "g", "segment": "b", "reason": "event", "manual": False}
    assert apply_evaluation(current, ev, T0 + DAY, "event") == []


def test_membership_set_and_summary(library: list[SegmentGroup]) -> None:
    ev = lifecycle(library, make_facts(kpis={"nps_last_score": 8}, traits={"vip": True}))
    flat = ev.membership_set()
    assert {"passive", "nps_group/passive", "vip", "flags/vip", "promo_registered"} <= flat
    current: dict[str, dict[str, dict[str, Any]]] = {}
    apply_evaluation(current, ev, T0, "event")
    assert membership_set(current) == flat
    assert summarize(current, library) == {
        "flags": ["vip"],
        "nps_group": "passive",
        "markers": [],
        "welcome_chain": [],
        "lifecycle": "promo_registered",
        "potential": None,
    }


def test_previous_memberships_of_evaluated_groups_are_not_seen(library: list[SegmentGroup]) -> None:
    facts = make_facts(kpis=order_kpis([T0]))
    facts["segments"] = {"detractor", "nps_group/detractor", "custom_external"}
    ev = lifecycle(library, facts)
    assert ev.segment("lifecycle") == "newbie"  # the stale `detractor` does not make a complaint


# --- validation ---------------------------------------------------------------------------------------------


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def load_error(files: dict[str, str]) -> str:
    with pytest.raises(ValidationError) as info:
        load_groups({name: textwrap.dedent(text) for name, text in files.items()})
    return info.value.message


GOOD_NPS = """\
group: nps_group
mode: exclusive
default: null
segments:
  - {id: promoter, priority: 1, when: {kpi: nps_last_score, gte: 9}}
  - {id: detractor, priority: 2, when: {kpi: nps_last_score, lt: 7}}
  - {id: passive, priority: 3, when: {kpi: nps_last_score, gte: 7}}
"""

LIFECYCLE = """\
group: lifecycle
mode: exclusive
default: neutral
segments:
  - id: fraud
    priority: 10
    when: {trait: fraud, eq: true}
  - id: complaint
    priority: 20
    when:
      any:
        - {in_segment: detractor}
        - {trait: complaint_open, eq: true}
  - id: loyal
    priority: 30
    when: {kpi: orders_count, gte: 3}
  - id: neutral
"""


def test_a_small_valid_library() -> None:
    groups = load_groups({"nps.yaml": GOOD_NPS, "lifecycle.yaml": LIFECYCLE})
    assert [g.group for g in groups] == ["nps_group", "lifecycle"]
    assert groups[1].source == "lifecycle.yaml"


@pytest.mark.parametrize(
    ("replace", "by", "needle", "message"),
    [
        (
            "    priority: 30\n",
            "    priority: 30\n    colour: red\n",
            "colour",
            "segments[2].colour: unknown field",
        ),
        ("group: lifecycle\n", "group: lifecycle\nowner: me\n", "owner", "owner: unknown field"),
        (
            "{kpi: orders_count, gte: 3}",
            "{kpii: orders_count, gte: 3}",
            "kpii",
            "segments[2].when.kpii: unknown operator 'kpii'",
        ),
        (
            "{kpi: orders_count, gte: 3}",
            '{kpi: orders_count, gte: "abc"}',
            "abc",
            "segments[2].when.gte: kpi 'orders_count' is a number: got 'abc'",
        ),
        (
            "{kpi: orders_count, gte: 3}",
            "{kpi: order_count, gte: 3}",
            "order_count",
            "segments[2].when.kpi: unknown kpi 'order_count'",
        ),
        (
            "{trait: complaint_open, eq: true}",
            "{since: last_order_at, gte: 6months}",
            "6months",
            "segments[1].when.any[1].gte: invalid duration '6months'",
        ),
        (
            "    priority: 30\n",
            "    priority: 20  # dup\n",
            "# dup",
            "duplicate priority 20 (also 'complaint')",
        ),
        (
            "  - id: loyal\n",
            "  - id: fraud  # dup\n",
            "# dup",
            "segments[2].id: duplicate segment id 'fraud' (also segments[0])",
        ),
        ("default: neutral\n", "", "mode: exclusive", "mode: an exclusive group needs 'default'"),
        ("default: neutral\n", "default: nobody\n", "nobody", "default: default 'nobody' is not a segment"),
        (
            "mode: exclusive\n",
            "mode: sometimes\n",
            "sometimes",
            "mode: Input should be 'exclusive' or 'multi'",
        ),
        (
            "    priority: 30\n",
            "",
            "id: loyal",
            "segments[2]: segment 'loyal' needs a 'priority' in an exclusive group",
        ),
        ("{in_segment: detractor}", "{in_segment: detractors}", "detractors", "unknown segment 'detractors'"),
        (
            "{in_segment: detractor}",
            "{in_segment: nps/detractor}",
            "nps/detractor",
            "unknown segment 'nps/detractor': no group 'nps'",
        ),
        (
            "{in_segment: detractor}",
            "{in_segment: loyal}",
            "in_segment: loyal",
            "'loyal' is in the same exclusive group",
        ),
    ],
)
def test_validation_errors_name_file_and_line(replace: str, by: str, needle: str, message: str) -> None:
    assert replace in LIFECYCLE
    text = LIFECYCLE.replace(replace, by, 1)
    error = load_error({"scenarios/segments/lifecycle.yaml": text, "scenarios/segments/nps.yaml": GOOD_NPS})
    expected_prefix = f"scenarios/segments/lifecycle.yaml:{line_of(text, needle)}: "
    assert error.startswith(expected_prefix), error
    assert message in error, error


def test_type_mismatch_in_flow_mapping_line() -> None:
    text = "group: g\nmode: multi\nsegments:\n  - id: a\n    when:\n      kpi: orders_count\n      gt: abc\n"
    error = load_error({"g.yaml": text})
    assert error == "g.yaml:7: segments[0].when.gt: kpi 'orders_count' is a number: got 'abc'"


def test_cycle_between_segments_across_groups() -> None:
    a = """\
    group: a
    mode: multi
    segments:
      - id: x
        when: {in_segment: y}
    """
    b = """\
    group: b
    mode: multi
    segments:
      - id: y
        when:
          all:
            - {kpi: orders_count, gte: 1}
            - {in_segment: x}
    """
    error = load_error({"a.yaml": a, "b.yaml": b})
    assert error == "a.yaml:5: segments[0].when.in_segment: cycle between segments: a/x -> b/y -> a/x"


def test_cycle_inside_a_multi_group_and_self_reference() -> None:
    text = """\
    group: m
    mode: multi
    segments:
      - {id: x, when: {in_segment: y}}
      - {id: y, when: {not: {in_segment: x}}}
    """
    assert (
        load_error({"m.yaml": text})
        == "m.yaml:4: segments[0].when.in_segment: cycle between segments: m/x -> m/y -> m/x"
    )
    selfish = "group: s\nmode: multi\nsegments:\n  - {id: x, when: {in_segment: x}}\n"
    assert (
        load_error({"s.yaml": selfish}) == "s.yaml:4: segments[0].when.in_segment: cycle between segments: s/x -> s/x"
    )


def test_cycle_between_groups() -> None:
    a = "group: a\nmode: multi\nsegments:\n  - {id: x, when: {in_segment: z}}\n  - {id: w, when: {trait: t, eq: 1}}\n"
    b = "group: b\nmode: multi\nsegments:\n  - {id: z, when: {trait: t, eq: 1}}\n  - {id: v, when: {in_segment: w}}\n"
    error = load_error({"a.yaml": a, "b.yaml": b})
    assert error.startswith("a.yaml:4: segments[0].when.in_segment: cycle between groups: a -> b -> a")


def test_multi_group_orders_siblings_by_dependency() -> None:
    text = """\
    group: m
    mode: multi
    segments:
      - {id: vip_buyer, when: {all: [{in_segment: buyer}, {trait: vip, eq: true}]}}
      - {id: buyer, when: {kpi: orders_count, gte: 1}}
    """
    groups = load_groups({"m.yaml": textwrap.dedent(text)})
    ev = evaluate(groups, make_facts(kpis={"orders_count": 1}, traits={"vip": True}), None, T0)
    assert ev.memberships["m"] == ["vip_buyer", "buyer"]


def test_ambiguous_reference_needs_the_group() -> None:
    potential = "group: potential\nmode: multi\nsegments:\n  - {id: passive, when: {kpi: orders_count, gte: 1}}\n"
    user = "group: u\nmode: multi\nsegments:\n  - {id: x, when: {in_segment: passive}}\n"
    error = load_error({"nps.yaml": GOOD_NPS, "p.yaml": potential, "u.yaml": user})
    assert error == (
        "u.yaml:4: segments[0].when.in_segment: ambiguous segment 'passive' (in nps_group, potential): "
        "write 'nps_group/passive' or 'potential/passive'"
    )
    fixed = user.replace("in_segment: passive", "in_segment: nps_group/passive")
    groups = load_groups({"nps.yaml": GOOD_NPS, "p.yaml": potential, "u.yaml": fixed})
    ev = evaluate(groups, make_facts(kpis={"nps_last_score": 7, "orders_count": 0}), None, T0)
    assert ev.memberships["u"] == ["x"]


def test_duplicate_group_and_several_problems_at_once() -> None:
    one = "group: g\nmode: multi\nsegments:\n  - {id: a, when: {trait: t, eq: 1}}\n"
    bad = "group: h\nmode: multi\nsegments:\n  - {id: a, when: {trait: t, eqq: 1}}\n  - {id: b, priority: 1, when: {trait: t, eq: 1}}\n"
    error = load_error({"one.yaml": one, "two.yaml": one, "bad.yaml": bad})
    assert "bad.yaml:4: segments[0].when.eqq: unknown operator 'eqq'" in error
    error2 = load_error({"one.yaml": one, "two.yaml": one})
    assert error2 == "two.yaml:1: group: duplicate group 'g' (also in one.yaml)"
    bad2 = "group: h\nmode: multi\nsegments:\n  - {id: b, priority: 1, when: {trait: t, eq: 1}}\n"
    assert (
        load_error({"bad.yaml": bad2})
        == "bad.yaml:4: segments[0].priority: 'priority' only applies to exclusive groups"
    )


def test_invalid_yaml_and_duplicate_keys_name_the_line() -> None:
    broken = "group: g\nmode: multi\nsegments:\n  - id: a\n    when: {trait: t, eq: 1\n"
    assert load_error({"broken.yaml": broken}).startswith("broken.yaml:6: invalid YAML")
    dup = "group: g\nmode: multi\nsegments:\n  - id: a\n    when: {trait: t, eq: 1}\n    when: {trait: u, eq: 1}\n"
    assert load_error({"dup.yaml": dup}) == "dup.yaml:6: segments[0]: duplicate key 'when'"


def test_dict_definitions_report_paths_without_lines() -> None:
    body = {
        "group": "g",
        "mode": "multi",
        "segments": [{"id": "a", "when": {"kpi": "orders_count", "gt": "x"}}],
    }
    with pytest.raises(ValidationError) as info:
        load_groups({"SEGDEF#g": body})
    assert info.value.message == "SEGDEF#g: segments[0].when.gt: kpi 'orders_count' is a number: got 'x'"


def test_manual_only_and_keep_while_rules() -> None:
    text = "group: g\nmode: multi\nsegments:\n  - {id: a, manual_only: true, when: {trait: t, eq: 1}}\n"
    assert load_error({"g.yaml": text}) == "g.yaml:4: segments[0].when: a manual_only segment has no 'when'"
    missing = "group: g\nmode: multi\nsegments:\n  - {id: a}\n"
    assert load_error({"g.yaml": missing}) == "g.yaml:4: segments[0]: segment 'a' needs 'when' (or manual_only: true)"
    bad_id = "group: g\nmode: multi\nsegments:\n  - {id: Big Spender, manual_only: true}\n"
    assert "g.yaml:4: segments[0].id: invalid segment id 'Big Spender'" in load_error({"g.yaml": bad_id})


def test_yaml_documents_keep_line_numbers() -> None:
    text = "a: 1\nb:\n  - x\n  - {c: 2}\n---\n# comment\nd: {e: [1, 2]}\n---\n"
    docs = load_yaml_documents(text, "t.yaml")
    assert [d for d, _ in docs] == [{"a": 1, "b": ["x", {"c": 2}]}, {"d": {"e": [1, 2]}}]
    first, second = docs[0][1], docs[1][1]
    assert first.line_for(("b", 1, "c")) == 4
    assert first.line_for(("b", 1, "missing")) == 4
    assert first.line_for(("a",)) == 1
    assert second.line_for(("d", "e", 1)) == 7
