"""The global settings (a patch is merged and validated as a whole: retention.core.config.Settings)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.common import json_object
from retention.core.http import json_response
from retention.core.runtime import deps

router = Router()


@router.get("/admin/settings")
def get_settings() -> Any:
    return json_response(200, deps().config.settings().model_dump())


@router.put("/admin/settings")
def put_settings() -> Any:
    return json_response(200, deps().config.put_settings(json_object(router)).model_dump())
