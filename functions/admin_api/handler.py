"""Admin API (Bearer admin token, stored hashed): customers, definitions, stats, NPS."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.admin import KIND_OF, Admin
from retention.errors import BadRequestError, NotFoundError
from retention.http import json_response, register_errors
from retention.runtime import deps
from retention.surveys import Surveys

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)


def authenticate(app: APIGatewayRestResolver, next_middleware: Any) -> Any:
    deps().config.authenticate_admin(app.current_event.headers.get("Authorization")
                                     or app.current_event.headers.get("authorization"))
    return next_middleware(app)


app.use(middlewares=[authenticate])


def _query(name: str) -> str | None:
    return (app.current_event.query_string_parameters or {}).get(name)


def _kind(collection: str) -> str:
    if collection not in KIND_OF:
        raise NotFoundError(f"unknown collection '{collection}': use rules, segments or templates")
    return KIND_OF[collection]


@app.get("/admin/customers/<customer_id>")
def customer(customer_id: str) -> Any:
    return json_response(200, Admin(deps()).customer(customer_id))


@app.get("/admin/customers/<customer_id>/events")
def customer_events(customer_id: str) -> Any:
    limit = int(_query("limit") or 100)
    return json_response(200, Admin(deps()).events(customer_id, limit=min(max(limit, 1), 1000),
                                                   before=_query("before")))


@app.delete("/admin/customers/<customer_id>")
def forget(customer_id: str) -> Any:
    return json_response(200, Admin(deps()).forget(customer_id))


@app.get("/admin/<collection>")
def list_definitions(collection: str) -> Any:
    if collection == "nps":
        return nps_report()
    if collection == "stats":
        return stats_overview()
    if collection == "settings":
        return get_settings()
    return json_response(200, {collection: Admin(deps()).list(_kind(collection))})


@app.get("/admin/<collection>/<def_id>")
def get_definition(collection: str, def_id: str) -> Any:
    return json_response(200, Admin(deps()).get(_kind(collection), def_id))


@app.get("/admin/<collection>/<def_id>/versions")
def versions(collection: str, def_id: str) -> Any:
    rows = deps().config.versions(_kind(collection), def_id)
    return json_response(200, {"id": def_id, "versions": [
        {"version": r["version"], "applied_at": r.get("applied_at"), "enabled": r.get("enabled", True),
         "author": r.get("author")} for r in rows]})


@app.put("/admin/<collection>/<def_id>")
def put_definition(collection: str, def_id: str) -> Any:
    body = _body_definition()
    kind = _kind(collection)
    key = "group" if kind == "SEGDEF" else "id"
    body.setdefault(key, def_id)
    if body[key] != def_id:
        raise BadRequestError(f"{key} in the body ('{body[key]}') differs from the URL ('{def_id}')")
    return json_response(200, Admin(deps()).apply(kind, body, source=f"{collection}/{def_id}"))


@app.post("/admin/<collection>/<def_id>/rollback")
def rollback(collection: str, def_id: str) -> Any:
    version = _query("version")
    item = deps().config.rollback(_kind(collection), def_id, int(version) if version else None)
    return json_response(200, {"id": def_id, "version": item["version"]})


@app.post("/admin/<collection>/<def_id>/enable")
def enable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(_kind(collection), def_id, True)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": True})


@app.post("/admin/<collection>/<def_id>/disable")
def disable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(_kind(collection), def_id, False)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": False})


@app.get("/admin/stats/rules/<rule>")
def rule_stats(rule: str) -> Any:
    return json_response(200, Admin(deps()).rule_stats(rule, _query("from"), _query("to")))


@app.get("/admin/stats")
def stats_overview() -> Any:
    return json_response(200, Admin(deps()).overview())


def nps_report() -> Any:
    period = _query("period") or "month"
    if period not in ("day", "week", "month"):
        raise BadRequestError("period is day, week or month")
    return json_response(200, Surveys(deps()).report(_query("from"), _query("to"), period))


@app.get("/admin/settings")
def get_settings() -> Any:
    return json_response(200, deps().config.settings().model_dump())


@app.put("/admin/settings")
def put_settings() -> Any:
    body = app.current_event.json_body
    if not isinstance(body, dict):
        raise BadRequestError("settings are a JSON object")
    return json_response(200, deps().config.put_settings(body).model_dump())


def _body_definition() -> dict[str, Any]:
    """A definition as JSON, or as YAML text (Content-Type: application/yaml)."""
    event = app.current_event
    ctype = (event.headers.get("Content-Type") or event.headers.get("content-type") or "").lower()
    raw = event.decoded_body or ""
    if "yaml" in ctype:
        import yaml
        try:
            body = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise BadRequestError(f"invalid YAML: {exc}") from exc
    else:
        import json
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequestError(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("a definition is an object")
    return body


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
