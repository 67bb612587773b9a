"""Segments (definitions and today's sizes) and templates (YAML, lint, a rendered preview for a customer
through the rules that send them: the admin API's Previews.preview)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console import charts
from retention.console.web import app, arg, render, t
from retention.core.errors import BadRequestError, RetentionError
from retention.core.http import path_id
from retention.core.runtime import deps


def _groups() -> list[dict[str, Any]]:
    from retention.analytics.segstats import history
    from retention.core import clock
    from retention.journeys.catalogue import Catalogue
    d = deps()
    today = clock.now().date()
    groups = []
    for g in Catalogue(d.config).segment_groups():
        sizes, _ = history(d.dynamodb, d.env.messages_table, g.group, today, today)
        count = {row["segment"]: row["count"] for row in sizes}
        rows = [{"id": s.id, "title": getattr(s, "title", None), "count": count.get(s.id, 0)} for s in g.segments]
        groups.append({"group": g.group, "title": g.title, "mode": g.mode, "description": g.description,
                       "segments": rows, "chart": charts.bars([(r["id"], r["count"]) for r in rows], title=g.group)})
    return groups


def _segments_page(**ctx: Any) -> Response:
    """The page: the count preview (YAML box and the builder), then every group with today's sizes."""
    from retention.console import builder
    groups = _groups()
    refs = [f"{g['group']}/{s['id']}" for g in groups for s in g["segments"]]
    page = {"condition": "", "count": None, "count_error": None, "rows": [], "match": "all", **ctx}
    shown = min(builder.MAX_ROWS, max(3, len(page["rows"]) + 1))
    page["rows"] = list(page["rows"]) + [("", "", "")] * (shown - len(page["rows"]))
    return render("segments.html", groups=groups, fields=builder.fields(), ops=builder.OPS,
                  suggestions=[*refs, *builder.CONSENT_VALUES, "30d", "180d", "true", "false"], **page)


@app.get("/console/segments")
def segments() -> Response:
    return _segments_page()


HISTORY_DAYS = (7, 30, 90)


@app.get("/console/segments/<group>")
def segment_group(group: str) -> Response:
    """One group over time: each segment's size per day (a line each) and the flows between its segments,
    over the last 7, 30 or 90 days (one BatchGet per day: the daily rows the engine keeps)."""
    from datetime import timedelta

    from retention.analytics.segstats import history
    from retention.core import clock
    from retention.core.errors import NotFoundError
    from retention.journeys.catalogue import Catalogue
    d = deps()
    group = path_id(group)
    found = next((g for g in Catalogue(d.config).segment_groups() if g.group == group), None)
    if found is None:
        raise NotFoundError(f"segment group '{group}' not found")
    days = int(arg("days") or 30) if (arg("days") or "30").isdigit() else 30
    days = days if days in HISTORY_DAYS else 30
    today = clock.now().date()
    sizes, flows = history(d.dynamodb, d.env.messages_table, group, today - timedelta(days=days - 1), today)
    ids = [s.id for s in found.segments]
    by_day: dict[str, dict[str, Any]] = {}
    for i in range(days):
        day = (today - timedelta(days=days - 1 - i)).isoformat()
        by_day[day] = {"date": day, **dict.fromkeys(ids, 0)}
    for row in sizes:
        if row["date"] in by_day:
            by_day[row["date"]][row["segment"]] = row["count"]
    totals: dict[tuple[str, str], int] = {}
    for f in flows:
        key = (f["from"] or "∅", f["to"] or "∅")
        totals[key] = totals.get(key, 0) + int(f["count"])
    moved = sorted(totals.items(), key=lambda kv: -kv[1])
    series = list(by_day.values())
    return render("segment_group.html", group=found, days=days, choices=HISTORY_DAYS, today=series[-1],
                  ids=ids, sizes_chart=charts.lines(series, ids, title=t("Daily sizes")),
                  flows_chart=charts.bars([(f"{a} → {b}", n) for (a, b), n in moved[:20]], title=t("Flows")),
                  flows=moved)


@app.post("/console/segments/count")
def count() -> Response:
    """The count preview (read-only): how many customers a condition matches, on the first page of the
    profiles (the admin API's POST /admin/segments/count). The condition is the YAML box's, or the builder's
    rows (`builder=1`), which become YAML in the box. With htmx, only the result (and the box) is sent back."""
    from retention.admin.previews import Previews
    from retention.console import builder
    from retention.console.web import allowed, form, header
    from retention.core import yamlio
    allowed("POST", "/admin/segments/count")
    f = form()
    condition = f.get("condition", "")
    rows = builder.rows_from_form(f) if f.get("builder") else []
    match = "any" if f.get("match") == "any" else "all"
    if f.get("builder") and f.get("add_row"):
        return _segments_page(condition=condition, rows=[*rows, ("", "", "")], match=match)
    result, error = None, None
    try:
        if f.get("builder"):
            parsed: Any = builder.build(rows, match)
            condition = builder.to_yaml(parsed)
        else:
            docs = yamlio.load_yaml_documents(condition, "condition")
            parsed = docs[0][0] if docs else None
        if not isinstance(parsed, dict):
            raise BadRequestError("a condition is a mapping, e.g. {kpi: orders_count, gte: 2}")
        result = Previews(deps()).count(condition=parsed)
    except builder.BuilderError as exc:
        error = str(exc)
    except RetentionError as exc:
        error = exc.message
    if header("HX-Request"):
        if f.get("builder"):  # the result, and the YAML it made in the box (out of band)
            return render("count.html", count=result, count_error=error, condition=condition, oob=True)
        return render("count.html", count=result, count_error=error)
    return _segments_page(condition=condition, count=result, count_error=error, rows=rows, match=match)


LOCALES = ("ru", "en")  # the template page previews every message in both


def _rules_sending(template_id: str) -> list[str]:
    out = []
    for rule_id, item in sorted(deps().config.current("RULE").items()):
        for step in (item.get("body") or {}).get("steps") or []:
            send = step.get("send") if isinstance(step, dict) else None
            if not isinstance(send, dict):
                continue
            used = [send.get("template")] + [v.get("template") for v in send.get("variants") or []
                                             if isinstance(v, dict)]
            if template_id in used:
                out.append(rule_id)
                break
    return out


@app.get("/console/templates")
def templates() -> Response:
    from retention.admin.views import Admin
    return render("templates.html", templates=Admin(deps()).list("TEMPLATE"))


@app.get("/console/templates/<template_id>")
def template(template_id: str) -> Response:
    from retention.admin.previews import Previews
    from retention.admin.views import Admin
    from retention.console.rules import _customer_ref
    template_id = path_id(template_id)
    d = deps()
    item = Admin(d).get("TEMPLATE", template_id)
    try:
        warnings = Previews(d).lint("TEMPLATE", template_id)["warnings"]
    except RetentionError as exc:
        warnings = [{"code": "lint", "message": exc.message, "severity": "error"}]
    rules = _rules_sending(template_id)
    customer, rule = (arg("customer") or "").strip(), arg("rule") or (rules[0] if rules else "")
    messages: list[dict[str, Any]] = []
    error = None
    if customer and rule:  # in both languages, side by side (the customer's data, each locale's text)
        try:
            ref = _customer_ref(customer)
            for locale in LOCALES:
                preview = Previews(d).preview(rule, ref, locale=locale)
                messages += [{**m, "locale": locale} for m in preview["messages"] if m["template"] == template_id]
        except RetentionError as exc:
            error = exc.message
    text = item.get("text")
    if not text:
        import yaml
        text = yaml.safe_dump(item["body"], allow_unicode=True, sort_keys=False)
    return render("template.html", item=item, text=text, warnings=warnings, rules=rules, rule=rule,
                  customer=customer, messages=messages, error=error)
