"""The console's resolver and what every page shares: the session guard (sign-in, CSRF on every POST),
rendering (Jinja2, autoescape on), redirects, security headers, role checks and audit entries that reuse
the admin API's (retention.admin.people), and the language.

Pages live in the sibling modules (home, rules, customers, library, people_pages), which register their
routes on `app` when retention.console.app imports them."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from retention.console import i18n
from retention.console.sessions import COOKIE, LANG_COOKIE, Session, Sessions, cookie_value, csrf_ok, is_local
from retention.core.errors import ForbiddenError, RetentionError, UnauthorizedError
from retention.core.runtime import deps

HERE = Path(__file__).parent
ROOT = "/console"
PUBLIC = ("/console/login", "/console/lang")
HTMX = "htmx-2.0.4.min.js"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: https:; frame-ancestors 'none'; form-action 'self'; "
                               "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

app = APIGatewayRestResolver()


@cache
def env() -> Any:
    from jinja2 import Environment, FileSystemLoader
    e = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                    trim_blocks=True, lstrip_blocks=True)
    e.filters["pct"] = lambda v: "—" if v is None else f"{float(v) * 100:.1f} %"
    e.filters["money"] = lambda v: "—" if v is None else f"{float(v or 0):,.2f}".replace(",", " ")
    e.filters["num"] = lambda v: "—" if v is None else f"{int(v or 0):,}".replace(",", " ")
    e.filters["q"] = lambda v: quote(str(v), safe="")
    e.filters["flow"] = _flow
    e.filters["sms_parts"] = _sms_parts
    return e


def _sms_parts(text: Any) -> str:
    """What an SMS costs: its encoding, parts and length ("UCS-2 · 2 SMS · 95 characters")."""
    from retention.messaging.sms import sms_segments
    encoding, parts, length = sms_segments(str(text or ""))
    return f"{encoding} · {parts} SMS · {length} {'septets' if encoding == 'GSM-7' else 'characters'}"


def _flow(value: Any) -> str:
    """A definition's fragment as one line of YAML flow style ({events: [Checkout Started]})."""
    import yaml
    if value is None or value == "":
        return ""
    return str(yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)).strip().removesuffix(
        "...").strip()


# ---- request state ------------------------------------------------------------------------------------
def header(name: str) -> str | None:
    headers = app.current_event.headers or {}
    return headers.get(name) or next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def prefix() -> str:
    """The stage prefix ("/prod" behind the execute-api URL; "" locally or behind a custom domain)."""
    ev = app.current_event
    full = str((ev.raw_event.get("requestContext") or {}).get("path") or ev.path)
    return full[: -len(ev.path)] if ev.path and full.endswith(ev.path) else ""


def url(path: str) -> str:
    return prefix() + path


def form() -> dict[str, str]:
    if "form" not in app.context:
        from retention.core.http import form_body
        app.append_context(form=form_body(app.current_event))
    return dict(app.context["form"])


def arg(name: str) -> str | None:
    return app.current_event.get_query_string_value(name)


def session() -> Session:
    s = app.context.get("session")
    if s is None:
        raise UnauthorizedError("sign in first")
    return s  # type: ignore[no-any-return]


def lang() -> str:
    return str(app.context.get("lang") or "en")


def t(text: str, **values: Any) -> str:
    return i18n.translator(lang())(text, **values)


# ---- answers ------------------------------------------------------------------------------------------
def cookie(name: str, value: str, *, max_age: int | None = None, path: str | None = None) -> Cookie:
    return Cookie(name=name, value=value, path=path or url(ROOT), secure=not is_local(header("Host")),
                  http_only=True, same_site=SameSite.STRICT_MODE, max_age=max_age)


def render(template: str, status: int = 200, cookies: list[Cookie] | None = None, **ctx: Any) -> Response:
    s: Session | None = app.context.get("session")
    body = env().get_template(template).render(
        t=i18n.translator(lang()), lang=lang(), u=url, root=url(ROOT), path=app.current_event.path,
        person=s.person if s else None, csrf=s.csrf if s else "", htmx=url(f"{ROOT}/static/{HTMX}"),
        can=lambda role: s is not None and _rank(s.person.role) >= _rank(role),
        local=is_local(header("Host")) and not prefix(), **ctx)
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=body,
                    headers=dict(SECURITY_HEADERS), cookies=cookies or [])


def redirect(path: str, cookies: list[Cookie] | None = None) -> Response:
    """303 See Other after a form; htmx (hx-boost) follows it like a browser."""
    return Response(status_code=303, body="", headers={"Location": url(path), **SECURITY_HEADERS},
                    cookies=cookies or [])


def safe_next(value: str | None) -> str:
    """Only a console path (no open redirect)."""
    v = value or ROOT + "/"
    return v if v.startswith(ROOT + "/") and not v.startswith("//") and "\\" not in v else ROOT + "/"


def _rank(role: str) -> int:
    from retention.admin.people import RANK
    return RANK.get(role, -1)


# ---- roles and audit, as the admin API does them --------------------------------------------------------
def allowed(method: str, admin_path: str) -> None:
    """The person may do what `method admin_path` of the admin API does (same roles), else 403."""
    from retention.admin.people import required_role
    session().person.require(required_role(method, admin_path))


def audited(method: str, admin_path: str, answer: Any) -> None:
    """The audit entry the admin API would write for the same change, under the person's name."""
    from retention.admin.people import People, audit_entry_for
    if isinstance(answer, dict) and answer.get("changed") is False:
        return
    person = session().person
    action, kind, item_id, version, detail = audit_entry_for(method, admin_path, answer)
    People(deps().config).audit(person.name, action, kind, item_id, version=version, role=person.role,
                                detail={**(detail or {}), "via": "console"})


# ---- the guard ----------------------------------------------------------------------------------------
def guard(resolver: Any, next_middleware: Any) -> Any:
    """Language for everyone; a live session for every page but sign-in and static files; the session's
    CSRF token on every POST."""
    ev = resolver.current_event
    resolver.append_context(lang=i18n.pick(arg("lang") or cookie_value(ev.headers, LANG_COOKIE),
                                           header("Accept-Language")))
    path = ev.path.rstrip("/") or "/"
    if path in PUBLIC or path.startswith(ROOT + "/static/"):
        return next_middleware(resolver)
    try:
        current = Sessions(deps().config).load(cookie_value(ev.headers, COOKIE))
    except UnauthorizedError as exc:
        where = ev.path if ev.http_method == "GET" else ROOT + "/"
        expired = "&expired=1" if exc.code in ("session_expired", "token_expired") else ""
        return redirect(f"{ROOT}/login?next={quote(safe_next(where), safe='')}{expired}")
    resolver.append_context(session=current)
    if ev.http_method not in ("GET", "HEAD") and not csrf_ok(current.csrf, form().get("csrf")
                                                              or header("X-CSRF-Token")):
        return render("error.html", status=403, title=t("Forbidden"),
                      message="The form is stale or did not come from the console (CSRF check): reload and retry.")
    return next_middleware(resolver)


app.use(middlewares=[guard])


@app.exception_handler(RetentionError)
def _domain_error(exc: RetentionError) -> Response:
    if isinstance(exc, UnauthorizedError):
        return redirect(f"{ROOT}/login")
    title = t("Forbidden") if isinstance(exc, ForbiddenError) else (
        t("Not found") if exc.status == 404 else t("Something is wrong"))
    return render("error.html", status=exc.status, title=title, message=exc.message)


@app.not_found
def _not_found(exc: Exception) -> Response:
    return render("error.html", status=404, title=t("Not found"), message=app.current_event.path)
