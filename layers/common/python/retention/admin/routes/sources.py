"""Sources (write keys, stored hashed) and the NPS webhook's signing secret."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.bodies import SourceBody
from retention.admin.routes.common import body
from retention.core.http import json_response
from retention.core.runtime import deps

router = Router()


@router.post("/admin/sources")
def create_source() -> Any:
    b = body(router, SourceBody)
    return json_response(201, deps().config.create_source(b.name, scopes=b.scopes))


@router.get("/admin/sources")
def list_sources() -> Any:
    return json_response(200, {"sources": [{k: v for k, v in s.items() if k != "sk"}
                                           for s in deps().config.list_sources()]})


@router.delete("/admin/sources/<source_id>")
def revoke_source(source_id: str) -> Any:
    deps().config.revoke_source(source_id)
    return json_response(200, {"source_id": source_id, "revoked": True})


@router.post("/admin/webhooks/nps/rotate")
def rotate_nps_secret() -> Any:
    return json_response(200, {"name": "nps-webhook", "secret": deps().config.rotate_secret("nps-webhook"),
                               "previous_valid": True})
