"""The audit log (everyone) and people's tokens (admins: create, shown once; revoke)."""

from __future__ import annotations

from typing import Any

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


def _tokens_page(people: People, status: int = 200, **ctx: Any) -> Response:
    listed = people.tokens()
    names = sorted({str(tk["name"]) for tk in listed if tk["state"] == "active"})
    page: dict[str, Any] = {"created": None, "error": None, "email_error": None, **ctx}
    return render("tokens.html", status=status, tokens=listed, roles=ROLES, people_names=names,
                  emails=people.emails(), **page)


@app.get("/console/tokens")
def tokens() -> Response:
    allowed("GET", "/admin/tokens")
    return _tokens_page(People(deps().config))


@app.post("/console/people/email")
def set_email() -> Response:
    """A person's own address (admins; test sends go there and nowhere else). People.set_email audits it."""
    from retention.core.errors import BadRequestError
    allowed("POST", "/admin/tokens")
    f = form()
    people = People(deps().config)
    try:
        people.set_email(f.get("name", ""), f.get("email", ""), by=session().person.name)
    except BadRequestError as exc:
        return _tokens_page(people, status=400, email_error=exc.message)
    return redirect(f"{ROOT}/tokens#emails")


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
        return _tokens_page(people, status=400, error=exc.message)
    return _tokens_page(people, created=created)


@app.post("/console/tokens/<token_id>/revoke")
def revoke_token(token_id: str) -> Response:
    allowed("DELETE", f"/admin/tokens/{token_id}")
    People(deps().config).revoke(token_id, by=session().person.name)
    return redirect(f"{ROOT}/tokens")
