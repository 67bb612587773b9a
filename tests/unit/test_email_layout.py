"""The one email layout, the product-card and button blocks, deep links, and what every library email
must look like (issue: emails a shop would send)."""

import re
from datetime import UTC, datetime

import pytest
from retention.core.config import Brand, Settings
from retention.language import templates
from retention.language.blocks import deep_links, fill_pattern
from retention.language.templates import Template, build_context
from retention.messaging import layout
from retention.messaging.mime import build_email, parse_email, with_display_name

SHOP = {"name": "Ромашка", "url": "https://shop.example"}
LINKS = {"unsubscribe": "https://e.example/u/tok", "preferences": "https://e.example/u/tok?view=preferences"}


def wrap(content="<p>Привет</p>", **kw):
    args = {"subject": "Тема", "preheader": "Прехедер", "locale": "ru", "marketing": True,
            "brand": Brand().model_dump(), "shop": SHOP, "links": LINKS}
    args.update(kw)
    return layout.wrap(content, **args)


def test_layout_is_a_complete_responsive_document():
    page = wrap()
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="ru"' in page and '<meta charset="utf-8">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "max-width: 600px" in page  # the centred container, inlined on the element
    assert "@media only screen and (max-width: 620px)" in page  # reflows at 360 px
    assert "prefers-color-scheme: dark" in page and 'name="color-scheme"' in page
    assert '<td class="content"' in page and "<p>Привет</p>" in page
    assert '<html lang="en"' in wrap(locale="en-US")


def test_styles_are_inlined_for_clients_that_drop_style_tags():
    page = wrap()
    body = page[page.index("<body"):]
    assert re.search(r'<td class="content" style="[^"]*font-family: Arial', body)
    assert re.search(r'<td class="header" style="[^"]*border-bottom: 3px solid #1a56db', body)


def test_brand_colours_logo_and_legal_footer():
    brand = Brand(primary_color="#ff6600", logo_url="https://shop.example/logo.png",
                  legal_name="ООО «Ромашка»", legal_address="Москва, ул. Льва Толстого, 16").model_dump()
    page = wrap(brand=brand)
    assert "#ff6600" in page and "#1a56db" not in page
    assert '<img src="https://shop.example/logo.png" alt="Ромашка"' in page
    assert "ООО «Ромашка», Москва, ул. Льва Толстого, 16" in page


def test_footer_says_why_and_links_unsubscribe_and_preferences_apart():
    page = wrap()
    assert "потому что согласились получать новости магазина «Ромашка»" in page
    assert 'href="https://e.example/u/tok"' in page
    assert 'href="https://e.example/u/tok?view=preferences"' in page
    service = wrap(marketing=False, locale="en")
    assert "service email about your orders" in service
    assert ">Unsubscribe<" not in service and ">Email preferences<" in service


def test_preheader_is_hidden_without_invisible_text_tricks():
    page = wrap(preheader="Скидка <10 %>")
    assert '<div class="preheader" style="display:none;max-height:0;overflow:hidden;mso-hide:all">' \
           "Скидка &lt;10 %&gt;</div>" in page
    flat = page.replace(" ", "")
    assert "font-size:1px" not in flat and "opacity:0" not in flat  # SpamAssassin's FONT_INVIS_* rules


def test_per_message_values_are_escaped_and_the_shell_is_cached():
    page = wrap(subject="<b>x</b>", links={"unsubscribe": 'https://e.example/u/"><script>', "preferences": None})
    assert "<title>&lt;b&gt;x&lt;/b&gt;</title>" in page
    assert "<script>" not in page
    layout._SHELLS.clear()
    wrap()
    wrap(subject="another", preheader="other", links=LINKS)
    assert len(layout._SHELLS) == 1  # one shell per (language, class, brand, shop), whatever the message
    hostile = wrap(shop={"name": "<img src=x onerror=alert(1)>", "url": "https://shop.example"})
    assert "<img src=x" not in hostile


# --- blocks -------------------------------------------------------------------------------------------


def render_html(source: str, locale: str = "ru", **props):
    t = Template.model_validate({"id": "t", "category": "marketing", "default_locale": locale,
                                 "locales": {locale: {"subject": "s", "html": source}}})
    ctx = build_context(customer_id="c1", event_name="Checkout Started", event_properties=props,
                        shop_name="Ромашка", shop_url="https://shop.example", locale=locale,
                        brand={"primary_color": "#ff6600"})
    return templates.render(t, locale, ctx, channel="email").html


CART = [{"product_id": "p1", "name": "Ботинки зимние Arctic", "price": 5990, "quantity": 2,
         "image_url": "https://cdn.example/p1.jpg"},
        {"product_id": "p/2", "name": "Шарф", "price": 1290.5, "url": "https://shop.example/scarf"}]


def test_product_cards_show_image_name_price_quantity_total_and_button():
    html = render_html("{{ product_cards(event.properties.products, quantities=true) }}", products=CART,
                       currency="RUB")
    assert '<img src="https://cdn.example/p1.jpg" alt="Ботинки зимние Arctic"' in html
    assert "2 × 5\u202f990\u00a0₽" in html and "11\u202f980\u00a0₽" in html  # quantity, then the line total
    assert "1\u202f290,50\u00a0₽" in html
    assert 'href="https://shop.example/products/p1"' in html  # the product pattern when the event has no url
    assert 'href="https://shop.example/scarf"' in html  # the event's url wins
    assert "background-color:#ff6600" in html and "Перейти к товару" in html


def test_product_cards_in_english_write_money_the_english_way():
    html = render_html("{{ product_cards(event.properties.products) }}", locale="en",
                       products=[{"name": "Boots", "price": 59.9, "currency": "USD"}])
    assert "$59.90" in html and "View product" in html


def test_product_cards_escape_names_and_drop_unsafe_images():
    html = render_html("{{ product_cards(event.properties.products) }}",
                       products=[{"name": "<script>x</script>", "price": 1, "image_url": "javascript:alert(1)"},
                                 {"price": 2}, "junk"] + [{"name": f"n{i}"} for i in range(20)])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html and "<img" not in html
    assert html.count('class="product"') == 12  # an email is not a catalogue page


def test_product_lines_for_the_text_part():
    t = Template.model_validate({"id": "t", "category": "marketing",
                                 "locales": {"ru": {"subject": "s", "text": "{{ product_lines(event.properties.products, quantities=true) }}"}}})
    ctx = build_context(customer_id="c1", event_properties={"products": CART}, shop_url="https://shop.example")
    text = templates.render(t, "ru", ctx, channel="email").text
    assert "- Ботинки зимние Arctic — 2 × 5\u202f990\u00a0₽ = 11\u202f980\u00a0₽\n  https://shop.example/products/p1" in text


def test_button_block():
    html = render_html('{{ button(links.cart, "Вернуться к корзине") }}')
    assert re.fullmatch(r'<a class="button" href="https://shop.example/cart" style="[^"]*background-color:#ff6600'
                        r'[^"]*">Вернуться к корзине</a>', html.strip())


def test_deep_links_from_patterns_event_properties_or_nothing():
    patterns = Settings().url_patterns.model_dump()
    links = deep_links(patterns, "https://shop.example/", {"order_id": "A 1/2"})
    assert links["order"] == "https://shop.example/orders/A%201%2F2"
    assert links["review"] == "https://shop.example/orders/A%201%2F2/review"
    assert links["cart"] == "https://shop.example/cart"
    assert links["product"] is None  # no product_id: no half link, and never the home page instead
    given = deep_links(patterns, "https://shop.example", {"order_id": "1", "order_url": "https://shop.example/o/1",
                                                          "cart_url": "javascript:x"})
    assert given["order"] == "https://shop.example/o/1" and given["cart"] == "https://shop.example/cart"
    assert fill_pattern("{base}/p/{product_id}", "https://s.example", {"product_id": {"x": 1}}) is None


def test_settings_validate_brand_values():
    with pytest.raises(ValueError):
        Brand(primary_color="red")
    with pytest.raises(ValueError):
        Brand(logo_url="http://insecure.example/logo.png")


# --- sender identity ----------------------------------------------------------------------------------


def test_from_name_is_the_shops_and_reply_to_is_set():
    assert with_display_name("news@shop.example", "Ромашка") == "Ромашка <news@shop.example>"
    assert with_display_name("Shop <news@shop.example>", "Ромашка") == "Shop <news@shop.example>"
    raw = build_email(sender=with_display_name("news@shop.example", "Ромашка"), to="a@example.com", subject="s",
                      html="<p>x</p>", text="x", preheader=None, unsubscribe_url="https://e.example/u/t",
                      unsubscribe_mailto=None, message_id_domain="shop.example",
                      reply_to="care@shop.example", now=datetime(2026, 11, 24, tzinfo=UTC))
    parsed = parse_email(raw)
    assert parsed["headers"]["Reply-To"] == "care@shop.example"
    assert parsed["from"] == "Ромашка <news@shop.example>"


# --- every email of the library -----------------------------------------------------------------------

LIBRARY = None


def library_emails():
    global LIBRARY
    if LIBRARY is None:
        from local.emails import render_all
        LIBRARY = render_all()
    return LIBRARY


def test_every_library_email_is_a_complete_branded_document_in_both_locales():
    emails = library_emails()
    templates_seen = {e.template for e in emails}
    assert len(templates_seen) >= 25 and {e.locale for e in emails} == {"ru", "en"}
    problems = {f"{e.template}.{e.locale}": e.problems for e in emails if e.problems}
    assert problems == {}


def test_the_structural_check_bites():
    from local.emails import Email, structural_problems
    ctx = templates.sample_context("ru")
    good = next(e for e in library_emails() if e.template == "cart-reminder" and e.locale == "ru")
    assert structural_problems(good, ctx) == []
    bare = Email("t", "ru", "marketing", "s", "<p>note</p>", "", b"x")
    assert {"missing doctype", "missing meta viewport", "no content block"} <= set(structural_problems(bare, ctx))
    home = good.html.replace('href="https://shop.example/cart"', 'href="https://shop.example"')
    assert any("bare home page" in p for p in structural_problems(Email("t", "ru", "m", "s", home, "", b"x"), ctx))
    no_alt = good.html.replace('alt="Кроссовки беговые"', 'alt=""')
    assert any("without alt" in p for p in structural_problems(Email("t", "ru", "m", "s", no_alt, "", b"x"), ctx))
    big = Email("t", "ru", "m", "s", good.html, "", b"x" * 100_001)
    assert any("bytes" in p for p in structural_problems(big, ctx))


def test_cart_reminder_shows_cards_with_quantities_and_a_cart_button():
    email = next(e for e in library_emails() if e.template == "cart-reminder" and e.locale == "ru")
    assert 'alt="Кроссовки беговые"' in email.html and "2 × 645" in email.html
    assert re.search(r'<a class="button" href="https://shop.example/cart"[^>]*>Вернуться к корзине</a>', email.html)


def test_russian_copy_names_the_product_without_declining_it():
    email = next(e for e in library_emails() if e.template == "browse-reminder" and e.locale == "ru")
    assert "присматривались к товару «<strong>Кроссовки беговые</strong>»" in email.html


def test_nps_scale_wraps_and_the_text_part_has_one_link():
    email = next(e for e in library_emails() if e.template == "nps-survey" and e.locale == "ru")
    assert "<table" not in email.html.split('<td class="content"')[1].split('<td class="footer"')[0]
    assert email.text.count("https://") <= 2  # the survey page (and the unsubscribe link), not 11 URLs


@pytest.mark.skipif(not __import__("shutil").which("spamassassin"), reason="make system-deps installs spamassassin")
def test_every_library_email_scores_at_most_one_in_spamassassin():
    from local.emails import spam_scores
    emails = library_emails()
    scores = spam_scores([e.raw for e in emails])
    over = {f"{e.template}.{e.locale}": (s, rules) for e, (s, rules) in zip(emails, scores, strict=True) if s > 1.0}
    assert over == {}
