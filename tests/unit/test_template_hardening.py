"""Template sandbox hardening (issue 15, items 7 and 11): integer growth is capped before it is computed,
arithmetic counts toward the budget and the clock, one deadline spans a message's parts, and deriving
the text part from HTML is linear."""

from __future__ import annotations

import time

import pytest
from jinja2.exceptions import SecurityError
from retention.language import templates
from retention.language.templates import (
    Template,
    TemplateSecurityError,
    html_to_text,
    parse_template,
    render,
    render_deadline,
    sample_context,
    validate_template,
)

SQUARING = "{% set ns = namespace(a=10 ** 70) %}{% for i in range(18) %}{% set ns.a = ns.a * ns.a %}{% endfor %}x"


def tpl(sms: str) -> Template:
    return parse_template({"id": "t", "category": "transactional", "locales": {"ru": {"sms": sms}}})


@pytest.mark.parametrize("source", [
    SQUARING,
    "{% set a = 10 ** 100 %}{{ a }}",
    "{{ 7 ** 99 * 7 ** 99 }}",
    "{% set ns = namespace(a=2) %}{% for i in range(300) %}{% set ns.a = ns.a + ns.a %}{% endfor %}x",
])
def test_integer_growth_is_refused(source: str) -> None:
    started = time.process_time()
    with pytest.raises(TemplateSecurityError, match="integers"):
        render(tpl(source), "ru", sample_context("ru"))
    assert time.process_time() - started < 1.0
    problems = validate_template(tpl(source))
    assert problems and "integers" in problems[0]


def test_ordinary_arithmetic_still_renders() -> None:
    out = render(tpl("{{ 1290 * 3 - 100 }} {{ 10 ** 6 // 7 }} {{ 2 ** 64 }}"), "ru", sample_context("ru"))
    assert out.sms == f"3770 {10 ** 6 // 7} {2 ** 64}"


def test_arithmetic_spends_the_budget() -> None:
    """An arithmetic-only loop used to spend nothing but its iterations; now each operation counts."""
    source = "{% set ns = namespace(a=0) %}{% for i in range(9000) %}" + "{% set ns.a = ns.a + 1 %}" * 12 + \
        "{% endfor %}x"
    with pytest.raises(TemplateSecurityError, match=r"too costly|took longer"):
        render(tpl(source), "ru", sample_context("ru"))


def test_the_callers_deadline_wins() -> None:
    """A sender with 0.2 s of Lambda time left does not get the full 2 s for a slow template."""
    source = "{% for a in range(9000) %}{% for b in range(9) %}{{ a * b }}{% endfor %}{% endfor %}"
    with render_deadline(0.0), pytest.raises(TemplateSecurityError, match="took longer"):
        render(tpl(source), "ru", sample_context("ru"))


def test_check_int_op_refuses_before_computing() -> None:
    with pytest.raises(SecurityError):
        templates._check_int_op("**", 10, 10 ** 9)  # would take forever if computed
    templates._check_int_op("**", 1, 10 ** 9)
    templates._check_int_op("**", -1, 10 ** 9)


@pytest.mark.parametrize("hostile", [
    '<img alt="x"' * 4000, '<a href="x">' * 20000, "<!--" * 20000, "<style>" * 20000,
    '<div style="display:none">' * 20000, "<" * 100000, "<br" * 30000,
])
def test_html_to_text_is_linear(hostile: str) -> None:
    started = time.process_time()
    html_to_text(hostile)
    assert time.process_time() - started < 1.0  # 265 s for the first one before


def test_html_to_text_keeps_its_readings() -> None:
    assert html_to_text('<p>a<img src="i" alt="Лого"></p><a href="https://x.example/">go</a>') == \
        "a Лого\ngo (https://x.example/)"
    assert html_to_text('<div style="color:red;display: none">hidden</div>shown') == "shown"
    assert html_to_text("<a name=x>no href</a> <!-- open") == "no href <!-- open"  # as before
