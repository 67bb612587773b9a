"""Customers: the profile view, events, erasure, manual segment assignments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.bodies import AssignBody
from retention.admin.routes.common import body, query
from retention.admin.views import Admin
from retention.core.errors import BadRequestError
from retention.core.http import json_response, path_id
from retention.core.runtime import deps

if TYPE_CHECKING:
    from retention.admin.previews import Previews


def _previews() -> Previews:
    """Loaded at the first request that needs it (lint, apply, previews, dry runs), not at cold start."""
    from retention.admin.previews import Previews
    return Previews(deps())


router = Router()


@router.get("/admin/customers/<customer_id>")
def customer(customer_id: str) -> Any:
    customer_id = path_id(customer_id)  # REST API Gateway hands the path over percent-encoded
    return json_response(200, Admin(deps()).customer(customer_id))


@router.get("/admin/customers/<customer_id>/events")
def customer_events(customer_id: str) -> Any:
    customer_id = path_id(customer_id)  # REST API Gateway hands the path over percent-encoded
    try:
        limit = int(query(router, "limit") or 100)
    except ValueError:
        raise BadRequestError("limit is a whole number") from None
    return json_response(200, Admin(deps()).events(customer_id, limit=min(max(limit, 1), 1000),
                                                   before=query(router, "before")))


@router.delete("/admin/customers/<customer_id>")
def forget(customer_id: str) -> Any:
    customer_id = path_id(customer_id)  # REST API Gateway hands the path over percent-encoded
    return json_response(200, Admin(deps()).forget(customer_id))


@router.post("/admin/customers/<customer_id>/segments")
def assign_segment(customer_id: str) -> Any:
    customer_id = path_id(customer_id)  # REST API Gateway hands the path over percent-encoded
    b = body(router, AssignBody)
    return json_response(200, _previews().assign(customer_id, b.group, b.segment, reason=b.reason,
                                                      until=b.until))


@router.delete("/admin/customers/<customer_id>/segments/<group>")
def unassign_segment(customer_id: str, group: str) -> Any:
    customer_id = path_id(customer_id)  # REST API Gateway hands the path over percent-encoded
    return json_response(200, _previews().unassign(customer_id, group))
