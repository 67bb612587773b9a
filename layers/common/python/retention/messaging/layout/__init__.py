"""The one email layout every template's content is wrapped in (see `retention.messaging.layout.wrap`).

The layout is a small Jinja2 file (`email.html`) styled in a `<style>` block; `css-inline` copies the
rules onto the elements as `style=""` attributes, because Gmail's app, Outlook and many webmail
clients drop or ignore `<style>`. The block is kept for what cannot be inlined: the 360 px reflow
(`@media (max-width)`) and the dark-mode palette (`prefers-color-scheme`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DIR = Path(__file__).parent
_TEMPLATE: Any = None

_TEXT = {
    "ru": {
        "unsubscribe": "Отписаться",
        "preferences": "Настроить рассылки",
        "marketing": "Вы получили это письмо, потому что согласились получать новости магазина «{shop}».",
        "transactional": "Это служебное письмо о ваших заказах и учётной записи в магазине «{shop}».",
    },
    "en": {
        "unsubscribe": "Unsubscribe",
        "preferences": "Email preferences",
        "marketing": "You are receiving this email because you agreed to receive news from {shop}.",
        "transactional": "This is a service email about your orders and account at {shop}.",
    },
}


def _template() -> Any:
    global _TEMPLATE
    if _TEMPLATE is None:
        import jinja2

        # Our own file, not a marketer's: a plain autoescaping environment.
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False)
        _TEMPLATE = env.from_string((_DIR / "email.html").read_text(encoding="utf-8"))
        _TEMPLATE.globals = dict(_TEMPLATE.globals)  # a dict, not a ChainMap: each render copies it (faster)
    return _TEMPLATE


def _inline(html: str) -> str:
    import css_inline

    try:
        inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    except TypeError:  # css-inline < 0.12 (the newest with aarch64 Linux wheels) keeps <style> by default
        inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
    return str(inliner.inline(html))


# Per-message values enter the inlined shell as these tokens: the shell (layout + brand + shop) is rendered
# and inlined once per process, so an email costs a few string replacements, not a CSS engine run.
_TOKENS = ("subject", "preheader", "unsubscribe", "preferences", "content")


def _token(name: str) -> str:
    return f"RTLAYOUT{name.upper()}TOKEN"


def _shell(key: str, lang: str, marketing: bool, brand: Mapping[str, Any], shop: Mapping[str, Any]) -> str:
    shell = _SHELLS.get(key)
    if shell is None:
        t = _TEXT[lang]
        html = _template().render(
            lang=lang, subject=_token("subject"), preheader=_token("preheader"), content=_token("content"),
            brand=brand, shop=shop, marketing=marketing, t=t,
            links={"unsubscribe": _token("unsubscribe"), "preferences": _token("preferences")},
            reason=t["marketing" if marketing else "transactional"].format(shop=shop.get("name") or ""),
        )
        shell = _SHELLS[key] = _inline(html)
        if len(_SHELLS) > 64:  # brands change rarely; never let a long-lived process grow without bound
            _SHELLS.pop(next(iter(_SHELLS)))
    return shell


_SHELLS: dict[str, str] = {}


def language(locale: str | None) -> str:
    lang = (locale or "ru").replace("_", "-").split("-")[0].lower()
    return lang if lang in _TEXT else "en"


def wrap(
    content: str,
    *,
    subject: str,
    preheader: str | None,
    locale: str | None,
    marketing: bool,
    brand: Mapping[str, Any],
    shop: Mapping[str, Any],
    links: Mapping[str, Any],
) -> str:
    """A complete HTML document: doctype, `<html lang>`, meta charset/viewport, header with the shop's
    logo or name, the template's content (already rendered and escaped by the sandbox), and a footer
    with the reason for receiving, unsubscribe and preferences links and the shop's legal details."""
    import json
    from html import escape

    lang = language(locale)
    shop_view = {"name": str(shop.get("name") or ""), "url": str(shop.get("url") or "")}
    key = json.dumps([lang, marketing, dict(brand), shop_view], sort_keys=True, default=str)
    html = _shell(key, lang, marketing, brand, shop_view)
    values = {
        "subject": escape(subject, quote=False), "preheader": escape(preheader or "", quote=False),
        "unsubscribe": escape(str(links.get("unsubscribe") or "")),
        "preferences": escape(str(links.get("preferences") or links.get("unsubscribe") or "")),
    }
    for name, value in values.items():
        html = html.replace(_token(name), value)
    return html.replace(_token("content"), content, 1)
