"""The console's pure parts: CSRF comparison, cookies, localhost, language choice, plain words, SVG escaping."""

from __future__ import annotations

from retention.console import charts, i18n, words
from retention.console.rules import describe_step, located_errors
from retention.console.sessions import cookie_value, csrf_ok, is_local


def test_csrf_compare_refuses_missing_and_different_values() -> None:
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd") and not csrf_ok("abc", "") and not csrf_ok(None, None) and not csrf_ok("", "")


def test_cookie_parsing_and_localhost() -> None:
    headers = {"cookie": "a=1; rt_console=xyz; rt_console_lang=ru"}
    assert cookie_value(headers, "rt_console") == "xyz" and cookie_value(headers, "nope") is None
    assert cookie_value({"Cookie": 'bad"cookie'}, "rt_console") is None
    assert is_local("127.0.0.1:8787") and is_local("localhost") and is_local("[::1]:8787")
    assert not is_local("abc.execute-api.eu-west-1.amazonaws.com") and not is_local(None)
    assert not is_local("localhost.evil.example")


def test_language_from_cookie_then_accept_language() -> None:
    assert i18n.pick(None, "ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert i18n.pick(None, "de-DE,en;q=0.5,ru;q=0.4") == "en"
    assert i18n.pick("en", "ru") == "en" and i18n.pick("xx", None) == "en"
    assert i18n.translator("ru")("Sign in") == "Войти"
    assert i18n.translator("ru")("not enough data yet (n = {n})", n=40) == "пока мало данных (n = 40)"


def test_ab_and_uplift_in_plain_words() -> None:
    t = i18n.translator("en")
    small = {"variants": [{"name": "A", "sent": 40, "converted": 2}, {"name": "B", "sent": 45, "converted": 5}],
             "verdict": "sample_too_small", "winner": None, "comparisons": []}
    assert words.ab_words(small, t) == "not enough data yet (n = 40)"
    win = {"variants": [{"name": "A", "sent": 2000, "converted": 100}, {"name": "B", "sent": 2000, "converted": 142}],
           "verdict": "winner", "winner": "B",
           "comparisons": [{"a": "B", "b": "A", "diff": 0.021, "p_value": 0.045, "significant": True}]}
    assert words.ab_words(win, t) == "B wins: +2.1 pp conversion, 96 % sure"
    none = {**win, "verdict": "no_difference_yet", "winner": None,
            "comparisons": [{"a": "B", "b": "A", "diff": 0.004, "p_value": 0.51}]}
    assert words.ab_words(none, t) == "no clear winner yet (+0.4 pp, p = 0.51)"
    up = {"absolute_uplift": 0.03, "p_value": 0.01, "significant": True, "insufficient_data": False}
    assert words.uplift_words(up, {"customers": 500}, 4500, t) == \
        "the journey adds +3.0 pp conversion over the holdout, 99 % sure"
    assert words.uplift_words(up, {"customers": 12}, 4500, t) == "not enough data yet (n = 12)"


def test_charts_escape_labels() -> None:
    svg = str(charts.bars([("<script>", 3), ("b&c", 0)], title="<t>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b&amp;c" in svg and "&lt;t&gt;" in svg
    assert str(charts.bars([])) == "" and str(charts.columns([], ("sent",))) == ""
    cols = str(charts.columns([{"date": "2026-12-01", "sent": 3, "converted": 1}], ("sent", "converted")))
    assert cols.count("<rect") == 2


def test_steps_and_located_errors() -> None:
    t = i18n.translator("en")
    assert describe_step({"wait": "4h"}, t)["label"] == "wait 4h"
    assert describe_step({"wait": {"duration": "8h", "daytime": {"from": "09:00", "to": "21:00"}}}, t)["label"] == \
        "wait 8h (09:00–21:00)"
    assert describe_step({"send": {"channel": "sms", "template": "x"}}, t)["label"] == "send sms: x"
    errors, lines = located_errors("rules/x.yaml:5: steps[0]: bad\nrules/x.yaml:9: other\nno line here")
    assert lines == {5, 9} and errors[2] == {"line": None, "text": "no line here"}


def test_the_condition_builder_makes_the_rule_languages_conditions() -> None:
    import pytest
    from retention.console import builder
    from retention.language.conditions import parse_condition
    form = {"field0": "kpi:orders_count", "op0": "gte", "value0": "2", "field1": "since:last_order_at", "op1": "gt",
            "value1": "180 d", "field2": "", "op2": "eq", "value2": "ignored", "field3": "trait:vip", "op3": "eq",
            "value3": "true", "field4": "consent:email", "op4": "ne", "value4": "refused",
            "field5": "segment", "op5": "not_in", "value5": "lifecycle/fraud", "field6": "trait:email", "op6": "missing"}
    rows = builder.rows_from_form(form)
    assert len(rows) == 6  # the row without a field is left out
    cond = builder.build(rows)
    assert cond == {"all": [{"kpi": "orders_count", "gte": 2}, {"since": "last_order_at", "gt": "180d"},
                            {"trait": "vip", "eq": True}, {"not": {"consent": "email", "state": ["refused"]}},
                            {"not_in_segment": "lifecycle/fraud"}, {"trait": "email", "exists": False}]}
    parse_condition(cond, source="condition")  # the language takes it as it is
    assert builder.build(rows[:1], "any") == {"kpi": "orders_count", "gte": 2}
    assert "any" in builder.build(rows[:2], "any")
    for bad, message in ((("kpi:orders_count", "gte", "many"), "is a number"),
                         (("kpi:orders_count", "contains", "1"), "operator is one of"),
                         (("consent:sms", "eq", "maybe"), "granted, pending"),
                         (("kpi:nope", "eq", "1"), "unknown field"), (("trait:vip", "eq", ""), "value is missing")):
        with pytest.raises(builder.BuilderError, match=message):
            builder.build([bad])
    with pytest.raises(builder.BuilderError):
        builder.build([])


def test_line_chart_escapes_and_draws_one_line_per_key() -> None:
    series = [{"date": "2026-12-01", "a<b>": 1, "c": 0}, {"date": "2026-12-02", "a<b>": 3, "c": 2}]
    svg = str(charts.lines(series, ["a<b>", "c"], title="<t>"))
    assert svg.count("<polyline") == 2 and "a&lt;b&gt; (3)" in svg and "<b>" not in svg
    assert str(charts.lines([], ["a"])) == ""
