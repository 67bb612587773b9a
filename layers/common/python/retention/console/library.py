"""Segments (definitions and today's sizes) and templates (YAML, lint, a rendered preview for a customer
through the rules that send them: the admin API's Previews.preview)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console import charts
from retention.console.web import app, arg, render
from retention.core.errors import BadRequestError, RetentionError
from retention.core.http import path_id
from retention.core.runtime import deps


@app.get("/console/segments")
def segments() -> Response:
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
    return render("segments.html", groups=groups, condition="", count=None, count_error=None)


@app.post("/console/segments/count")
def count() -> Response:
    """The count preview (read-only): how many customers a condition matches, on the first page of the
    profiles (the admin API's POST /admin/segments/count). With htmx, only the result is sent back."""
    from retention.admin.previews import Previews
    from retention.console.web import allowed, form, header
    from retention.core import yamlio
    allowed("POST", "/admin/segments/count")
    condition = form().get("condition", "")
    result, error = None, None
    try:
        docs = yamlio.load_yaml_documents(condition, "condition")
        parsed = docs[0][0] if docs else None
        if not isinstance(parsed, dict):
            raise BadRequestError("a condition is a mapping, e.g. {kpi: orders_count, gte: 2}")
        result = Previews(deps()).count(condition=parsed)
    except RetentionError as exc:
        error = exc.message
    if header("HX-Request"):
        return render("count.html", count=result, count_error=error)
    return render("segments.html", groups=[], condition=condition, count=result, count_error=error)


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
    if customer and rule:
        try:
            preview = Previews(d).preview(rule, _customer_ref(customer))
            messages = [m for m in preview["messages"] if m["template"] == template_id]
        except RetentionError as exc:
            error = exc.message
    text = item.get("text")
    if not text:
        import yaml
        text = yaml.safe_dump(item["body"], allow_unicode=True, sort_keys=False)
    return render("template.html", item=item, text=text, warnings=warnings, rules=rules, rule=rule,
                  customer=customer, messages=messages, error=error)
