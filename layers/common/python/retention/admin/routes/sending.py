"""The send brake: GET /admin/sending (viewer), POST /admin/sending/resume (admin)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.common import author, json_object, query
from retention.core.errors import BadRequestError
from retention.core.http import json_response
from retention.core.runtime import deps
from retention.messaging.brake import Brake, sending_identity

router = Router()


def _brake() -> Brake:
    d = deps()
    return Brake(d.dynamodb, d.env.messages_table, d.config)


def _identity(value: Any = None) -> str:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise BadRequestError("identity is a sending domain, e.g. shop.example")
    return value.strip().lower() if value else sending_identity(deps().env.sender_email)


@router.get("/admin/sending")
def sending_status() -> Any:
    return json_response(200, _brake().status(_identity(query(router, "identity"))))


@router.post("/admin/sending/resume")
def sending_resume() -> Any:
    identity = _identity(json_object(router, required=False).get("identity"))
    return json_response(200, _brake().resume(identity, by=author(router)))
