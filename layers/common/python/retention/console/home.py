"""Sign-in, sign-out, the language switch, static files and the overview (with the send brake)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console import charts
from retention.console.sessions import COOKIE, LANG_COOKIE, LIFETIME, PRE_COOKIE, Sessions, cookie_value, csrf_ok
from retention.console.web import (
    HERE,
    ROOT,
    SECURITY_HEADERS,
    allowed,
    app,
    arg,
    audited,
    cookie,
    form,
    redirect,
    render,
    safe_next,
    session,
    t,
)
from retention.core import clock
from retention.core.errors import NotFoundError, UnauthorizedError
from retention.core.runtime import deps

STATIC = {"htmx-2.0.4.min.js": "text/javascript; charset=utf-8", "htmx-LICENSE.txt": "text/plain; charset=utf-8",
          "console.css": "text/css; charset=utf-8"}


@app.get("/console/static/<name>")
def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFoundError(name)
    body = (HERE / "static" / name).read_text(encoding="utf-8")
    return Response(status_code=200, content_type=STATIC[name], body=body,
                    headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})


@app.get("/console/login")
def login_form() -> Response:
    pre = secrets.token_urlsafe(24)
    return render("login.html", csrf_pre=pre, next=safe_next(arg("next")), error=None,
                  expired=arg("expired") == "1", cookies=[cookie(PRE_COOKIE, pre, max_age=3600)])


@app.post("/console/login")
def login() -> Response:
    f = form()
    nxt = safe_next(f.get("next"))
    if not csrf_ok(cookie_value(app.current_event.headers, PRE_COOKIE), f.get("csrf")):
        pre = secrets.token_urlsafe(24)
        return render("login.html", status=403, csrf_pre=pre, next=nxt, expired=False,
                      error="The sign-in form is stale (CSRF check): try again.",
                      cookies=[cookie(PRE_COOKIE, pre, max_age=3600)])
    try:
        session_id, _ = Sessions(deps().config).sign_in(f.get("token") or "")
    except UnauthorizedError:
        pre = secrets.token_urlsafe(24)
        return render("login.html", status=401, csrf_pre=pre, next=nxt, expired=False,
                      error=t("This token is not valid."), cookies=[cookie(PRE_COOKIE, pre, max_age=3600)])
    return redirect(nxt, cookies=[cookie(COOKIE, session_id, max_age=int(LIFETIME.total_seconds()))])


@app.post("/console/logout")
def logout() -> Response:
    Sessions(deps().config).sign_out(cookie_value(app.current_event.headers, COOKIE))
    return redirect(f"{ROOT}/login", cookies=[cookie(COOKIE, "", max_age=0)])


@app.get("/console/lang")
def switch_language() -> Response:
    to = arg("to") if arg("to") in ("en", "ru") else "en"
    return redirect(safe_next(arg("next")), cookies=[cookie(LANG_COOKIE, str(to), max_age=365 * 86400)])


def _channels(body: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, step in enumerate(body.get("steps") or []):
        if isinstance(step, dict) and isinstance(step.get("send"), dict):
            out[i] = str(step["send"].get("channel") or "email")
    return out


def rule_summaries(days: int) -> list[dict[str, Any]]:
    """Every rule with its title, state, totals over the last `days` days, today's numbers and sends by
    channel (from the counters, through the admin API's rule report)."""
    from retention.admin.views import Admin
    admin = Admin(deps())
    today = clock.now().date()
    since = (today - timedelta(days=days - 1)).isoformat()
    out = []
    for rule_id, item in sorted(deps().config.current("RULE").items()):
        body = item.get("body") or {}
        rep = admin.rule_stats(rule_id, since, None)
        today_row = next((d for d in rep["daily"] if d["date"] == today.isoformat()), None)
        by_channel: dict[str, int] = {}
        channels = _channels(body)
        for row in rep["steps"]:
            if row["step"] >= 0 and row.get("sent"):
                ch = channels.get(int(row["step"]), "email")
                by_channel[ch] = by_channel.get(ch, 0) + int(row["sent"])
        out.append({"id": rule_id, "title": body.get("title") or rule_id, "enabled": bool(item.get("enabled", True)),
                    "version": item.get("version"), "totals": rep["totals"], "daily": rep["daily"],
                    "today": today_row or {"sent": 0, "converted": 0, "revenue": 0}, "by_channel": by_channel})
    return out


@app.get("/console/")
def overview() -> Response:
    from retention.analytics.segstats import funnel_report
    from retention.surveys.answers import Surveys
    d = deps()
    rules = rule_summaries(30)
    totals = {k: sum(float(r["totals"].get(k) or 0) for r in rules)
              for k in ("entered", "sent", "delivered", "opened", "clicked", "converted", "revenue", "unsubscribed")}
    today = {k: sum(float(r["today"].get(k) or 0) for r in rules) for k in ("sent", "converted", "revenue")}
    channels: dict[str, int] = {}
    for r in rules:
        for ch, n in r["by_channel"].items():
            channels[ch] = channels.get(ch, 0) + n
    daily: dict[str, dict[str, Any]] = {}
    for r in rules:
        for p in r["daily"]:
            row = daily.setdefault(p["date"], {"date": p["date"], "sent": 0, "converted": 0})
            row["sent"] += p["sent"]
            row["converted"] += p["converted"]
    funnel = funnel_report(d.dynamodb, d.env.messages_table, None, None)
    nps = Surveys(d).report((clock.now() - timedelta(days=30)).date().isoformat(), None, "month")["overall"]
    return render("overview.html", totals=totals, today=today, rules=rules, nps=nps, funnel=funnel,
                  brake=_brake_status(), health=_health(),
                  channel_chart=charts.bars(sorted(channels.items()), title=t("Sends by channel")),
                  stage_chart=charts.bars([(s["step"], s["count"]) for s in funnel.get("stages", [])]
                                          + [("losses", (funnel.get("losses") or {}).get("count", 0))],
                                          title=t("Lifecycle sizes")),
                  daily_chart=charts.columns(sorted(daily.values(), key=lambda p: p["date"]), ("sent", "converted"),
                                             title=t("Daily sends and conversions")))


def _health() -> dict[str, Any]:
    """Events today / 30 days, pending sends and dead letters (GET /admin/health's answer)."""
    from retention.admin.health import health
    return health(deps())


def _brake() -> Any:
    from retention.messaging.brake import Brake
    d = deps()
    return Brake(d.dynamodb, d.env.messages_table, d.config)


def _brake_status() -> dict[str, Any]:
    from retention.messaging.brake import sending_identity
    return dict(_brake().status(sending_identity(deps().env.sender_email)))


@app.post("/console/sending/resume")
def resume_sending() -> Response:
    from retention.messaging.brake import sending_identity
    allowed("POST", "/admin/sending/resume")
    answer = _brake().resume(sending_identity(deps().env.sender_email), by=session().person.name)
    audited("POST", "/admin/sending/resume", answer)
    return redirect(f"{ROOT}/")


__all__ = ["SECURITY_HEADERS"]
