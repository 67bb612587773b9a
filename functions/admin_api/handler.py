"""Admin API (Bearer admin token, stored hashed): customers, definitions, previews and dry-runs, segment
counts and assignments, sources, stats, NPS, settings.

Route order: Powertools tries every static route before any dynamic one, and dynamic ones in the order
they are registered. So `/admin/sources`, `/admin/nps`, `/admin/segments/count` … (static) win over
`/admin/<collection>` and `/admin/<collection>/<def_id>`; the specific dynamic routes (with a literal
segment such as `/preview`) are registered before the generic definition routes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.admin.previews import Previews
from retention.admin.views import KIND_OF, Admin
from retention.core.errors import BadRequestError, NotFoundError
from retention.core.http import json_response, parse_json_object, path_id, register_errors
from retention.core.runtime import deps
from retention.surveys.answers import Surveys

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)

SOURCE_HEADER = "X-Retention-Source"  # the client's file name (percent-encoded), so errors read file:line


def authenticate(app: APIGatewayRestResolver, next_middleware: Any) -> Any:
    name = deps().config.authenticate_admin(app.current_event.headers.get("Authorization")
                                            or app.current_event.headers.get("authorization"))
    app.append_context(admin=name)
    return next_middleware(app)


app.use(middlewares=[authenticate])


def _query(name: str) -> str | None:
    return (app.current_event.query_string_parameters or {}).get(name)


def _header(name: str) -> str | None:
    headers = app.current_event.headers or {}
    return headers.get(name) or next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _kind(collection: str) -> str:
    if collection not in KIND_OF:
        raise NotFoundError(f"unknown collection '{collection}': use rules, segments or templates")
    return KIND_OF[collection]


def _json_body(required: bool = True) -> dict[str, Any]:
    raw = app.current_event.decoded_body or ""
    if not raw.strip():
        if required:
            raise BadRequestError("the body is a JSON object")
        return {}
    return parse_json_object(raw)


def _author() -> str:
    return str(app.context.get("admin") or "api")


# ---- sources (write keys) ------------------------------------------------------------------------------

@app.post("/admin/sources")
def create_source() -> Any:
    body = _json_body()
    name, scopes = body.get("name"), body.get("scopes")
    if not isinstance(name, str) or not name.strip():
        raise BadRequestError('a source needs a name: {"name": "web shop"}')
    if scopes is not None and not (isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)):
        raise BadRequestError('scopes is a list: {"scopes": ["events", "customers", "contact", "consent"]}')
    return json_response(201, deps().config.create_source(name.strip(), scopes=scopes))


@app.get("/admin/sources")
def list_sources() -> Any:
    return json_response(200, {"sources": [{k: v for k, v in s.items() if k != "sk"}
                                           for s in deps().config.list_sources()]})


@app.delete("/admin/sources/<source_id>")
def revoke_source(source_id: str) -> Any:
    deps().config.revoke_source(source_id)
    return json_response(200, {"source_id": source_id, "revoked": True})


# ---- secrets, NPS, stats, settings ---------------------------------------------------------------------

@app.post("/admin/webhooks/nps/rotate")
def rotate_nps_secret() -> Any:
    return json_response(200, {"name": "nps-webhook", "secret": deps().config.rotate_secret("nps-webhook"),
                               "previous_valid": True})


@app.get("/admin/nps")
def nps_report() -> Any:
    period = _query("period") or "month"
    if period not in ("day", "week", "month"):
        raise BadRequestError("period is day, week or month")
    return json_response(200, Surveys(deps()).report(_query("from"), _query("to"), period))


@app.get("/admin/stats")
def stats_overview() -> Any:
    return json_response(200, Admin(deps()).overview())


@app.get("/admin/stats/funnel")
def funnel() -> Any:
    return json_response(200, Admin(deps()).funnel(_query("from"), _query("to")))


@app.get("/admin/stats/rules/<rule>")
def rule_stats(rule: str) -> Any:
    return json_response(200, Admin(deps()).rule_stats(rule, _query("from"), _query("to")))


@app.get("/admin/settings")
def get_settings() -> Any:
    return json_response(200, deps().config.settings().model_dump())


@app.put("/admin/settings")
def put_settings() -> Any:
    return json_response(200, deps().config.put_settings(_json_body()).model_dump())


# ---- segments: counts -----------------------------------------------------------------------------------

@app.post("/admin/segments/count")
def count_segment() -> Any:
    body = _json_body()
    return json_response(200, Previews(deps()).count(condition=body.get("condition"), segment=body.get("segment"),
                                                     cursor=body.get("cursor"), limit=body.get("limit")))


# ---- customers --------------------------------------------------------------------------------------------

@app.get("/admin/customers/<customer_id>")
def customer(customer_id: str) -> Any:
    customer_id = path_id(customer_id)
    return json_response(200, Admin(deps()).customer(customer_id))


@app.get("/admin/customers/<customer_id>/events")
def customer_events(customer_id: str) -> Any:
    customer_id = path_id(customer_id)
    try:
        limit = int(_query("limit") or 100)
    except ValueError:
        raise BadRequestError("limit is a whole number") from None
    return json_response(200, Admin(deps()).events(customer_id, limit=min(max(limit, 1), 1000),
                                                   before=_query("before")))


@app.delete("/admin/customers/<customer_id>")
def forget(customer_id: str) -> Any:
    customer_id = path_id(customer_id)
    return json_response(200, Admin(deps()).forget(customer_id))


@app.post("/admin/customers/<customer_id>/segments")
def assign_segment(customer_id: str) -> Any:
    customer_id = path_id(customer_id)
    body = _json_body()
    return json_response(200, Previews(deps()).assign(customer_id, body.get("group"), body.get("segment"),
                                                      reason=body.get("reason"), until=body.get("until")))


@app.delete("/admin/customers/<customer_id>/segments/<group>")
def unassign_segment(customer_id: str, group: str) -> Any:
    customer_id = path_id(customer_id)
    return json_response(200, Previews(deps()).unassign(customer_id, group))


# ---- rules: preview and dry-run (before the generic definition routes) -------------------------------------

@app.post("/admin/rules/<rule_id>/preview")
def preview_rule(rule_id: str) -> Any:
    body = _json_body()
    customer_id = body.get("customer") or body.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id:
        raise BadRequestError('a preview needs a customer: {"customer": "<userId>"}')
    return json_response(200, Previews(deps()).preview(rule_id, customer_id, definition=body.get("definition"),
                                                       event=body.get("event")))


@app.post("/admin/rules/<rule_id>/dry-run")
def dry_run_rule(rule_id: str) -> Any:
    body = _json_body(required=False)
    return json_response(200, Previews(deps()).dry_run(rule_id, days=body.get("days", 7), cursor=body.get("cursor"),
                                                       limit=body.get("limit"), definition=body.get("definition")))


# ---- definitions: rules, segments, templates ------------------------------------------------------------

@app.get("/admin/<collection>")
def list_definitions(collection: str) -> Any:
    return json_response(200, {collection: Admin(deps()).list(_kind(collection))})


@app.get("/admin/<collection>/<def_id>")
def get_definition(collection: str, def_id: str) -> Any:
    return json_response(200, Admin(deps()).get(_kind(collection), def_id))


@app.get("/admin/<collection>/<def_id>/versions")
def versions(collection: str, def_id: str) -> Any:
    rows = deps().config.versions(_kind(collection), def_id)
    if not rows:
        raise NotFoundError(f"{collection[:-1]} '{def_id}' not found")
    return json_response(200, {"id": def_id, "versions": [
        {"version": r["version"], "applied_at": r.get("applied_at"), "enabled": r.get("enabled", True),
         "author": r.get("author")} for r in rows]})


@app.get("/admin/<collection>/<def_id>/lint")
def lint_definition(collection: str, def_id: str) -> Any:
    return json_response(200, Previews(deps()).lint(_kind(collection), def_id))


@app.put("/admin/<collection>/<def_id>")
def put_definition(collection: str, def_id: str) -> Any:
    """A definition as YAML (Content-Type: application/yaml; errors name the line) or JSON."""
    kind = _kind(collection)
    source = unquote(_header(SOURCE_HEADER) or "") or f"{collection}/{def_id}"
    ctype = (_header("Content-Type") or "").lower()
    raw = app.current_event.decoded_body or ""
    text = None
    linemap = None
    if "yaml" in ctype:
        from retention.admin.previews import parse_definition_text
        body, linemap = parse_definition_text(raw, source)
        text = raw
    else:
        body = _json_body()
    return json_response(200, Previews(deps()).apply(kind, def_id, body, source=source, linemap=linemap, text=text,
                                                     author=_author()))


@app.post("/admin/<collection>/<def_id>/rollback")
def rollback(collection: str, def_id: str) -> Any:
    version = _query("version")
    if version is not None and not version.isdigit():
        raise BadRequestError("version is a whole number")
    return json_response(200, Previews(deps()).rollback(_kind(collection), def_id, int(version) if version else None))


@app.post("/admin/<collection>/<def_id>/enable")
def enable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(_kind(collection), def_id, True)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": True})


@app.post("/admin/<collection>/<def_id>/disable")
def disable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(_kind(collection), def_id, False)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": False})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
