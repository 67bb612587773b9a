"""Lint: seed 001's subject-line lessons on templates, and advice on rules."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from retention.language import lint, rules, templates

UNSUB = '<p><a href="{{ links.unsubscribe }}">Отписаться</a></p>'


def template(subject: str, *, locale: str = "ru", category: str = "marketing", **parts: str) -> dict[str, Any]:
    content = {"subject": subject, "preheader": "Коротко о главном", "html": "<p>Текст</p>" + UNSUB}
    content.update(parts)
    return {"id": "t", "category": category, "default_locale": locale, "locales": {locale: content}}


def codes(items: list[lint.LintWarning], severity: str | None = None) -> list[str]:
    return [w.code for w in items if severity is None or w.severity == severity]


NAME = '{{ customer.first_name|first_name_or("друг") }}'


def test_a_good_subject_has_no_warnings() -> None:
    assert lint.lint_template(template(f"Ваша корзина ждёт, {NAME}")) == []


def test_subject_without_a_name() -> None:
    warnings = lint.lint_template(template("Ваша корзина ждёт"))
    assert codes(warnings) == ["subject-no-name"]
    assert warnings[0].locale == "ru"
    assert warnings[0].severity == "warning"
    assert "3×" in warnings[0].message


def test_long_subject() -> None:
    warnings = lint.lint_template(template(f"{NAME}, мы собрали для вас самые интересные новинки этой недели"))
    assert codes(warnings) == ["subject-long"]
    assert "58 %" in warnings[0].message
    # Judged as rendered with the sample name (Анна), not as the Jinja source.
    assert lint.lint_template(template(f"Подобрали для вас кое-что новое, {NAME}")) == []


def test_exact_numbers_in_the_subject() -> None:
    warnings = lint.lint_template(template(f"{NAME}, iPhone всего за 59990 р"))
    assert codes(warnings) == ["subject-digits"]
    assert "70 %" in warnings[0].message
    # A number that only appears when rendered counts too.
    rendered = lint.lint_template(template(f"{NAME}, ваш заказ {{{{ event.properties.order_id }}}}"))
    assert codes(rendered) == ["subject-digits"]
    assert codes(lint.lint_template(template(f"Снижена цена на iPhone, {NAME}"))) == []


def test_free_gift_and_thanks() -> None:
    free = lint.lint_template(template(f"Бесплатная доставка, {NAME}"))
    assert codes(free) == ["subject-free"]
    assert free[0].severity == "warning"
    english = lint.lint_template(template('Free delivery, {{ customer.first_name|first_name_or("friend") }}',
                                          locale="en"))
    assert codes(english) == ["subject-free"]
    assert english[0].locale == "en"
    gift = lint.lint_template(template(f"Подарок для вас, {NAME}"))
    assert codes(gift) == ["subject-gift"] and gift[0].severity == "info"
    thanks = lint.lint_template(template(f"Спасибо за заказ, {NAME}!"))
    assert codes(thanks) == ["subject-thanks"] and thanks[0].severity == "info"
    assert "doubles" in thanks[0].message


def test_several_lessons_at_once_and_per_locale() -> None:
    data = template("БЕСПЛАТНО 3 подарка всем нашим любимым покупателям сегодня")
    data["locales"]["en"] = {"subject": 'Thanks, {{ customer.first_name|first_name_or("friend") }}',
                             "preheader": "x", "text": "Bye {{ links.unsubscribe }}"}
    warnings = lint.lint_template(data)
    assert [(w.code, w.locale) for w in warnings] == [
        ("subject-no-name", "ru"), ("subject-long", "ru"), ("subject-digits", "ru"), ("subject-free", "ru"),
        ("subject-gift", "ru"), ("subject-thanks", "en"),
    ]


def test_unsubscribe_preheader_and_sms_length() -> None:
    no_footer = template(f"Новинки, {NAME}", html="<p>Без подвала</p>")
    assert codes(lint.lint_template(no_footer)) == ["no-unsubscribe"]
    service = template(f"Заказ в пути, {NAME}", category="transactional", html="<p>Без подвала</p>")
    assert codes(lint.lint_template(service)) == []
    no_preheader = template(f"Новинки, {NAME}")
    del no_preheader["locales"]["ru"]["preheader"]
    assert codes(lint.lint_template(no_preheader)) == ["no-preheader"]
    long_sms = template(f"Новинки, {NAME}", sms="Длинное сообщение кириллицей. " * 5)
    warnings = lint.lint_template(long_sms)
    assert codes(warnings) == ["sms-long"]
    assert "3 UCS-2 segments" in warnings[0].message
    short_sms = template(f"Новинки, {NAME}", sms="Заказ ждёт вас. Код: {{ event.properties.pickup_code }}")
    assert codes(lint.lint_template(short_sms)) == []


def _rule(text: str) -> rules.Rule:
    return rules.load_rules({"r.yaml": textwrap.dedent(text)})[0]


TEMPLATES: dict[str, Any] = {
    "mail": template(f"Новинки, {NAME}"),
    "both": template(f"Новинки, {NAME}", sms="Новинки недели: {{ links.shop }}"),
    "service": template(f"Заказ в пути, {NAME}", category="transactional"),
}
for _id, _doc in TEMPLATES.items():
    _doc["id"] = _id


def test_a_careful_marketing_rule_has_no_warnings() -> None:
    rule = _rule("""\
        id: r
        trigger: {event: Checkout Started}
        audience: {all: [{consent: email}, {not_in_segment: fraud}]}
        exit_when: {event: Order Completed}
        holdout_percent: 10
        steps:
          - wait: 4h
          - send: {channel: email, template: mail}
          - wait: 1d
          - branch: {if: {opened_previous: true}, then: end}
          - send: {channel: preferred, template: both}
    """)
    assert lint.lint_rule(rule, TEMPLATES) == []


def test_rule_warnings() -> None:
    rule = _rule("""\
        id: r
        trigger: {event: Checkout Started}
        audience: {all: [{consent: email}]}
        steps:
          - send: {channel: sms, template: both}
          - branch: {if: {opened_previous: true}, then: end}
          - send: {channel: sms, template: mail}
          - goto: end
          - send: {channel: email, template: service}
          - send: {channel: email, variants: [{template: mail, weight: 1}, {template: both, weight: 0}]}
          - send: {channel: email, template: ghost}
          - wait: 1d
    """)
    warnings = lint.lint_rule(rule, TEMPLATES)
    assert [(w.code, w.severity) for w in warnings] == [
        ("audience-no-consent", "warning"),
        ("audience-no-fraud", "info"),
        ("no-holdout", "info"),
        ("no-exit", "info"),
        ("unreachable-step", "warning"),
        ("unreachable-step", "warning"),
        ("unreachable-step", "warning"),
        ("unreachable-step", "warning"),
        ("trailing-wait", "warning"),
        ("engagement-sms", "warning"),
        ("template-channel", "warning"),
        ("template-category", "info"),
        ("variants-single", "info"),
        ("template-missing", "warning"),
    ]
    by_code = {w.code: w.message for w in warnings}
    assert "consent: sms" in by_code["audience-no-consent"]
    assert [w.message for w in warnings if w.code == "unreachable-step"] == [
        f"steps[{i}] can never be reached" for i in (4, 5, 6, 7)]
    assert by_code["template-channel"] == "steps[2]: channel sms, but template 'mail' has no sms content"


def test_rule_template_categories_and_missing_templates() -> None:
    service_rule = _rule("""\
        id: r
        category: transactional
        trigger: {event: Order Shipped}
        steps:
          - send: {channel: email, template: mail}
          - send: {channel: preferred, template: service}
          - send: {channel: email, template: ghost}
    """)
    assert [(w.code, w.severity) for w in lint.lint_rule(service_rule, TEMPLATES)] == [
        ("template-category", "warning"),
        ("template-channel", "info"),
        ("template-missing", "warning"),
    ]
    marketing = _rule("""\
        id: r
        trigger: {event: Order Shipped}
        audience: {all: [{consent: email}, {not_in_segment: fraud}]}
        holdout_percent: 5
        steps:
          - send: {channel: email, template: service}
    """)
    assert [(w.code, w.severity) for w in lint.lint_rule(marketing, TEMPLATES)] == [("template-category", "info")]
    # Without templates only the rule itself is judged.
    assert lint.lint_rule(marketing) == []


# ---- message class (issue 14) ---------------------------------------------------------------------------


def _service(html: str, text: str = "Заказ {{ event.properties.order_id }} принят.") -> dict[str, Any]:
    return {"id": "svc", "category": "transactional", "locales": {"ru": {
        "subject": 'Заказ принят, {{ customer.first_name|first_name_or("друг") }}', "html": html, "text": text}}}


@pytest.mark.parametrize(("html", "found"), [
    ("<p>Ваш промокод: {{ coupon }}</p>", "{{ coupon }}"),
    ('{% for p in recommend("similar", limit=4) %}{{ p.name }}{% endfor %}', "{{ recommend }}"),
    ('<a href="{{ links.offer }}">Смотреть</a>', "links.offer"),
    ("<p>Скидка 10 % на следующий заказ!</p>", "Скидк"),
    ("<p>Get a discount on your next order</p>", "discount"),
    # the product blocks and the coupon pools of retention.products / retention.language.blocks
    ("{{ product_cards(event.properties.products) }}", "{{ product_cards }}"),
    ("{{ product_lines(event.properties.products) }}", "{{ product_lines }}"),
    ('{{ product_cards(recommend("accessories", limit=4)) }}', "{{ recommend }}"),
    ("{% if coupon %}<p>{{ coupon.code }}</p>{% endif %}", "{{ coupon }}"),
])
def test_a_transactional_template_with_promotion_fails_apply_and_lint(html: str, found: str) -> None:
    problems = templates.validate_template(_service(html))
    assert problems and "carries no promotion" in problems[0] and found in problems[0], problems
    codes = [w.code for w in lint.lint_template(_service(html))]
    assert "transactional-promotion" in codes


def test_a_plain_service_message_and_a_marketing_offer_pass() -> None:
    assert templates.validate_template(_service("<p>Заказ {{ event.properties.order_id }} принят.</p>")) == []
    marketing = _service("<p>Промокод {{ coupon }}</p><a href=\"{{ links.unsubscribe }}\">x</a>",
                         "Промокод {{ coupon }} {{ links.unsubscribe }}")
    marketing["category"] = "marketing"
    assert templates.promotion_problems(templates.parse_template(marketing)) == []


def test_apply_refuses_a_transactional_template_with_a_coupon() -> None:
    from retention.admin.previews import template_problems
    problems = template_problems(_service("<p>Промокод {{ coupon }}</p>"), "templates/svc.yaml")
    assert problems and "carries no promotion" in problems[0]
