"""`make emails`: every template of the library in both locales, rendered as the customer sees it.

For each template and locale: the full HTML (the layout around the template's content, sample data),
the raw MIME message as SES would get it, PNG screenshots at 600 and 360 px in headless Chromium, and
a SpamAssassin score with its local tests (`spamassassin -L`, no network). A summary table goes to
`build/emails/index.md` and `index.html`; the exit status is non-zero when an email fails a
structural check or scores above the limit.

    python -m local.emails [--out build/emails] [--no-screenshots] [--no-spam] [--limit 1.0]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from retention.core.config import Settings
from retention.core.yamlio import scenario_texts
from retention.language import templates
from retention.language.templates import Template
from retention.messaging import layout
from retention.messaging.mime import build_email, with_display_name

LOCALES = ("ru", "en")
SPAM_LIMIT = 1.0
MAX_BYTES = 100_000
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@dataclass
class Email:
    template: str
    locale: str
    category: str
    subject: str
    html: str
    text: str
    raw: bytes
    problems: list[str] = field(default_factory=list)
    spam: float | None = None
    spam_rules: str = ""


def render_all(folder: Path | None = None, settings: Settings | None = None) -> list[Email]:
    """Every template × locale rendered with the sample context, wrapped and built as MIME."""
    settings = settings or Settings(shop_name="Ромашка", shop_url=templates.SAMPLE_BASE_URL)
    out = []
    for text in scenario_texts("templates", folder).values():
        template = Template.model_validate(yaml.safe_load(text))
        for locale in LOCALES:
            if locale not in template.locales:
                continue
            ctx = templates.sample_context(locale)
            ctx["shop"]["brand"] = settings.brand.model_dump()
            rendered = templates.render(template, locale, ctx, channel="email")
            if not rendered.subject or rendered.html is None:
                continue  # an SMS-only template
            marketing = template.category != "transactional"
            page = layout.wrap(rendered.html, subject=rendered.subject, preheader=rendered.preheader,
                               locale=locale, marketing=marketing, brand=settings.brand.model_dump(),
                               shop=ctx["shop"], links=ctx["links"])
            raw = build_email(sender=with_display_name("news@shop.example", ctx["shop"]["name"]),
                              to="anna@example.com", subject=rendered.subject, html=page, text=rendered.text,
                              preheader=None, unsubscribe_url=ctx["links"]["unsubscribe"],
                              unsubscribe_mailto="unsubscribe@shop.example", message_id_domain="shop.example",
                              now=NOW)
            email = Email(template.id, locale, template.category, rendered.subject, page, rendered.text or "", raw)
            email.problems = structural_problems(email, ctx)
            out.append(email)
    return out


_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r'\balt="([^"]*)"', re.I)
_ANCHOR = re.compile(r'<a\b[^>]*\bhref="([^"]*)"[^>]*>(.*?)</a>', re.I | re.S)
# A link to the home page is honest only when it says it goes to the shop; a specific promise ("see the
# selection", "back to your cart") must lead to that page, not silently to the home page.
SHOP_LABELS = {
    "Перейти в магазин", "В магазин", "Visit the shop", "Go to the shop",
    # shop-wide actions: the whole shop is the page they promise
    "Выбрать покупку", "Choose something", "Выбрать подарок себе", "Pick a present", "Выбрать подарок для себя",
    "Pick something for yourself", "Воспользоваться подарком", "Use the gift", "Что нового в магазине",
    "What is new in the shop",
}
_CONTENT = re.compile(r'<td class="content"[^>]*>(.*?)</td>\s*</tr>\s*<tr>\s*<td class="footer"', re.S)


def structural_problems(email: Email, ctx: dict[str, Any]) -> list[str]:
    """What makes an email look like a note rather than a shop's email, or hurts its delivery."""
    page, problems = email.html, []
    lang = layout.language(email.locale)
    checks = {
        "doctype": page.lstrip().lower().startswith("<!doctype html>"),
        f'<html lang="{lang}">': f'<html lang="{lang}"' in page,
        "meta charset": '<meta charset="utf-8">' in page,
        "meta viewport": 'name="viewport"' in page,
        "600 px container": "max-width: 600px" in page,
        "reflow at 360 px": "@media only screen and (max-width: 620px)" in page,
        "footer reason": ("agreed to receive" in page or "согласились получать" in page or "service email" in page
                          or "служебное письмо" in page),
    }
    problems += [f"missing {name}" for name, ok in checks.items() if not ok]
    for img in _IMG.findall(page):
        alt = _ALT.search(img)
        if not alt or not alt.group(1).strip():
            problems.append(f"image without alt: {img[:80]}")
    if len(email.raw) > MAX_BYTES:
        problems.append(f"message is {len(email.raw)} bytes (> {MAX_BYTES})")
    content = _CONTENT.search(page)
    home = {ctx["shop"]["url"].rstrip("/"), ctx["shop"]["url"].rstrip("/") + "/"}
    if content is None:
        problems.append("no content block")
    else:
        for href, label in _ANCHOR.findall(content.group(1)):
            text = html.unescape(re.sub(r"<[^>]+>", "", label)).strip()
            if html.unescape(href) in home and text not in SHOP_LABELS:
                problems.append(f"'{text}' promises a page but links to the bare home page")
    if "font-size:1px" in page.replace(" ", "") or "opacity:0" in page.replace(" ", ""):
        problems.append("invisible text (font-size:1px / opacity:0)")
    return problems


def spam_scores(raws: list[bytes]) -> list[tuple[float, str]]:
    """SpamAssassin's score and rules for each message, with its local tests only (no DNS, no network).

    One `spamassassin --mbox` run for all messages: the rule set is compiled once (seconds), not per message."""
    mbox = b"".join(b"From retention@localhost Tue Nov 24 10:00:00 2026\n" + raw.replace(b"\r\n", b"\n").replace(
        b"\nFrom ", b"\n>From ") + b"\n" for raw in raws)
    command = ["spamassassin", "-L", "-t", "--mbox"]  # the Debian package's command
    proc = subprocess.run(command, input=mbox, capture_output=True, timeout=900,  # noqa: S603
                          check=False)
    report = proc.stdout.decode("utf-8", "replace")
    found = re.findall(r"^X-Spam-Status: \w+, score=(-?[\d.]+)[^\n]*?tests=((?:[^\n]|\n[ \t])*)", report, re.M)
    if len(found) != len(raws):
        raise RuntimeError(f"spamassassin scored {len(found)} of {len(raws)} messages: {proc.stderr.decode()[:300]}")
    return [(float(score), re.sub(r"\s+", "", rules).split("autolearn")[0].strip(",")) for score, rules in found]


def screenshot(chromium: str, page: Path, png: Path, width: int) -> None:
    profile = png.parent / ".chromium" / png.stem  # one profile per run: Chromium locks its profile folder
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",  # noqa: S603 (our own files)
                    f"--window-size={width},1800", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/emails"))
    ap.add_argument("--scenarios", type=Path, default=None)
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--no-spam", action="store_true")
    ap.add_argument("--limit", type=float, default=SPAM_LIMIT)
    args = ap.parse_args(argv)
    out: Path = args.out
    shutil.rmtree(out / ".chromium", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    emails = render_all(args.scenarios)
    for e in emails:
        (out / f"{e.template}.{e.locale}.html").write_text(e.html, encoding="utf-8")
        (out / f"{e.template}.{e.locale}.eml").write_bytes(e.raw)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        if not args.no_spam:
            if not shutil.which("spamassassin"):
                print("spamassassin is not installed (apt-get install spamassassin): scores skipped", file=sys.stderr)
            else:
                for e, (score, rules) in zip(emails, spam_scores([e.raw for e in emails]), strict=True):
                    e.spam, e.spam_rules = score, rules
        if not args.no_screenshots:
            if not chromium:
                print("chromium is not installed (apt-get install chromium): screenshots skipped", file=sys.stderr)
            else:
                jobs = [(out / f"{e.template}.{e.locale}.html", out / f"{e.template}.{e.locale}.{w}.png", w)
                        for e in emails for w in (600, 360)]
                list(pool.map(lambda j: screenshot(chromium, *j), jobs))
    failed = [e for e in emails if e.problems or (e.spam is not None and e.spam > args.limit)]
    lines = ["| template | locale | class | subject | spam score | rules | problems |", "|---|---|---|---|---|---|---|"]
    for e in emails:
        shown = "–" if e.spam is None else f"{e.spam:.1f}"
        lines.append(f"| {e.template} | {e.locale} | {e.category} | {e.subject} | {shown} | {e.spam_rules} | "
                     f"{'; '.join(e.problems) or 'ok'} |")
    (out / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cards = "".join(
        f'<figure><figcaption>{html.escape(e.template)} ({e.locale}) — {html.escape(e.subject)}</figcaption>'
        f'<a href="{e.template}.{e.locale}.html"><img src="{e.template}.{e.locale}.600.png" width="300" '
        f'alt="{html.escape(e.template)}"></a></figure>' for e in emails)
    (out / "index.html").write_text(f'<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Emails</title>'
                                    f'<style>figure{{display:inline-block;margin:8px;vertical-align:top}}</style>'
                                    f"{cards}</html>", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        [{"template": e.template, "locale": e.locale, "spam": e.spam, "rules": e.spam_rules, "problems": e.problems,
          "bytes": len(e.raw)} for e in emails], ensure_ascii=False, indent=1), encoding="utf-8")
    shutil.rmtree(out / ".chromium", ignore_errors=True)
    print(f"{len(emails)} emails in {out}/ ({out / 'index.html'}); "
          f"worst spam score {max((e.spam or 0) for e in emails):.1f}; {len(failed)} failing")
    for e in failed:
        print(f"  {e.template}.{e.locale}: spam {e.spam} {e.spam_rules} {'; '.join(e.problems)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
