from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from retention.core.errors import ValidationError
from retention.language import templates
from retention.language.templates import (
    Rendered,
    Template,
    TemplateRenderError,
    TemplateSecurityError,
    build_context,
    format_date,
    format_money,
    html_to_text,
    load_templates_dir,
    parse_template,
    plural,
    render,
    sample_context,
    validate_template,
)

NNBSP, NBSP = "\u202f", "\u00a0"

CART_YAML = """\
id: cart-reminder
category: marketing
description: first abandoned-cart reminder
locales:
  ru:
    subject: "{{ first_name_or('Здравствуйте') }}, вы забыли {{ event.properties.products|length }} {{ event.properties.products|length|plural('товар', 'товара', 'товаров') }}"
    preheader: "На сумму {{ event.properties.total|money }}"
    html: |
      <html><head><style>p { color: red }</style></head><body>
      <p>Привет, {{ customer.first_name }}!</p>
      <ul>
      {% for p in event.properties.products %}
        <li><a href="{{ p.url }}">{{ p.name }}</a> — {{ p.price|money }} × {{ p.quantity }}</li>
      {% endfor %}
      </ul>
      <p>Итого: {{ event.properties.total|money }}</p>
      <p><a href="{{ links.unsubscribe }}">Отписаться</a></p>
      </body></html>
    sms: "{{ customer.first_name }}, товары ждут в корзине: {{ links.shop }}/cart"
  en:
    subject: "{{ first_name_or('Hi') }}, you left {{ event.properties.products|length }} {{ event.properties.products|length|plural('item', 'items') }} behind"
    text: |
      Total: {{ event.properties.total|money(event.properties.currency) }}
      Unsubscribe: {{ links.unsubscribe }}
"""

NPS_YAML = """\
id: nps-survey
category: transactional
locales:
  ru:
    sms: "{{ customer.first_name }}, оцените заказ {{ event.properties.order_id }} от 0 до 10: {{ links.nps_short }}"
"""


@pytest.fixture
def library(tmp_path: Path) -> Path:
    (tmp_path / "cart-reminder.yaml").write_text(CART_YAML, encoding="utf-8")
    (tmp_path / "nps-survey.yml").write_text(NPS_YAML, encoding="utf-8")
    (tmp_path / "README.md").write_text("not a template", encoding="utf-8")
    return tmp_path


@pytest.fixture
def cart(library: Path) -> Template:
    return load_templates_dir(library)["cart-reminder"]


def tpl(locales: dict, *, category: str = "transactional", template_id: str = "t") -> Template:
    return parse_template({"id": template_id, "category": category, "locales": locales})


# --- loading and the model ------------------------------------------------------------------------


def test_load_templates_dir(library):
    loaded = load_templates_dir(library)
    assert sorted(loaded) == ["cart-reminder", "nps-survey"]
    cart = loaded["cart-reminder"]
    assert cart.category == "marketing"
    assert cart.default_locale == "ru"
    assert sorted(cart.locales) == ["en", "ru"]
    assert cart.channels("ru") == {"email", "sms"}
    assert cart.channels("en") == {"email"}
    assert loaded["nps-survey"].channels() == {"sms"}
    assert validate_template(cart) == []
    assert validate_template(loaded["nps-survey"]) == []


def test_duplicate_ids_are_refused(library):
    (library / "copy.yaml").write_text(NPS_YAML, encoding="utf-8")
    with pytest.raises(ValidationError, match="defined twice"):
        load_templates_dir(library)


def test_invalid_yaml_names_the_file(library):
    (library / "broken.yaml").write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"broken\.yaml"):
        load_templates_dir(library)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"id": "x", "locales": {"ru": {"sms": "hi"}}, "channel": "sms"}, "channel"),
        ({"id": "x", "locales": {"ru": {"sms": "hi", "body": "?"}}}, "body"),
        ({"id": "x", "locales": {"ru": {"html": "<p>hi</p>"}}}, "needs a subject"),
        ({"id": "x", "locales": {"ru": {"subject": "hi"}}}, "needs html or text"),
        ({"id": "x", "locales": {"ru": {"preheader": "hi", "sms": "x"}}}, "preheader"),
        ({"id": "x", "locales": {"ru": {}}}, "nothing to send"),
        ({"id": "x", "locales": {}}, "locales"),
        ({"id": "x", "locales": {"en": {"sms": "hi"}}}, "default_locale"),
        ({"id": "Bad Id", "locales": {"ru": {"sms": "hi"}}}, "id"),
        ({"id": "x", "category": "promo", "locales": {"ru": {"sms": "hi"}}}, "category"),
        ({"id": "x", "locales": {"russian": {"sms": "hi"}}}, "locale"),
        ({"id": "x", "locales": {"ru": {"sms": "x" * (100 * 1024 + 1)}}}, "100 KB"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_invalid_documents(document, message):
    with pytest.raises(ValidationError, match=message):
        parse_template(document)
    assert any(message in error for error in validate_template(document)) if isinstance(document, dict) else True


def test_default_category_is_marketing():
    assert tpl({"ru": {"sms": "x"}}, category="marketing").category == "marketing"
    assert parse_template({"id": "x", "locales": {"ru": {"sms": "x"}}}).category == "marketing"


# --- rendering ----------------------------------------------------------------------------------


def test_render_ru(cart):
    out = render(cart, "ru", sample_context("ru"))
    assert isinstance(out, Rendered)
    assert out.subject == "Анна, вы забыли 2 товара"
    assert out.preheader == f"На сумму 2{NNBSP}580{NBSP}₽"
    assert '<a href="https://shop.example/p/sku-1001">Кроссовки беговые</a>' in out.html
    assert f"1{NNBSP}290{NBSP}₽ × 1" in out.html
    assert out.sms == "Анна, товары ждут в корзине: https://shop.example/cart"
    # text derived from html: tags gone, link URLs kept, the <head> dropped
    assert out.text == (
        "Привет, Анна!\n\n"
        f"- Кроссовки беговые (https://shop.example/p/sku-1001) — 1{NNBSP}290{NBSP}₽ × 1\n"
        f"- Носки спортивные (https://shop.example/p/sku-2002) — 645{NBSP}₽ × 2\n\n"
        f"Итого: 2{NNBSP}580{NBSP}₽\n\n"
        "Отписаться (https://engine.example/u/sample-token)"
    )


def test_render_en_and_locale_fallback(cart):
    out = render(cart, "en-GB", sample_context("en"))
    assert out.subject == "Anna, you left 2 items behind"
    assert out.text == "Total: ₽2,580\nUnsubscribe: https://engine.example/u/sample-token"
    assert out.html is None and out.sms is None and out.preheader is None
    # no German content: the default locale (ru) is used, and its formatting
    fallback = render(cart, "de", sample_context("de"))
    assert fallback.preheader == f"На сумму 2{NNBSP}580{NBSP}₽"
    assert render(cart, None, sample_context("ru")).subject == "Анна, вы забыли 2 товара"


def test_render_one_channel_only(cart):
    sms_only = render(cart, "ru", sample_context("ru"), channel="sms")
    assert sms_only == Rendered(sms="Анна, товары ждут в корзине: https://shop.example/cart")
    email_only = render(cart, "ru", sample_context("ru"), channel="email")
    assert email_only.sms is None
    assert email_only.subject == "Анна, вы забыли 2 товара"


def test_autoescape_is_for_html_only():
    t = tpl(
        {
            "ru": {
                "subject": "{{ customer.first_name }}",
                "html": "<p>{{ customer.first_name }}</p>",
                "text": "{{ customer.first_name }}",
                "sms": "{{ customer.first_name }}",
            }
        }
    )
    ctx = build_context(customer_id="c1", traits={"first_name": "<b>Ann & Co</b>"})
    out = render(t, "ru", ctx)
    assert out.html == "<p>&lt;b&gt;Ann &amp; Co&lt;/b&gt;</p>"
    assert out.subject == "<b>Ann & Co</b>"
    assert out.text == "<b>Ann & Co</b>"
    assert out.sms == "<b>Ann & Co</b>"


def test_subject_and_preheader_lose_cr_lf():
    t = tpl(
        {"ru": {"subject": "Hi\r\n{{ customer.first_name }}\x00!", "preheader": "a\nb\tc", "text": "line 1\nline 2"}}
    )
    ctx = build_context(customer_id="c1", traits={"first_name": "Ann\r\nBcc: victim@example.com"})
    out = render(t, "ru", ctx)
    assert out.subject == "Hi Ann Bcc: victim@example.com !"
    assert out.preheader == "a b c"
    assert out.text == "line 1\nline 2"


def test_missing_first_name_prints_nothing_or_the_default():
    t = tpl(
        {
            "ru": {
                "sms": "[{{ customer.first_name }}] {{ first_name_or('друг') }} {{ customer|first_name_or('гость') }}"
                " {{ customer.first_name|first_name_or('x') }}"
            }
        }
    )
    assert render(t, "ru", build_context(customer_id="c1")).sms == "[] друг гость x"
    named = build_context(customer_id="c1", traits={"firstName": "Олег"})
    assert render(t, "ru", named).sms == "[Олег] Олег Олег Олег"


def test_strict_undefined_fails_the_render():
    t = tpl({"ru": {"sms": "line one\n{{ event.properties.cart_token }}"}})
    with pytest.raises(TemplateRenderError) as err:
        render(t, "ru", build_context(customer_id="c1"))
    assert "t/ru/sms: line 2: undefined variable" in err.value.message
    assert "cart_token" in err.value.message
    assert isinstance(err.value, ValidationError)


def test_default_and_defined_still_work_with_strict_undefined():
    t = tpl(
        {
            "ru": {
                "sms": "{{ event.properties.x|default('нет') }} {{ 'да' if event.properties.y is defined else 'нет' }}"
            }
        }
    )
    assert render(t, "ru", build_context(customer_id="c1")).sms == "нет нет"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ customer.traits.__class__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{% set x = customer.traits.update({'a': 1}) %}",
        "{{ money.__globals__ }}",
    ],
)
def test_template_injection_is_a_security_error(source):
    t = tpl({"ru": {"sms": source}})
    with pytest.raises(TemplateSecurityError) as err:
        render(t, "ru", sample_context("ru"))
    assert err.value.code == "template_security_error"
    assert isinstance(err.value, ValidationError)
    errors = validate_template(t)
    assert len(errors) == 1 and errors[0].startswith("locales.ru.sms: line 1:")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", "too costly"),
        ("{% for c in 'x' * 5000 %}{% for d in 'x' * 5000 %}{% endfor %}{% endfor %}", "too costly"),
        ("{% macro r(n) %}{% if n %}{{ r(n - 1) }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(40) }}",
         r"too costly|took longer"),  # a loaded machine may reach the clock before the count
        ("{{ range(100000)|list|length }}", "range"),
        ("{{ 'x' * 100000000 }}", "grew past"),
        ("{{ [0] * 100000000 }}", "grew past"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "grew past",
        ),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "grew past",
        ),
        ("{{ 2 ** 10000000 }}", "exponent"),
        ("{{ '%999999999d'|format(1) }}", "format widths"),
        ("{{ '%999999999d' % 1 }}", "format widths"),
        ("{{ '{:>999999999}'.format(1) }}", "format widths"),
        ("{{ '{:>{}}'.format(1, 999999999) }}", "format widths"),
        ("{{ 'x'.ljust(999999999) }}", "widths"),
        ("{{ 'x'|center(999999999) }}", "widths"),
        ("{{ 'a\nb'|indent(999999999) }}", "widths"),
        ("{{ [1]|slice(999999999)|list }}", "widths"),
        ("{{ ('x' * 100000)|replace('x', 'y' * 1000) }}", "replace"),
        ("{{ (['y' * 100000] * 100)|join }}", "join"),
    ],
)
def test_resource_caps(source, message):
    t = tpl({"ru": {"sms": source}})
    if message == "too costly":  # on a loaded machine the 2 s render cap can fire before the operation count
        message = "too costly|took longer than"
    with pytest.raises(TemplateSecurityError, match=message):
        render(t, "ru", sample_context("ru"))


def test_render_time_cap_on_the_injected_clock(ticks):
    """The 2 s cap is checked every 256 operations: a clock that jumps 0.5 s per look stops a loop that is
    otherwise within every budget (without a real 2 s wait, and without racing the machine's load)."""
    t = tpl({"ru": {"sms": "{% for i in range(5000) %}{% endfor %}ok"}})
    real = ticks.__call__

    def jumping() -> float:
        ticks.advance(0.5)
        return real()

    from retention.core import clock
    clock.set_monotonic(jumping)
    with pytest.raises(TemplateSecurityError, match="took longer than 2 s"):
        render(t, "ru", sample_context("ru"))
    clock.set_monotonic(ticks)
    assert render(t, "ru", sample_context("ru")).sms == "ok"


def test_recursion_is_a_render_error():
    t = tpl({"ru": {"sms": "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(1) }}"}})
    with pytest.raises(TemplateRenderError, match="recursion"):
        render(t, "ru", sample_context("ru"))


def test_reasonable_templates_stay_within_the_caps():
    source = (
        "{% for p in event.properties.products %}{{ loop.index }}/{{ loop.length }} {{ p.name|upper }};{% endfor %}"
        " {{ '%.2f'|format(3.14159) }} {{ '{:,}'.format(1234567) }} {{ '-' * 10 }}"
        " {% for i in range(5000) %}{% endfor %}{{ 'a b'|replace(' ', '_') }} {{ ['x', 'y']|join(', ') }}"
    )
    out = render(tpl({"ru": {"sms": source}}), "ru", sample_context("ru")).sms
    assert out == "1/2 КРОССОВКИ БЕГОВЫЕ;2/2 НОСКИ СПОРТИВНЫЕ; 3.14 1,234,567 ---------- a_b x, y"


def test_output_size_cap():
    t = tpl({"ru": {"subject": "s", "html": "{% for i in range(3000) %}{{ 'x' * 100 }}{% endfor %}"}})
    with pytest.raises(TemplateRenderError, match="larger than"):
        render(t, "ru", sample_context("ru"))
    ok = tpl({"ru": {"subject": "s", "html": "{% for i in range(1000) %}{{ 'x' * 100 }}{% endfor %}"}})
    assert len(render(ok, "ru", sample_context("ru")).html) == 100_000


def test_each_part_is_compiled_once_and_recompiled_when_it_changes():
    first = tpl({"ru": {"sms": "v1 {{ customer.id }}"}}, template_id="cache-probe")
    ctx = build_context(customer_id="c1")
    assert render(first, "ru", ctx).sms == "v1 c1"
    assert render(first, "ru", ctx).sms == "v1 c1"
    keys = [key for key in templates._compiled if key[0] == "cache-probe"]
    assert keys == [("cache-probe", first.digest, "ru", "sms")]
    compiled = templates._compiled[keys[0]]
    render(first, "ru", build_context(customer_id="c2"))
    assert templates._compiled[keys[0]] is compiled
    second = tpl({"ru": {"sms": "v2 {{ customer.id }}"}}, template_id="cache-probe")
    assert second.digest != first.digest
    assert render(second, "ru", ctx).sms == "v2 c1"


# --- validation ---------------------------------------------------------------------------------


def test_validation_reports_undefined_variables_with_their_place():
    t = tpl(
        {
            "ru": {"subject": "Привет", "html": "<p>a</p>\n<p>{{ customer.nmae }}</p>"},
            "en": {"sms": "{{ event.properties.cart_token }}"},
        }
    )
    errors = validate_template(t)
    assert errors == [
        "locales.ru.html: line 2: undefined variable: 'dict object' has no attribute 'nmae'",
        "locales.en.sms: line 1: undefined variable: 'dict object' has no attribute 'cart_token'",
    ]


def test_validation_reports_syntax_errors_with_their_line():
    t = tpl({"ru": {"subject": "ok", "text": "one\ntwo\n{% if customer.id %}unclosed"}})
    errors = validate_template(t)
    assert len(errors) == 1
    assert errors[0].startswith("locales.ru.text: line 3: Unexpected end of template")


def test_validation_of_sms_length():
    t = tpl({"ru": {"sms": "{{ 'Я' * 403 }}"}})
    assert validate_template(t) == ["locales.ru.sms: 7 segments (UCS-2, 403 units) with the sample data; at most 6"]


def test_marketing_email_needs_the_unsubscribe_link():
    body = {"subject": "Привет", "html": "<p>Новинки</p>"}
    assert validate_template(tpl({"ru": body}, category="transactional")) == []
    assert validate_template(tpl({"ru": body}, category="marketing")) == [
        "locales.ru: a marketing email must contain the unsubscribe link {{ links.unsubscribe }} in its html or text"
    ]
    linked = {"subject": "Привет", "html": '<p>Новинки</p><a href="{{ links.unsubscribe }}">Отписаться</a>'}
    assert validate_template(tpl({"ru": linked}, category="marketing")) == []


def test_validation_with_a_custom_context():
    t = tpl({"ru": {"sms": "{{ custom.value }}"}})
    assert validate_template(t) != []
    assert validate_template(t, {"custom": {"value": "ok"}}) == []


def test_empty_subject_is_reported():
    t = tpl({"ru": {"subject": "{{ '' }}", "text": "x"}})
    assert validate_template(t) == ["locales.ru.subject: renders to an empty subject"]


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1290, "RUB", "ru"), f"1{NNBSP}290{NBSP}₽"),
        ((1290.5, "RUB", "ru"), f"1{NNBSP}290,50{NBSP}₽"),
        (("1234567.456", "rub", "ru"), f"1{NNBSP}234{NNBSP}567,46{NBSP}₽"),
        ((990, "RUB", "ru"), f"990{NBSP}₽"),
        ((0, "RUB", "ru"), f"0{NBSP}₽"),
        ((-1500, "RUB", "ru"), f"-1{NNBSP}500{NBSP}₽"),
        ((12.9, "USD", "en"), "$12.90"),
        ((1290, "USD", "en"), "$1,290"),
        ((1234567.5, "EUR", "en"), "€1,234,567.50"),
        ((12.9, "USD", "ru"), f"12,90{NBSP}$"),
        ((100, "CHF", "en"), f"CHF{NBSP}100"),
        ((100, "CHF", "ru"), f"100{NBSP}CHF"),
        ((None, "RUB", "ru"), ""),
    ],
)
def test_money(args, expected):
    assert format_money(*args) == expected


def test_money_refuses_non_numbers():
    with pytest.raises(ValueError, match="not a number"):
        format_money("abc")


def test_money_filter_uses_the_render_locale():
    t = tpl(
        {"ru": {"sms": "{{ 1290|money }} {{ money(12.9, 'USD', 'en') }}"}, "en": {"sms": "{{ 1290|money('USD') }}"}}
    )
    assert render(t, "ru", sample_context("ru")).sms == f"1{NNBSP}290{NBSP}₽ $12.90"
    assert render(t, "en", sample_context("en")).sms == "$1,290"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("2026-11-24",), "24 ноября 2026"),
        (("2026-11-24", "long", "en"), "November 24, 2026"),
        (("2026-11-24", "short", "ru"), "24.11.2026"),
        (("2026-11-24", "short", "en"), "Nov 24, 2026"),
        (("2026-05-01", "long", "ru"), "1 мая 2026"),
        (("2026-03-08", "day_month", "ru"), "8 марта"),
        (("2026-08-31", "day_month", "en"), "August 31"),
        ((date(2026, 1, 2), "long", "ru"), "2 января 2026"),
        ((datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "long", "ru"), "31 декабря 2026"),
        (("2026-11-24T21:30:00Z", "long", "ru", "Europe/Moscow"), "25 ноября 2026"),
        (("2026-11-24T21:30:00.123456Z", "datetime", "ru", "Europe/Moscow"), "25 ноября 2026, 00:30"),
        (("2026-11-24T21:30:00+00:00", "datetime", "en"), "November 24, 2026, 9:30 PM"),
        (("2026-11-24T00:05:00Z", "time", "en"), "12:05 AM"),
        ((datetime(2026, 11, 24, 12, 0), "time", "ru", "Asia/Vladivostok"), "22:00"),
        ((1795507200, "long", "en"), "November 24, 2026"),
        ((None,), ""),
    ],
)
def test_date(args, expected):
    assert format_date(*args) == expected


def test_all_russian_months_are_genitive():
    months = [format_date(date(2026, m, 1), "day_month", "ru").split()[1] for m in range(1, 13)]
    assert months == [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("not a date",),
        ("2026-11-24", "weird"),
        ("2026-11-24", "time"),
        ("2026-11-24T10:00:00Z", "long", "ru", "Mars/Olympus"),
    ],
)
def test_date_errors(args):
    with pytest.raises(ValueError, match="date:"):
        format_date(*args)


def test_date_filter_uses_the_customer_timezone():
    t = tpl({"ru": {"sms": "{{ '2026-11-24T21:30:00Z'|date }} | {{ '2026-11-24T21:30:00Z'|date('long', tz='UTC') }}"}})
    moscow = build_context(customer_id="c1", traits={"timezone": "Europe/Moscow"})
    assert render(t, "ru", moscow).sms == "25 ноября 2026 | 24 ноября 2026"
    broken = build_context(customer_id="c1", traits={"timezone": "Nowhere/Land"})
    assert render(t, "ru", broken).sms == "24 ноября 2026 | 24 ноября 2026"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "товаров"),
        (1, "товар"),
        (2, "товара"),
        (4, "товара"),
        (5, "товаров"),
        (11, "товаров"),
        (12, "товаров"),
        (14, "товаров"),
        (21, "товар"),
        (22, "товара"),
        (25, "товаров"),
        (101, "товар"),
        (111, "товаров"),
        (1.5, "товара"),
        (-1, "товар"),
        ("3", "товара"),
    ],
)
def test_russian_plural(n, expected):
    assert plural(n, "товар", "товара", "товаров") == expected


def test_english_plural_fallback():
    assert plural(1, "item", "items") == "item"
    assert plural(2, "item", "items") == "items"
    assert plural(0, "item", "items") == "items"
    assert plural(21, "item", "items") == "items"
    assert plural(5, "item") == "item"


def test_plural_in_templates():
    t = tpl(
        {
            "ru": {
                "sms": "{% for n in [1, 2, 5, 11, 21] %}{{ n }} {{ n|plural('товар', 'товара', 'товаров') }}; {% endfor %}"
                "{{ plural(3, 'item', 'items') }}"
            }
        }
    )
    assert render(t, "ru", sample_context("ru")).sms == "1 товар; 2 товара; 5 товаров; 11 товаров; 21 товар; items"


def test_html_to_text():
    html = (
        "<html><head><title>T</title><style>.a{}</style></head><body>"
        '<div style="display:none">preheader</div><!-- comment -->'
        "<h1>Заголовок</h1><p>Первый&nbsp;абзац,\n   продолжение &amp; конец.</p>"
        '<p><a href="https://shop.example/?a=1&amp;b=2">Магазин</a> '
        '<a href="https://shop.example/x">https://shop.example/x</a> '
        '<a href="mailto:help@shop.example">Поддержка</a> <a href="#top">Наверх</a> '
        '<a href="https://shop.example/img"><img src="i.png" alt="Логотип"></a></p>'
        "<table><tr><td>A</td><td>B</td></tr></table>Строка<br>Ещё<hr><script>alert(1)</script>"
        "</body></html>"
    )
    assert html_to_text(html) == (
        "Заголовок\n\nПервый\u00a0абзац, продолжение & конец.\n\n"
        "Магазин (https://shop.example/?a=1&b=2) https://shop.example/x Поддержка Наверх "
        "Логотип (https://shop.example/img)\n\n"
        "A B\n\nСтрока\nЕщё\n----------"
    )


# --- the context ----------------------------------------------------------------------------------


def test_build_context_shape():
    ctx = build_context(
        customer_id="c1",
        traits={"firstName": "Анна", "email": "anna@example.com", "phone": "+79161234567", "vip": True},
        kpis={"orders_count": 2},
        event_name="Order Completed",
        event_properties={"order_id": "1"},
        shop_name="Ромашка",
        shop_url="https://shop.example",
        unsubscribe_url="https://e.example/u/t",
        preferences_url="https://e.example/p/t",
        nps_urls={str(n): f"https://e.example/nps/t?score={n}" for n in range(11)},
        nps_short_url="https://e.example/nps/t",
        coupon="CART-ABC123",
        rule="abandoned-cart",
        step=2,
        variant="b",
        locale="en",
    )
    assert str(ctx.pop("coupon")) == "CART-ABC123"  # a legacy code: printed as is, no discount or expiry
    assert ctx.pop("trigger") == {"order_id": "1"}
    assert ctx.pop("recommend")("similar", product="x") == []  # no recommender: an empty block
    assert ctx == {
        "customer": {
            "id": "c1",
            "first_name": "Анна",
            "email": "anna@example.com",
            "phone": "+79161234567",
            "traits": {"firstName": "Анна", "email": "anna@example.com", "phone": "+79161234567", "vip": True},
        },
        "kpis": {"orders_count": 2},
        "event": {"name": "Order Completed", "properties": {"order_id": "1"}},
        "shop": {"name": "Ромашка", "url": "https://shop.example", "brand": {},
                 "url_patterns": {"cart": "{base}/cart", "order": "{base}/orders/{order_id}",
                                  "product": "{base}/products/{product_id}",
                                  "review": "{base}/orders/{order_id}/review",
                                  "shop_review": "{base}/reviews"}},
        "links": {
            # deep links from the default patterns: the order's (order_id is known), never a product's
            "cart": "https://shop.example/cart",
            "order": "https://shop.example/orders/1",
            "product": None,
            "review": "https://shop.example/orders/1/review",
            "shop_review": "https://shop.example/reviews",
            "unsubscribe": "https://e.example/u/t",
            "preferences": "https://e.example/p/t",
            "nps": {n: f"https://e.example/nps/t?score={n}" for n in range(11)},
            "nps_short": "https://e.example/nps/t",
            "shop": "https://shop.example",
            "confirm": "",
            "survey": {},
        },
        "message": {"rule": "abandoned-cart", "step": 2, "variant": "b"},
        "locale": "en",
    }


def test_build_context_defaults_keep_the_shape():
    ctx = build_context(customer_id="c1", traits={"name": "Пётр Иванов"})
    assert ctx["customer"] == {
        "id": "c1",
        "first_name": "Пётр",
        "email": None,
        "phone": None,
        "traits": {"name": "Пётр Иванов"},
    }
    assert ctx["event"] == {"name": None, "properties": {}}
    assert ctx["links"]["nps"] == {}
    assert ctx["coupon"] is None
    assert ctx["locale"] == "ru"


def test_sample_context():
    ru = sample_context("ru")
    assert ru["customer"]["first_name"] == "Анна"
    assert len(ru["event"]["properties"]["products"]) == 2
    assert ru["event"]["name"] == "Order Completed"
    assert sorted(ru["links"]["nps"]) == list(range(11))
    assert ru["kpis"]["orders_count"] == 3
    assert sample_context("en")["customer"]["first_name"] == "Anna"
    t = tpl({"ru": {"sms": "{{ links.nps[10] }} {{ kpis.orders_count }} {{ event.properties.products[1].quantity }}"}})
    assert render(t, "ru", ru).sms == "https://engine.example/nps/sample-token?score=10 3 2"


def test_nps_score_links_by_int_key():
    ctx = build_context(customer_id="c1", nps_urls={n: f"u{n}" for n in range(11)})
    t = tpl({"ru": {"sms": "{% for n in range(11) %}{{ links.nps[n] }} {% endfor %}"}})
    assert render(t, "ru", ctx).sms == " ".join(f"u{n}" for n in range(11))


def test_dates_from_the_clock_are_accepted():
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=3)))
    t = tpl({"ru": {"sms": "{{ when|date('datetime') }}"}})
    ctx = {**build_context(customer_id="c1"), "when": moment}
    assert render(t, "ru", ctx).sms == "24 ноября 2026, 10:00"


def test_survey_links_sign_any_reason_the_template_names() -> None:
    """Issue 14: one signed answer link per reason (`links.survey.<reason>`), built when the template asks."""
    asked: list[str] = []

    def url(reason: str) -> str:
        asked.append(reason)
        return f"https://e.example/survey/{reason}-token"

    ctx = build_context(customer_id="c1", survey_url=url, confirm_url="https://e.example/optin/t")
    template = parse_template({"id": "s", "category": "marketing", "locales": {"ru": {
        "subject": "x", "text": "{{ links.survey.price }} {{ links.survey['not_found'] }} {{ links.confirm }}"}}})
    out = render(template, "ru", ctx)
    assert out.text == ("https://e.example/survey/price-token https://e.example/survey/not_found-token "
                        "https://e.example/optin/t")
    assert asked == ["price", "not_found"]
    bad = parse_template({"id": "s", "category": "marketing", "locales": {"ru": {
        "subject": "x", "text": "{{ links.survey['Bad Reason'] }}"}}})
    with pytest.raises(TemplateRenderError):
        render(bad, "ru", ctx)
