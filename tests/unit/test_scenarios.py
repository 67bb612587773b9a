"""The default scenario library (scenarios/rules, scenarios/templates): it loads, validates together
with the segment library, follows the seeds' timings, and every template renders in both locales."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from retention.language import lint, rules, segments, templates
from retention.messaging.sms import sms_segments

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
RULE_IDS = {
    "welcome", "browse-abandonment", "abandoned-cart", "post-purchase", "back-in-stock", "price-drop",
    "low-stock", "order-status", "nps-survey", "nps-follow-up", "losing-customer", "reactivation",
    "birthday", "review-request", "newsletter",
    # DESIGN §5, added in turn 2
    "order-confirmation", "double-opt-in", "subscriber-welcome", "second-order", "loyalty", "holidays",
}


@pytest.fixture(scope="module")
def library() -> dict[str, templates.Template]:
    return templates.load_templates_dir(SCENARIOS / "templates")


@pytest.fixture(scope="module")
def groups() -> dict[str, list[str]]:
    return {g.group: g.segment_ids() for g in segments.default_groups()}


@pytest.fixture(scope="module")
def by_id(library: dict[str, templates.Template], groups: dict[str, list[str]]) -> dict[str, rules.Rule]:
    loaded = rules.default_rules(templates=library, segment_groups=groups, directory=SCENARIOS)
    return {rule.id: rule for rule in loaded}


# ---- the library as a whole -----------------------------------------------------------------------


def test_rule_ids_are_exactly_the_contract(by_id: dict[str, rules.Rule]) -> None:
    assert set(by_id) == RULE_IDS
    # every rule is on, but the newsletter (it needs this content first, see newsletter.yaml) and the
    # holiday greetings (they need the shop's calendar)
    assert sorted(r.id for r in by_id.values() if not r.enabled) == ["holidays", "newsletter"]
    assert sorted(r.id for r in by_id.values() if r.is_transactional) == [
        "double-opt-in", "nps-follow-up", "order-confirmation", "order-status"]


def test_every_referenced_template_exists_and_none_is_orphaned(
    by_id: dict[str, rules.Rule], library: dict[str, templates.Template]
) -> None:
    referenced = set().union(*(rule.templates() for rule in by_id.values()))
    assert referenced == set(library)
    for path in (SCENARIOS / "templates").glob("*.yaml"):
        assert path.stem in library, f"{path.name} must hold the template of the same id"


def test_default_rules_validate_template_ids_from_the_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_SCENARIOS_DIR", str(SCENARIOS))
    assert {rule.id for rule in rules.default_rules()} == RULE_IDS


def test_stored_documents_read_back_the_same(by_id: dict[str, rules.Rule]) -> None:
    # The config table keeps rule.to_dict(); the engine parses it again without a line map.
    for rule in by_id.values():
        again = rules.parse_rule(rule.to_dict(), source=f"rule {rule.id}")
        assert again.to_dict() == rule.to_dict()
        assert rules.rule_hash(again) == rules.rule_hash(rule)


def test_every_template_has_both_locales_and_validates(library: dict[str, templates.Template]) -> None:
    for template_id, template in library.items():
        assert set(template.locales) == {"ru", "en"}, template_id
        assert templates.validate_template(template) == [], template_id


def test_lint_finds_nothing_to_fix(by_id: dict[str, rules.Rule], library: dict[str, templates.Template]) -> None:
    for template_id, template in library.items():
        problems = [w for w in lint.lint_template(template) if w.severity == "warning"]
        assert problems == [], template_id
    for rule_id, rule in by_id.items():
        problems = [w for w in lint.lint_rule(rule, library) if w.severity == "warning"]
        assert problems == [], rule_id


def test_templates_render_without_a_name_or_an_event(library: dict[str, templates.Template]) -> None:
    for template_id, template in library.items():
        for locale, fallback in (("ru", "друг"), ("en", "friend")):
            context = templates.build_context(customer_id="c-1", shop_name="Shop", shop_url="https://shop.example",
                                              unsubscribe_url="https://e.example/u/t", locale=locale,
                                              nps_urls={n: f"https://e.example/nps/t?score={n}" for n in range(11)},
                                              nps_short_url="https://e.example/nps/t")
            context["event"] = {}
            out = templates.render(template, locale, context)
            assert out.subject and fallback in out.subject.lower(), (template_id, locale, out.subject)
            assert "None" not in (out.text or "") and "None" not in (out.html or ""), (template_id, locale)


def test_marketing_emails_carry_the_unsubscribe_link(library: dict[str, templates.Template]) -> None:
    for template_id, template in library.items():
        for locale in ("ru", "en"):
            context = templates.sample_context(locale)
            out = templates.render(template, locale, context)
            if template.category == "marketing":
                # the html gets it from the one layout's footer, the text part from the template
                from retention.core.config import Brand
                from retention.messaging import layout
                page = layout.wrap(out.html or "", subject="s", preheader=None, locale=locale, marketing=True,
                                   brand=Brand().model_dump(), shop=context["shop"], links=context["links"])
                assert f'href="{templates.SAMPLE_UNSUBSCRIBE_URL}"' in page, (template_id, locale)
                assert templates.SAMPLE_UNSUBSCRIBE_URL in (out.text or ""), (template_id, locale)


def test_sms_bodies_fit_two_segments(library: dict[str, templates.Template]) -> None:
    events = [None, "Order Ready for Pickup", "Order Shipped"]
    with_sms = [t for t in library.values() if any(c.sms for c in t.locales.values())]
    assert {t.id for t in with_sms} == {"back-in-stock", "order-status", "order-pickup-reminder", "nps-survey",
                                        "nps-detractor"}
    for template in with_sms:
        for locale in ("ru", "en"):
            for event in events:
                context = templates.sample_context(locale)
                if event:
                    context["event"]["name"] = event
                text = templates.render(template, locale, context, channel="sms").sms or ""
                encoding, count, units = sms_segments(text)
                assert count <= 2, (template.id, locale, event, text)
                if locale == "ru":
                    assert encoding == "UCS-2" and units <= 134, (template.id, text)


def test_subject_lines_follow_seed_001(library: dict[str, templates.Template]) -> None:
    for template_id, template in library.items():
        for locale, content in template.locales.items():
            assert "first_name" in (content.subject or ""), (template_id, locale)
            subject = templates.render(template, locale, templates.sample_context(locale)).subject or ""
            assert len(subject) <= 40 and not any(ch.isdigit() for ch in subject), (template_id, subject)
            assert "бесплатн" not in subject.lower() and "free" not in subject.lower(), (template_id, subject)


def test_nps_survey_links_every_score(library: dict[str, templates.Template]) -> None:
    template = library["nps-survey"]
    for locale in ("ru", "en"):
        context = templates.sample_context(locale)
        out = templates.render(template, locale, context)
        for score in range(11):
            assert f'href="{context["links"]["nps"][score]}"' in (out.html or "")
            assert context["links"]["nps"][score] not in (out.text or "")
        assert context["links"]["nps_short"] in (out.text or "")  # one link in the text part (MIXED_ES)
        assert out.sms and out.sms.endswith(context["links"]["nps_short"])


def test_order_status_depends_on_the_event(library: dict[str, templates.Template]) -> None:
    template = library["order-status"]
    context = templates.sample_context("ru")
    context["event"]["name"] = "Order Ready for Pickup"
    ready = templates.render(template, "ru", context)
    assert "482913" in (ready.sms or "") and "482913" in (ready.html or "")
    assert ready.subject == "Заказ ждёт вас, Анна"
    context["event"]["name"] = "Order Shipped"
    shipped = templates.render(template, "ru", context)
    assert "PP123456789RU" in (shipped.sms or "") and "482913" not in (shipped.sms or "")
    assert shipped.subject == "Заказ в пути, Анна"


# ---- audiences ----------------------------------------------------------------------------------


def _facts(consent: dict[str, bool], member_of: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"consent": consent, "segments": set(member_of), "traits": {}, "kpis": {},
            "now": datetime(2024, 5, 1, tzinfo=UTC)}


def test_marketing_audiences_require_the_consent_of_their_channels(by_id: dict[str, rules.Rule]) -> None:
    for rule in by_id.values():
        if rule.is_transactional:
            continue
        audience = rule.audience
        assert audience is not None, rule.id
        channels = {step.send.channel for _, step in rule.send_steps()}
        assert not audience.evaluate(_facts({})), rule.id
        assert not audience.evaluate(_facts({"email": True, "sms": True}, ("fraud", "lifecycle/fraud"))), rule.id
        targeted = ("loyal", "lifecycle/loyal") if rule.id == "loyalty" else ()  # loyalty: loyal and VIP only
        if channels == {"email"}:
            assert audience.evaluate(_facts({"email": True}, targeted)), rule.id
            assert not audience.evaluate(_facts({"sms": True})), rule.id
        if channels == {"preferred"}:
            assert audience.evaluate(_facts({"email": True})), rule.id
            assert audience.evaluate(_facts({"sms": True})), rule.id


# ---- timings from the seeds ----------------------------------------------------------------------


def walk(rule: rules.Rule, facts: dict[str, Any] | None = None, engaged: bool = False) -> list[tuple[Any, ...]]:
    """The path a journey takes for these facts: sends, waits and segment changes."""
    facts = facts or _facts({"email": True})
    out: list[tuple[Any, ...]] = []
    index = 0
    while index < len(rule.steps):
        step = rule.steps[index]
        kind = rules.step_kind(step)
        if kind == "branch":
            condition = rules.branch_condition(step)
            result = engaged if isinstance(condition, str) else condition.evaluate(facts)
            index = rules.branch_next(rule, step, index, result)
            continue
        if isinstance(step, rules.WaitStep) and step.wait.reorder is not None:
            out.append(("wait", "reorder " + rules.format_duration(step.wait.reorder)))
        elif isinstance(step, rules.WaitStep):
            out.append(("wait", rules.format_duration(step.wait.duration)))
        elif isinstance(step, rules.SendStep):
            out.append(("send", step.send.channel, *step.send.templates()))
        elif isinstance(step, rules.SetSegmentStep):
            out.append(("set_segment", step.set_segment.group, step.set_segment.segment))
        index += 1
    return out


def test_welcome(by_id: dict[str, rules.Rule], library: dict[str, templates.Template]) -> None:
    rule = by_id["welcome"]
    assert rule.trigger.event == ["Signed Up", "Subscription Confirmed"]
    assert rule.trigger_matches_event("Signed Up", {})
    assert rule.trigger_matches_event("Subscription Confirmed", {"via": "Signed Up"})
    assert not rule.trigger_matches_event("Subscription Confirmed", {"via": "Newsletter Subscribed"})
    assert walk(rule) == [("set_segment", "welcome_chain", "signup"), ("send", "email", "welcome"), ("wait", "1d"),
                          ("send", "email", "welcome-offer"), ("wait", "29d"), ("send", "email", "welcome-forgot-us")]
    assert rule.exit_matches("Order Completed", {})
    assert rule.re_entry.allowed is False
    # issue 14: every step is marketing, so only customers with email consent enter
    assert all(library[t].category == "marketing" for t in rule.templates())
    assert not rule.audience.evaluate(_facts({}))
    assert not rule.audience.evaluate(_facts({"email": True}, ("welcome_chain/subscriber",)))


def _consent_facts(state: str, member_of: tuple[str, ...] = ()) -> dict[str, Any]:
    return _facts({"email": state == "granted"}, member_of) | {"consent_state": {"email": state, "sms": "unknown"}}


def test_double_opt_in_asks_once_those_who_did_not_answer(by_id: dict[str, rules.Rule],
                                                           library: dict[str, templates.Template]) -> None:
    rule = by_id["double-opt-in"]
    assert rule.is_transactional and rule.holdout_percent == 0 and rule.re_entry.allowed is False
    assert library["double-opt-in"].category == "transactional"
    assert set(rule.trigger.event) == {"Signed Up", "Newsletter Subscribed"}
    assert walk(rule) == [("send", "email", "double-opt-in")]
    assert rule.audience.evaluate(_consent_facts("unknown"))
    assert rule.audience.evaluate(_consent_facts("pending"))
    assert not rule.audience.evaluate(_consent_facts("refused"))  # a refusal gets service mail only
    assert not rule.audience.evaluate(_consent_facts("granted"))
    assert not rule.audience.evaluate(_consent_facts("unknown", ("fraud", "lifecycle/fraud")))
    assert rule.exit_matches("Subscription Confirmed", {})
    html = templates.render(library["double-opt-in"], "ru", templates.sample_context("ru")).html or ""
    assert "https://engine.example/optin/sample-token" in html


def test_subscriber_welcome_and_the_sign_up_share_one_chain(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["subscriber-welcome"]
    assert rule.trigger_matches_event("Newsletter Subscribed", {})
    assert rule.trigger_matches_event("Subscription Confirmed", {"via": "Newsletter Subscribed"})
    assert not rule.trigger_matches_event("Subscription Confirmed", {"via": "Signed Up"})
    assert walk(rule) == [("set_segment", "welcome_chain", "subscriber"), ("send", "email", "subscriber-welcome"),
                          ("wait", "5d"), ("send", "email", "subscriber-last-chance")]
    assert rule.audience.evaluate(_facts({"email": True}))
    assert not rule.audience.evaluate(_facts({"email": True}, ("welcome_chain/signup",)))
    assert rule.exit_matches("Order Completed", {}) and rule.re_entry.allowed is False


def test_order_confirmation_is_transactional_and_post_purchase_the_marketing_cross_sell(
        by_id: dict[str, rules.Rule], library: dict[str, templates.Template]) -> None:
    confirmation = by_id["order-confirmation"]
    assert confirmation.is_transactional and confirmation.holdout_percent == 0
    assert confirmation.trigger.event == ["Order Completed"] and confirmation.journey_key == "order_id"
    assert walk(confirmation, _facts({})) == [("send", "email", "order-confirmation")]
    assert confirmation.audience.evaluate(_facts({}))  # no marketing consent needed
    assert library["order-confirmation"].category == "transactional"
    assert templates.promotion_problems(library["order-confirmation"]) == []
    post = by_id["post-purchase"]
    assert not post.is_transactional and post.holdout_percent > 0
    assert not post.audience.evaluate(_facts({}))
    assert walk(post) == [("wait", "3d"), ("send", "email", "accessories")]


def test_second_order_for_newbies(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["second-order"]
    assert rule.trigger_matches_event("Segment Entered", {"group": "lifecycle", "segment": "newbie"})
    # when the first order's categories run out (setting consumable_categories), else 30 days
    assert walk(rule) == [("wait", "reorder 30d"), ("send", "email", "second-order")]
    assert rule.exit_matches("Order Completed", {}) and rule.holdout_percent > 0


def test_loyalty_is_monthly_for_loyal_and_vip(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["loyalty"]
    trigger = rule.trigger
    assert isinstance(trigger, rules.ScheduleTrigger)
    first = trigger.next_at(datetime(2024, 5, 1, tzinfo=UTC))
    assert first == datetime(2024, 5, 20, 8, tzinfo=UTC)  # 11:00 Moscow
    assert trigger.next_at(first) == datetime(2024, 6, 20, 8, tzinfo=UTC)
    assert rule.audience.evaluate(_facts({"email": True}, ("loyal", "lifecycle/loyal")))
    assert rule.audience.evaluate(_facts({"email": True}, ("vip", "flags/vip")))
    assert not rule.audience.evaluate(_facts({"email": True}, ("newbie", "lifecycle/newbie")))
    assert walk(rule) == [("send", "email", "loyalty")]


def test_holidays_wait_for_the_shops_calendar(by_id: dict[str, rules.Rule],
                                               library: dict[str, templates.Template]) -> None:
    rule = by_id["holidays"]
    assert not rule.enabled
    trigger = rule.trigger
    assert isinstance(trigger, rules.ScheduleTrigger) and trigger.dates == []
    assert trigger.next_at(datetime(2024, 5, 1, tzinfo=UTC)) is None  # an empty calendar never fires
    filled = rules.parse_rule({**rule.to_dict(), "trigger": {
        "dates": [{"date": "03-08", "name": "8 Марта"}, {"date": "01-01", "name": "Новый год"}],
        "at": "10:00", "timezone": "Europe/Moscow"}}).trigger
    assert isinstance(filled, rules.ScheduleTrigger)
    at = filled.next_at(datetime(2024, 5, 1, tzinfo=UTC))
    assert at == datetime(2025, 1, 1, 7, tzinfo=UTC)
    assert filled.occasion(at) == {"occasion": "Новый год", "date": "01-01"}
    assert filled.next_at(at) == datetime(2025, 3, 8, 7, tzinfo=UTC)
    context = templates.sample_context("ru")
    context["event"] = {"name": "holidays", "properties": {"occasion": "Новый год"}}
    assert "Новый год" in (templates.render(library["holiday"], "ru", context).html or "")


def test_browse_abandonment(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["browse-abandonment"]
    assert rule.trigger_matches_event("Product Viewed", {"product_id": "sku-1"})
    assert not rule.trigger_matches_event("Product Viewed", {})
    assert walk(rule) == [("wait", "1d"), ("send", "email", "browse-reminder"), ("wait", "2d"),
                          ("send", "email", "browse-similar"), ("wait", "3d"), ("send", "email", "browse-survey")]
    assert walk(rule, engaged=True) == walk(rule)[:3]
    assert all(rule.exit_matches(name, {}) for name in ("Product Added", "Checkout Started", "Order Completed"))
    assert rule.re_entry.cooldown == timedelta(days=7)


def test_abandoned_cart(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["abandoned-cart"]
    assert rule.trigger.event == ["Checkout Started", "Product Added"]
    assert walk(rule) == [("wait", "8h"), ("send", "email", "cart-reminder"), ("wait", "1d"),
                          ("send", "email", "cart-discount-a", "cart-discount-b")]
    # seed 001 "Корзина 8-24 часа": 8 h, moved into the customer's daytime (09:00-21:00), never outside 8-24 h
    wait = rule.steps[0]
    assert isinstance(wait, rules.WaitStep)
    moscow = "Europe/Moscow"  # UTC+3
    for left_utc, due_utc in [(datetime(2024, 5, 1, 0, tzinfo=UTC), datetime(2024, 5, 1, 8, tzinfo=UTC)),  # 03:00 → 11:00
                              (datetime(2024, 5, 1, 13, tzinfo=UTC), datetime(2024, 5, 2, 6, tzinfo=UTC)),  # 16:00 → 09:00
                              (datetime(2024, 5, 1, 9, 59, tzinfo=UTC), datetime(2024, 5, 1, 17, 59, tzinfo=UTC))]:
        due = rules.next_wait_due(wait, left_utc, moscow)
        assert due == due_utc, (left_utc, due)
        assert timedelta(hours=8) <= due - left_utc <= timedelta(hours=24)
    variants = rule.steps[3].send.variants
    assert [(v.name, v.weight) for v in variants] == [("A", 50), ("B", 50)]
    assert rule.exit_matches("Order Completed", {}) and rule.holdout_percent == 10
    assert rule.attribution_window == timedelta(days=5)


def test_post_purchase(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["post-purchase"]
    assert rule.trigger.event == ["Order Completed"]
    assert walk(rule) == [("wait", "3d"), ("send", "email", "accessories")]


def test_product_events_fan_out_to_interested_customers(by_id: dict[str, rules.Rule]) -> None:
    expected = {
        "back-in-stock": ("Product Back in Stock", ["viewed", "carted", "subscribed"], "preferred"),
        "price-drop": ("Product Price Dropped", ["viewed", "carted", "subscribed"], "email"),
        "low-stock": ("Product Low Stock", ["viewed", "carted"], "email"),
    }
    for rule_id, (event, interest, channel) in expected.items():
        rule = by_id[rule_id]
        assert isinstance(rule.trigger, rules.ProductEventTrigger)
        assert (rule.trigger.product_event, rule.trigger.interest) == (event, interest)
        assert rule.trigger_matches_event(event, {"product_id": "sku-1"})
        assert walk(rule) == [("send", channel, rule_id)]


def test_order_status(by_id: dict[str, rules.Rule], library: dict[str, templates.Template]) -> None:
    rule = by_id["order-status"]
    assert rule.is_transactional and rule.holdout_percent == 0
    assert rule.trigger.event == ["Order Shipped", "Order Ready for Pickup"]
    ready = _facts({}) | {"event": {"name": "Order Ready for Pickup", "properties": {}}}
    shipped = _facts({}) | {"event": {"name": "Order Shipped", "properties": {}}}
    assert walk(rule, ready) == [("send", "preferred", "order-status"), ("wait", "5d"),
                                 ("send", "preferred", "order-pickup-reminder")]
    assert walk(rule, shipped) == [("send", "preferred", "order-status")]
    assert rule.exit_matches("Order Picked Up", {})
    for template_id in ("order-status", "order-pickup-reminder"):
        assert library[template_id].channels("ru") == {"email", "sms"}
        assert library[template_id].category == "transactional"


def test_nps_survey(by_id: dict[str, rules.Rule], library: dict[str, templates.Template]) -> None:
    rule = by_id["nps-survey"]
    assert rule.trigger.event == ["Order Picked Up"]
    assert walk(rule) == [("wait", "1d"), ("send", "preferred", "nps-survey")]
    assert rule.re_entry.cooldown == timedelta(days=90)
    assert library["nps-survey"].channels("ru") == {"email", "sms"}


@pytest.mark.parametrize(("group", "expected"), [
    ("detractor", [("set_segment", "lifecycle", "complaint"), ("send", "preferred", "nps-detractor")]),
    ("passive", [("send", "email", "nps-passive")]),
    ("promoter", [("send", "email", "nps-promoter")]),
])
def test_nps_follow_up_branches_per_group(by_id: dict[str, rules.Rule], group: str,
                                          expected: list[tuple[Any, ...]]) -> None:
    rule = by_id["nps-follow-up"]
    assert rule.trigger_matches_event("Segment Entered", {"group": "nps_group", "segment": group})
    facts = _facts({"email": True}, (group, f"nps_group/{group}"))
    assert walk(rule, facts) == expected
    assert not rule.trigger_matches_event("Segment Entered", {"group": "potential", "segment": "passive"})


def test_losing_customer_and_reactivation(by_id: dict[str, rules.Rule]) -> None:
    losing = by_id["losing-customer"]
    assert losing.trigger_matches_event("Segment Entered", {"group": "lifecycle", "segment": "unstable"})
    assert walk(losing) == [("send", "email", "losing-customer"), ("wait", "5d"),
                            ("send", "email", "losing-customer-offer")]
    assert walk(losing, engaged=True) == walk(losing)[:2]
    reactivation = by_id["reactivation"]
    assert reactivation.trigger_matches_event("Segment Entered", {"group": "lifecycle", "segment": "inactive"})
    assert walk(reactivation) == [
        ("send", "email", "reactivation-offer"), ("wait", "1w"), ("send", "email", "reactivation-coupon"),
        ("wait", "1w"), ("send", "email", "reactivation-survey"), ("wait", "2w"),
        ("set_segment", "markers", "reactivation_exhausted"),
    ]
    # An answer (a click on the survey) keeps the customer out of `lost`; an order ends the chain.
    assert walk(reactivation, engaged=True)[-1] == ("wait", "2w")
    assert reactivation.exit_matches("Order Completed", {})


def test_birthday(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["birthday"]
    trigger = rule.trigger
    assert isinstance(trigger, rules.DateAttributeTrigger)
    assert (trigger.date_attribute, trigger.offset_days, trigger.at) == ("birthday", -3, "10:00")
    start = trigger.next_at("1990-05-20", "Europe/Moscow", datetime(2024, 5, 1, tzinfo=UTC))
    assert start == datetime(2024, 5, 17, 7, tzinfo=UTC)
    assert walk(rule) == [("send", "email", "birthday-soon"), ("wait", "3d"), ("send", "email", "birthday-today")]
    # The second letter lands on the day itself, at 10:00 local.
    assert start + rule.steps[1].wait.duration == datetime(2024, 5, 20, 7, tzinfo=UTC)


def test_review_request(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["review-request"]
    assert "Order Picked Up" in rule.trigger.event
    assert walk(rule) == [("wait", "1w"), ("send", "email", "review-request")]
    assert rule.exit_matches("Product Reviewed", {})


def test_newsletter_goes_twice_a_month(by_id: dict[str, rules.Rule]) -> None:
    rule = by_id["newsletter"]
    trigger = rule.trigger
    assert isinstance(trigger, rules.ScheduleTrigger)
    assert trigger.rate_per_minute == 1000
    first = trigger.next_at(datetime(2024, 5, 13, tzinfo=UTC))
    assert first is not None
    # seed 003: regular letters 1-2 times a month
    firings = [first]
    while len(firings) < 12:
        nxt = trigger.next_at(firings[-1])
        assert nxt is not None
        firings.append(nxt)
    per_month = {(f.year, f.month) for f in firings}
    assert all(1 <= sum(1 for f in firings if (f.year, f.month) == m) <= 2 for m in per_month)
    assert min(b - a for a, b in itertools.pairwise(firings)) >= timedelta(days=13)
    assert walk(rule) == [("send", "email", "newsletter")]


# ---- the README's scenario table (issue 14: true to scenarios/) -----------------------------------------


def readme_scenario_rows() -> dict[str, dict[str, str]]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    lines = readme.split("| rule | class | trigger | timing: what the customer gets, when | channel | consent needed |")[1]
    rows: dict[str, dict[str, str]] = {}
    for line in lines.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rule, klass, trigger, timing, channel, consent = (c.strip() for c in line.strip("|").split(" | "))
        rule_id = rule.split("`")[1]
        rows[rule_id] = {"rule": rule, "class": klass, "trigger": trigger, "timing": timing, "channel": channel,
                         "consent": consent}
    return rows


def _consents(condition: Any) -> set[str]:
    """The channels whose marketing consent an audience asks for (`{consent: email}` without `state`)."""
    found: set[str] = set()
    if getattr(condition, "consent", None) and getattr(condition, "state", None) is None:
        found.add(condition.consent)
    for child in condition.children() if hasattr(condition, "children") else ():
        found |= _consents(child)
    return found


def _said(duration: timedelta) -> str:
    hours = int(duration.total_seconds() // 3600)
    return f"{hours} h" if hours < 24 else f"{duration.days} day"


def test_the_readme_scenario_table_is_true_to_the_library(by_id: dict[str, rules.Rule]) -> None:
    rows = readme_scenario_rows()
    assert set(rows) == set(by_id)
    for rule_id, rule in by_id.items():
        row = rows[rule_id]
        assert row["class"] == rule.category, rule_id
        assert ("(off)" in row["rule"]) == (not rule.enabled), rule_id
        channels = {step.send.channel for _, step in rule.send_steps()}
        for channel in channels:
            assert channel in row["channel"], (rule_id, channel)
        if channels == {"email"}:
            assert row["channel"] == "email", rule_id
        consents = _consents(rule.audience) if rule.audience is not None else set()
        expected = {"": "none", "email": "email", "sms": "SMS", "email+sms": "email or SMS"}[
            "+".join(sorted(consents))]
        assert row["consent"].startswith(expected), (rule_id, row["consent"], consents)
        names = getattr(rule.trigger, "event", None) or []
        for name in [names] if isinstance(names, str) else names:
            assert f"`{name}`" in row["trigger"], (rule_id, name)
        for _, step in ((i, s) for i, s in enumerate(rule.steps) if isinstance(s, rules.WaitStep)):
            wait = step.wait.duration or step.wait.reorder
            if wait is not None:
                assert _said(wait) in row["timing"], (rule_id, _said(wait), row["timing"])
