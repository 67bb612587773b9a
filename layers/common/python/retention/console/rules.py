"""Rules: the list (last 7 days), a rule's page (journey, stats per step and variant, the A/B verdict and the
holdout uplift in words, versions, a preview for a customer), the YAML editor with errors at their lines,
enable / disable / rollback — all through the admin API's domain functions (retention.admin)."""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console import charts, words
from retention.console.home import rule_summaries
from retention.console.web import ROOT, allowed, app, arg, audited, form, redirect, render, session, t
from retention.core import clock
from retention.core.errors import BadRequestError, NotFoundError, RetentionError, ValidationError
from retention.core.runtime import deps

_LINE = re.compile(r"^(?:[^\s:]+):(\d+):\s*(.*)$")


def describe_step(step: Any, t: Any) -> dict[str, Any]:
    """One journey step as a short label: wait 4h, send email: cart-reminder (A/B: A, B), …"""
    if not isinstance(step, dict):
        return {"kind": "other", "label": str(step)}
    if "wait" in step:
        wait = step["wait"]
        if isinstance(wait, dict):  # {duration: 8h, daytime: {from: "09:00", to: "21:00"}} and the like
            from retention.console.web import _flow
            day = wait.get("daytime") if isinstance(wait.get("daytime"), dict) else None
            rest = {k: v for k, v in wait.items() if k not in ("duration", "daytime")}
            wait = " ".join(str(x) for x in (wait.get("duration") or "",
                                             f"({day.get('from')}–{day.get('to')})" if day else "",
                                             _flow(rest) if rest else "") if x)
        return {"kind": "wait", "label": t("wait {what}", what=wait)}
    send = step.get("send")
    if isinstance(send, dict):
        if send.get("variants"):
            template = " / ".join(f"{v.get('name')}: {v.get('template')}" for v in send["variants"]
                                  if isinstance(v, dict))
        else:
            template = str(send.get("template") or "")
        return {"kind": "send", "label": t("send {channel}: {template}", channel=send.get("channel") or "email",
                                           template=template)}
    key = next((k for k in step if k != "id"), "step")
    value = step.get(key)
    return {"kind": str(key), "label": f"{key}: {value}" if not isinstance(value, dict | list) else str(key)}


def located_errors(message: str) -> tuple[list[dict[str, Any]], set[int]]:
    """`source:line: text` lines of a ValidationError → [{line, text}] and the set of lines."""
    out, lines = [], set()
    for raw in message.splitlines():
        m = _LINE.match(raw.strip())
        if m:
            lines.add(int(m.group(1)))
            out.append({"line": int(m.group(1)), "text": m.group(2)})
        elif raw.strip():
            out.append({"line": None, "text": raw.strip()})
    return out, lines


@app.get("/console/rules")
def rules_list() -> Response:
    return render("rules.html", rules=rule_summaries(7))


def _rule(rule_id: str) -> dict[str, Any]:
    from retention.admin.views import Admin
    return Admin(deps()).get("RULE", rule_id)


@app.get("/console/rules/<rule_id>")
def rule_page(rule_id: str) -> Response:
    from retention.admin.previews import Previews
    from retention.admin.views import Admin
    from retention.core.http import path_id
    rule_id = path_id(rule_id)
    d = deps()
    rule = _rule(rule_id)
    since = (clock.now() - timedelta(days=29)).date().isoformat()
    report = Admin(d).rule_stats(rule_id, since, None)
    tr = _translator()
    ab = [{**test, "words": words.ab_words(test, tr)} for test in report["ab"]]
    uplift = words.uplift_words(report["uplift"], report["holdout"], int(report["totals"].get("entered") or 0), tr)
    versions = d.config.versions("RULE", rule_id)
    try:
        warnings = Previews(d).lint("RULE", rule_id)["warnings"]
    except RetentionError as exc:
        warnings = [{"code": "lint", "message": exc.message, "severity": "error"}]
    preview, preview_error, customer = None, None, (arg("customer") or "").strip()
    if customer:
        try:
            preview = Previews(d).preview(rule_id, _customer_ref(customer))
        except RetentionError as exc:
            preview_error = exc.message
    dry_run, dry_error, days = None, None, (arg("dry_run") or "").strip()
    if days:
        try:
            dry_run = Previews(d).dry_run(rule_id, days=days, limit=arg("limit"))
        except RetentionError as exc:
            dry_error = exc.message
    body = rule["body"]
    dry_sends = sum(1 for e in (dry_run or {}).get("entries", []) for s in e.get("steps", [])
                    if s.get("kind") == "send")
    return render("rule.html", dry_run=dry_run, dry_error=dry_error, days=days, dry_sends=dry_sends, rule=rule,
                  body=body, steps=[describe_step(s, tr) for s in body.get("steps") or []],
                  report=report, ab=ab, uplift=uplift, versions=sorted(versions, key=lambda v: -int(v["version"])),
                  warnings=warnings, customer=customer, preview=preview, preview_error=preview_error,
                  daily_chart=charts.columns(report["daily"], ("sent", "converted"),
                                             title=t("Daily sends and conversions")))


def _customer_ref(value: str) -> str:
    """An email is looked up (the email index); anything else is a customer id."""
    if "@" in value:
        from retention.customers.store import ProfileRepo
        d = deps()
        found = ProfileRepo(d.dynamodb, d.env.profiles_table).customer_by_email(value.lower())
        if not found:
            raise NotFoundError(f"no customer with the email {value}")
        return found
    return value


def _translator() -> Any:
    from retention.console import i18n
    from retention.console.web import lang
    return i18n.translator(lang())


EDITABLE = ("rules", "templates", "segments")


def _definition(collection: str, def_id: str) -> dict[str, Any]:
    from retention.admin.views import KIND_OF, Admin
    return Admin(deps()).get(KIND_OF[collection], def_id)


def _back(collection: str, def_id: str) -> str:
    return f"{ROOT}/segments" if collection == "segments" else f"{ROOT}/{collection}/{def_id}"


@app.get("/console/<collection>/<def_id>/edit")
def edit_form(collection: str, def_id: str) -> Response:
    """The YAML editor of a rule, a template or a segment group (those who may save it)."""
    from retention.core.http import path_id
    if collection not in EDITABLE:
        raise NotFoundError(collection)
    def_id = path_id(def_id)
    allowed("PUT", f"/admin/{collection}/{def_id}")
    item = _definition(collection, def_id)
    return render("rule_edit.html", rule=item, collection=collection, back=_back(collection, def_id),
                  text=_text_of(item), errors=[], bad_lines=set(), diff=None, message=None)


def _text_of(rule: dict[str, Any]) -> str:
    if rule.get("text"):
        return str(rule["text"])
    import yaml
    return str(yaml.safe_dump(rule["body"], allow_unicode=True, sort_keys=False))


@app.post("/console/<collection>/<def_id>/edit")
def edit(collection: str, def_id: str) -> Response:
    """`action=check` validates (and shows the diff against the live version); `action=save` applies, as
    PUT /admin/{collection}/{id} does (a changed segment group also re-evaluates every profile)."""
    from retention.admin.previews import Previews, parse_definition_text
    from retention.admin.views import KIND_OF
    from retention.core.http import path_id
    if collection not in EDITABLE:
        raise NotFoundError(collection)
    def_id, kind = path_id(def_id), KIND_OF[collection]
    f = form()
    text = f.get("yaml", "").replace("\r\n", "\n")
    saving = f.get("action") == "save"
    admin_path = f"/admin/{collection}/{def_id}"
    allowed("PUT" if saving else "GET", admin_path)  # checking changes nothing: a viewer may check
    live = _definition(collection, def_id)
    source = f"{collection}/{def_id}.yaml"
    diff = "".join(difflib.unified_diff(_text_of(live).rstrip("\n").splitlines(keepends=True),
                                        text.rstrip("\n").splitlines(keepends=True), "live", "edited")) or None
    page: dict[str, Any] = {"rule": live, "collection": collection, "back": _back(collection, def_id), "text": text,
                            "diff": diff}
    try:
        definition, linemap = parse_definition_text(text, source)
        previews = Previews(deps())
        if not saving:
            definition.setdefault("group" if kind == "SEGDEF" else "id", def_id)
            previews.validate(kind, definition, source=source, linemap=linemap, text=text)
            return render("rule_edit.html", errors=[], bad_lines=set(), message="ok", **page)
        answer = previews.apply(kind, def_id, definition, source=source, linemap=linemap, text=text,
                                author=session().person.name)
    except (ValidationError, BadRequestError) as exc:
        errors, bad = located_errors(exc.message)
        return render("rule_edit.html", status=422, errors=errors, bad_lines=bad, message=None, **page)
    audited("PUT", admin_path, answer)
    return redirect(f"{_back(collection, def_id)}?saved={answer['version']}&changed={int(answer['changed'])}")


@app.post("/console/rules/<rule_id>/<action>")
def rule_action(rule_id: str, action: str) -> Response:
    from retention.admin.previews import Previews
    from retention.core.http import path_id
    rule_id = path_id(rule_id)
    if action not in ("enable", "disable", "rollback"):
        raise NotFoundError(f"no action {action}")
    admin_path = f"/admin/rules/{rule_id}/{action}"
    allowed("POST", admin_path)
    if action == "rollback":
        version = form().get("version") or ""
        if not version.isdigit():
            raise BadRequestError("version is a whole number")
        answer = Previews(deps()).rollback("RULE", rule_id, int(version))
    else:
        item = deps().config.set_enabled("RULE", rule_id, action == "enable")
        answer = {"id": rule_id, "version": int(item["version"]), "enabled": action == "enable"}
    audited("POST", admin_path, answer)
    return redirect(f"{ROOT}/rules/{rule_id}")
