"""The audit log (everyone) and people's tokens (admins: create, shown once; revoke)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from retention.admin.people import ROLES, People
from retention.console.web import ROOT, allowed, app, arg, form, redirect, render, session
from retention.core.runtime import deps


@app.get("/console/audit")
def audit() -> Response:
    allowed("GET", "/admin/audit")
    who, kind = arg("who") or None, arg("kind") or None
    entries = People(deps().config).audit_log(who=who, kind=kind, limit=200)
    return render("audit.html", entries=entries, who=who or "", kind=kind or "")


@app.get("/console/tokens")
def tokens() -> Response:
    allowed("GET", "/admin/tokens")
    return render("tokens.html", tokens=People(deps().config).tokens(), roles=ROLES, created=None, error=None)


@app.post("/console/tokens")
def create_token() -> Response:
    from retention.core.errors import BadRequestError
    allowed("POST", "/admin/tokens")
    f = form()
    people = People(deps().config)
    try:  # People.create writes its own audit entry (by = the signed-in person)
        created = people.create(f.get("name", ""), f.get("role") or "viewer", expires=f.get("expires") or None,
                                by=session().person.name)
    except BadRequestError as exc:
        return render("tokens.html", status=400, tokens=people.tokens(), roles=ROLES, created=None, error=exc.message)
    return render("tokens.html", tokens=people.tokens(), roles=ROLES, created=created, error=None)


@app.post("/console/tokens/<token_id>/revoke")
def revoke_token(token_id: str) -> Response:
    allowed("DELETE", f"/admin/tokens/{token_id}")
    People(deps().config).revoke(token_id, by=session().person.name)
    return redirect(f"{ROOT}/tokens")
