"""Local stack only: the outbox as an inbox (HTML rendered in sandboxed frames, filters by address and rule)
and the virtual clock (advance by hours or days), for trying a journey end to end from the browser.

Served by local/server.py at /_local/inbox, like the other /_local routes: unauthenticated, on the
loopback address the local stack binds. A POST must come from the same origin (a page elsewhere cannot
move the clock)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Outbox · local</title>
<link rel="stylesheet" href="/console/static/console.css"></head>
<body><header class="top"><a class="brand" href="/console/">Retention console</a>
<nav><a href="/_local/inbox" aria-current="page">Outbox (local)</a></nav>
<div class="me">virtual clock: <strong id="now">{{ now }}</strong></div></header>
<main>
<section class="card"><h2>Virtual clock</h2>
<form method="post" action="/_local/inbox/advance" class="inline">
<label for="hours">Advance by hours</label><input id="hours" name="hours" type="text" value="24">
<button type="submit">Advance (runs every tick that comes due)</button></form></section>
<section class="card"><h2>Outbox: {{ messages|length }} message(s)</h2>
<form method="get" action="/_local/inbox">
<label for="to">To</label><input id="to" name="to" type="search" value="{{ to }}">
<label for="rule">Rule</label><input id="rule" name="rule" type="search" value="{{ rule }}">
<button type="submit">Filter</button></form></section>
{% for m in messages %}
<section class="card message"><h3>{{ m.subject or m.channel }}</h3>
<p class="small">{{ m.sent_at }} · {{ m.channel }} → {{ m.to }} · {{ m.rule }} step {{ m.step }}
{%- if m.variant %} · {{ m.variant }}{% endif %}</p>
{% if m.html %}<iframe class="preview" sandbox title="{{ m.subject }}" srcdoc="{{ m.html }}"></iframe>
{% else %}<pre class="code">{{ m.text }}</pre>{% endif %}
</section>
{% endfor %}
</main></body></html>"""

_ENV = Environment(autoescape=True)


def page(stack: Any, query: dict[str, str]) -> bytes:
    from retention.core import clock
    to, rule = (query.get("to") or "").strip(), (query.get("rule") or "").strip()
    messages = list(reversed(stack.outbox(to=to or None, rule=rule or None)))[:100]  # newest first
    return _ENV.from_string(PAGE).render(messages=messages, to=to, rule=rule, now=clock.iso(clock.now())).encode()


def same_origin(headers: dict[str, str]) -> bool:
    """No Origin (a same-origin form in older browsers, curl) or the stack's own host."""
    lower = {k.lower(): v for k, v in headers.items()}
    origin = lower.get("origin")
    return not origin or origin.split("://", 1)[-1] == lower.get("host")


def hours(body: bytes) -> float | None:
    from urllib.parse import parse_qs
    try:
        value = float(parse_qs(body.decode("utf-8", "replace")).get("hours", ["0"])[-1])
    except ValueError:
        return None
    return value if 0 < value <= 24 * 366 else None
