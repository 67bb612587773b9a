"""Definitions (rules, segments, templates): list, read, versions, lint, apply (YAML with line-numbered
errors, or JSON), rollback, enable, disable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.common import author, json_object, kind, query
from retention.admin.views import Admin
from retention.core.errors import BadRequestError, NotFoundError
from retention.core.http import header, json_response
from retention.core.runtime import deps

if TYPE_CHECKING:
    from retention.admin.previews import Previews


def _previews() -> Previews:
    """Loaded at the first request that needs it (lint, apply, previews, dry runs), not at cold start."""
    from retention.admin.previews import Previews
    return Previews(deps())


router = Router()
SOURCE_HEADER = "X-Retention-Source"  # the client's file name (percent-encoded), so errors read file:line


@router.get("/admin/<collection>")
def list_definitions(collection: str) -> Any:
    return json_response(200, {collection: Admin(deps()).list(kind(collection))})


@router.get("/admin/<collection>/<def_id>")
def get_definition(collection: str, def_id: str) -> Any:
    return json_response(200, Admin(deps()).get(kind(collection), def_id))


@router.get("/admin/<collection>/<def_id>/versions")
def versions(collection: str, def_id: str) -> Any:
    rows = deps().config.versions(kind(collection), def_id)
    if not rows:
        raise NotFoundError(f"{collection[:-1]} '{def_id}' not found")
    return json_response(200, {"id": def_id, "versions": [
        {"version": r["version"], "applied_at": r.get("applied_at"), "enabled": r.get("enabled", True),
         "author": r.get("author")} for r in rows]})


@router.get("/admin/<collection>/<def_id>/lint")
def lint_definition(collection: str, def_id: str) -> Any:
    return json_response(200, _previews().lint(kind(collection), def_id))


@router.put("/admin/<collection>/<def_id>")
def put_definition(collection: str, def_id: str) -> Any:
    """A definition as YAML (Content-Type: application/yaml; errors name the line) or JSON."""
    what, event = kind(collection), router.current_event
    source = unquote(header(event, SOURCE_HEADER) or "") or f"{collection}/{def_id}"
    text = linemap = None
    if "yaml" in (header(event, "Content-Type") or "").lower():
        from retention.admin.previews import parse_definition_text
        text = event.decoded_body or ""
        definition, linemap = parse_definition_text(text, source)
    else:
        definition = json_object(router)
    return json_response(200, _previews().apply(what, def_id, definition, source=source,
                                                     linemap=linemap, text=text, author=author(router)))


@router.post("/admin/<collection>/<def_id>/rollback")
def rollback(collection: str, def_id: str) -> Any:
    version = query(router, "version")
    if version is not None and not version.isdigit():
        raise BadRequestError("version is a whole number")
    return json_response(200, _previews().rollback(kind(collection), def_id, int(version) if version else None))


@router.post("/admin/<collection>/<def_id>/enable")
def enable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(kind(collection), def_id, True)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": True})


@router.post("/admin/<collection>/<def_id>/disable")
def disable(collection: str, def_id: str) -> Any:
    item = deps().config.set_enabled(kind(collection), def_id, False)
    return json_response(200, {"id": def_id, "version": item["version"], "enabled": False})
