"""Content blocks a template calls by name: product cards (HTML) and product lines (text), and the deep
links the copy promises (cart, order, product, review) built from the shop's URL patterns.

    {{ product_cards(event.properties.products, quantities=true) }}     (html part)
    {{ product_lines(event.properties.products) }}                      (text part)
    {% if links.cart %}<a class="button" href="{{ links.cart }}">…</a>{% endif %}

The cards are written here once, escaped, so every template shows products the same way: image (alt =
the product's name), name, price as the locale writes it (`5 990 ₽`, `$59.90`), quantity and line
total for a cart or an order, and a button to the product.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import jinja2
import markupsafe

from retention.language.urls import DEFAULT_URL_PATTERNS as DEFAULT_URL_PATTERNS  # re-exported

MAX_PRODUCTS = 12  # an email is not a catalogue page; more cards only push the call to action down
_NAME = re.compile(r"\{(\w+)\}")

# Inline styles (not classes): these blocks must look right in clients that drop <style>.
_BUTTON = ('<a class="button" href="{{ url }}" style="display:inline-block;padding:{{ pad }};background-color:{{ bg }};'
           'color:{{ fg }};font-family:Arial,Helvetica,sans-serif;font-size:{{ size }};font-weight:bold;'
           'text-decoration:none;border-radius:6px">{{ label }}</a>')
_CARD = """\
<table role="presentation" class="products" width="100%" cellpadding="0" cellspacing="0" border="0" \
style="width:100%;border-collapse:collapse;margin:0 0 16px 0">
{%- for p in products %}
<tr class="product">
{%- if p.image %}<td class="product-image" width="120" style="width:120px;padding:12px 0;\
border-bottom:1px solid #e6e6e6;vertical-align:top"><a href="{{ p.url }}"><img src="{{ p.image }}" alt="{{ p.name }}" \
width="104" style="display:block;width:104px;height:auto;border:0;border-radius:4px"></a></td>{% endif %}
<td class="product-body" style="padding:12px 0;border-bottom:1px solid #e6e6e6;vertical-align:top">\
<a class="product-name" href="{{ p.url }}" style="font-weight:bold;color:{{ text }};text-decoration:none">\
{{ p.name }}</a>
{%- if p.meta %}<div class="product-meta" style="color:#555555;font-size:14px">{{ p.meta }}</div>{% endif %}
{%- if p.price %}<div class="product-price" style="margin:4px 0 8px 0"><strong>{{ p.price }}</strong></div>{% endif %}
{{ button(p.url, cta, small=True) }}</td>
</tr>
{%- endfor %}
</table>"""

_TEMPLATES: dict[str, Any] = {}
_CTA = {"ru": "Перейти к товару", "en": "View product"}


def _lang(locale: Any) -> str:
    return str(locale or "ru").replace("_", "-").split("-")[0].lower()


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def fill_pattern(pattern: str, base: str, values: Mapping[str, Any]) -> str | None:
    """`{base}/orders/{order_id}` with the values given, or None when one is missing (never a half link)."""
    out: list[str] = []
    pos = 0
    for match in _NAME.finditer(pattern):
        name = match.group(1)
        value = base.rstrip("/") if name == "base" else values.get(name)
        if value is None or value == "" or isinstance(value, dict | list):
            return None
        out.append(pattern[pos:match.start()])
        out.append(str(value) if name == "base" else _quote(str(value)))
        pos = match.end()
    out.append(pattern[pos:])
    return "".join(out)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def deep_links(patterns: Mapping[str, str] | None, base: str, props: Mapping[str, Any]) -> dict[str, str | None]:
    """The links the copy promises; an event property (`cart_url`, `order_url`, `review_url`, a product's
    `url`) wins over the pattern. A link that cannot be built is None: the template then does not offer
    it, rather than sending the customer to the home page for a specific promise."""
    patterns = patterns or {}
    out: dict[str, str | None] = {}
    for kind, prop in (("cart", "cart_url"), ("order", "order_url"), ("product", "url"), ("review", "review_url"),
                       ("shop_review", "shop_review_url")):
        given = props.get(prop)
        if isinstance(given, str) and given.startswith(("https://", "http://")):
            out[kind] = given
        elif kind in patterns and base:
            out[kind] = fill_pattern(patterns[kind], base, props)
        else:
            out[kind] = None
    return out


def _card_rows(context: Any, items: Any, currency: Any, quantities: bool) -> list[dict[str, Any]]:
    from retention.language.money import format_money

    if not isinstance(items, list | tuple):
        return []
    locale = context.get("locale")
    shop = context.get("shop") or {}
    props = (context.get("event") or {}).get("properties") or {}
    default_currency = currency or props.get("currency") or "RUB"
    base = str(shop.get("url") or "")
    pattern = (shop.get("url_patterns") or {}).get("product")
    rows: list[dict[str, Any]] = []
    for item in items:
        if len(rows) == MAX_PRODUCTS:
            break
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        url = item.get("url") if isinstance(item.get("url"), str) else None
        if not url and pattern and base:
            url = fill_pattern(pattern, base, item)
        code = str(item.get("currency") or default_currency)
        price = _number(item.get("price"))
        qty = _number(item.get("quantity"))
        meta = ""
        price_text = format_money(price, code, locale) if price is not None else ""
        if quantities and qty is not None and qty > 1 and price is not None:
            meta = f"{qty.normalize():f} × {price_text}"
            price_text = format_money(price * qty, code, locale)
        image = item.get("image_url") or item.get("image")
        rows.append({"name": str(item["name"]), "url": url or base, "price": price_text, "meta": meta,
                     "image": image if isinstance(image, str) and image.startswith(("https://", "http://")) else None})
    return rows


def _own(name: str, source: str) -> Any:
    """Our own block templates (not a marketer's): a plain autoescaping environment, compiled once."""
    template = _TEMPLATES.get(name)
    if template is None:
        template = _TEMPLATES[name] = jinja2.Environment(autoescape=True, auto_reload=False).from_string(source)
        template.globals = dict(template.globals)  # a dict, not a ChainMap: each render copies it (faster)
    return template


def _brand(context: Any) -> Mapping[str, Any]:
    shop = context.get("shop") or {}
    brand = shop.get("brand") if isinstance(shop, Mapping) else None
    return brand if isinstance(brand, Mapping) else {}


def _button(brand: Mapping[str, Any], url: Any, label: Any, small: bool = False) -> markupsafe.Markup:
    # the output of an autoescaping render: every value in it was escaped
    return markupsafe.Markup(_own("button", _BUTTON).render(  # noqa: S704
        url=str(url or ""), label=str(label or ""), bg=brand.get("primary_color") or "#1a56db",
        fg=brand.get("button_text_color") or "#ffffff", pad="8px 16px" if small else "12px 24px",
        size="14px" if small else "16px"))


@jinja2.pass_context
def button(context: Any, url: Any, label: Any) -> markupsafe.Markup:
    """A call to action drawn as a button in the shop's colour: `{{ button(links.cart, "Вернуться к корзине") }}`."""
    return _button(_brand(context), url, label)


@jinja2.pass_context
def product_cards(context: Any, items: Any, currency: str | None = None, quantities: bool = False,
                  cta: str | None = None) -> markupsafe.Markup:
    """HTML cards for a list of products (event products, a cart, recommendations)."""
    rows = _card_rows(context, items, currency, quantities)
    if not rows:
        return markupsafe.Markup("")
    brand = _brand(context)
    label = cta or _CTA.get(_lang(context.get("locale")), _CTA["en"])
    return markupsafe.Markup(_own("card", _CARD).render(  # noqa: S704 (autoescaped render)
        products=rows, cta=label, text=brand.get("text_color") or "#1f2328",
        button=lambda url, text, small=False: _button(brand, url, text, small)))


@jinja2.pass_context
def product_lines(context: Any, items: Any, currency: str | None = None, quantities: bool = False) -> str:
    """The text part's version of the cards: one line per product with its price and link."""
    lines = []
    for row in _card_rows(context, items, currency, quantities):
        price = f"{row['meta']} = {row['price']}" if row["meta"] else row["price"]
        line = f"- {row['name']}" + (f" — {price}" if price else "")
        lines.append(line + (f"\n  {row['url']}" if row["url"] else ""))
    return "\n".join(lines)
