"""The engine's index of rules by event name (`Engine.rules_for`, `reacts_to`): an event is run through
the rules its name can act on only (about a third of an order's ingestion CPU went to asking all of them).
Sound on the default library: any rule that a (name, properties) pair can start, end or refresh is in the
name's list; and a customer's day of events gives the same profile, sends and due items with the index as
when every rule is asked."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta
from typing import Any

import pytest
from retention.core.config import Settings
from retention.journeys import cart
from retention.journeys.engine import Definitions, Engine, reacts_to
from retention.language import rules, segments, templates

from tests.unit.test_engine_guards import NOW, stored, track
from tests.unit.test_scenarios import SCENARIOS


@pytest.fixture(scope="module")
def library_rules() -> list[rules.Rule]:
    groups = {g.group: g.segment_ids() for g in segments.default_groups()}
    return rules.default_rules(templates=templates.load_templates_dir(SCENARIOS / "templates"),
                               segment_groups=groups, directory=SCENARIOS)


def _names(library: list[rules.Rule]) -> list[str]:
    names = {"Page Viewed", "Order Completed", "Product Viewed", "Checkout Started", "Cart Viewed",
             rules.SEGMENT_ENTERED_EVENT, rules.SEGMENT_EXITED_EVENT, "Something Else", "order completed"}
    names |= {str(e) for e in cart.CART_EVENTS}
    for rule in library:
        trigger = rule.trigger
        names |= set(getattr(trigger, "event", None) or [])
        if getattr(trigger, "product_event", None):
            names.add(trigger.product_event)
        if rule.exit_when is not None:
            names |= set(rule.exit_when.event or [])
        if rule.goal is not None:
            names.add(rule.goal.event)
    return sorted(names)


def _props() -> list[dict[str, Any]]:
    seg = [{"group": g.group, "segment": s} for g in segments.default_groups() for s in g.segment_ids()]
    return [{}, {"order_id": "o1", "revenue": 100, "status": "shipped"}, {"cart_id": "k1", "product_id": "p1"},
            {"product_id": "p1", "price": 10, "category": "shoes"}, {"score": 3}, {"score": 10}, *seg]


def test_every_rule_a_name_can_act_on_is_in_its_list(library_rules: list[rules.Rule]) -> None:
    names, props = _names(library_rules), _props()
    assert len(names) > 20
    missed = []
    for rule, name, p in itertools.product(library_rules, names, props):
        acts = (rule.trigger_matches_event(name, p) or rule.exit_matches(name, p)
                or (getattr(rule.trigger, "update", "first") == "cart" and cart.is_cart_event(name)))
        if acts and not reacts_to(rule, name):
            missed.append((rule.id, name, p))
    assert missed == []
    # and the index does narrow: most names act on few rules
    engine = Engine(Definitions(rules=library_rules, groups=[], settings=Settings()))
    assert max(len(engine.rules_for(n)) for n in names) < len(library_rules) / 2
    assert engine.rules_for("Something Else") == []


def test_a_day_of_events_gives_the_same_effects_with_the_index_as_asking_every_rule(
        library_rules: list[rules.Rule], monkeypatch: pytest.MonkeyPatch) -> None:
    from retention.ingestion.wire import Message
    consent = Message(type="identify", message_id="i0", user_id="c1", timestamp=NOW - timedelta(days=1),
                      received_at=NOW, traits={"email": "c1@example.com", "email_consent": True})
    day = [consent, track("Product Viewed", "m1", NOW, product_id="p1", price=10),
           track("Checkout Started", "m2", NOW + timedelta(minutes=1), cart_id="k1",
                 products=[{"product_id": "p1", "price": 10, "quantity": 1}]),
           track("Order Completed", "m3", NOW + timedelta(minutes=5), order_id="o1", revenue=10,
                 products=[{"product_id": "p1", "price": 10, "quantity": 1}]),
           track("Order Shipped", "m4", NOW + timedelta(hours=5), order_id="o1"),
           track("Order Picked Up", "m5", NOW + timedelta(days=1), order_id="o1"),
           track("Something Else", "m6", NOW + timedelta(days=1, hours=1))]
    defs = Definitions(rules=library_rules, groups=segments.default_groups(), settings=Settings())

    def run(every_rule: bool) -> Any:
        engine = Engine(defs)
        if every_rule:
            monkeypatch.setattr(engine, "rules_for", lambda name: list(defs.rules))
        sp = copy.deepcopy(stored())
        out = []
        for msg in day:
            fx = engine.process(sp, messages=[msg], now=max(msg.timestamp, NOW))
            out.append(([s.model_dump() for s in fx.sends], sorted((d.kind, d.ref, d.at) for d in fx.due),
                        fx.counters))
        return sp.profile.to_doc(), out

    indexed, every = run(False), run(True)
    assert indexed == every
    assert sum(len(sends) for sends, _, _ in indexed[1]) >= 2  # journeys ran: sends and waits
    assert any(due for _, due, _ in indexed[1])
