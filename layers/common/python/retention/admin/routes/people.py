"""People's tokens (admin) and the audit log (viewer)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.people import People
from retention.admin.routes.common import author, json_object, query
from retention.core.errors import BadRequestError
from retention.core.http import json_response
from retention.core.runtime import deps

router = Router()


@router.post("/admin/tokens")
def create_token() -> Any:
    body = json_object(router)
    expires = body.get("expires")
    if expires is not None and not isinstance(expires, str):
        raise BadRequestError('expires is a duration such as "90d"')
    name, role = body.get("name"), body.get("role") or "viewer"
    if not isinstance(name, str) or not isinstance(role, str):
        raise BadRequestError('a token needs a name and a role: {"name": "anna", "role": "editor"}')
    return json_response(201, People(deps().config).create(name, role, expires=expires, by=author(router)))


@router.get("/admin/tokens")
def list_tokens() -> Any:
    return json_response(200, {"tokens": People(deps().config).tokens()})


@router.delete("/admin/tokens/<token_id>")
def revoke_token(token_id: str) -> Any:
    return json_response(200, People(deps().config).revoke(token_id, by=author(router)))


@router.get("/admin/audit")
def audit_log() -> Any:
    try:
        limit = min(max(int(query(router, "limit") or 100), 1), 1000)
    except ValueError:
        raise BadRequestError("limit is a whole number") from None
    return json_response(200, {"entries": People(deps().config).audit_log(
        since=query(router, "since"), until=query(router, "until"), kind=query(router, "kind"),
        who=query(router, "who"), limit=limit)})
