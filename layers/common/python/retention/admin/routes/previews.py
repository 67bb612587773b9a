"""What-ifs that change nothing: segment counts, a rule's preview for one customer, a rule's dry-run over
stored events (registered before the generic definition routes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.bodies import CountBody, DryRunBody, PreviewBody
from retention.admin.routes.common import body
from retention.core.http import json_response
from retention.core.runtime import deps

if TYPE_CHECKING:
    from retention.admin.previews import Previews


def _previews() -> Previews:
    """Loaded at the first request that needs it (lint, apply, previews, dry runs), not at cold start."""
    from retention.admin.previews import Previews
    return Previews(deps())


router = Router()


@router.post("/admin/segments/count")
def count_segment() -> Any:
    b = body(router, CountBody)
    return json_response(200, _previews().count(condition=b.condition, segment=b.segment, cursor=b.cursor,
                                                     limit=b.limit))


@router.post("/admin/rules/<rule_id>/preview")
def preview_rule(rule_id: str) -> Any:
    b = body(router, PreviewBody)
    return json_response(200, _previews().preview(rule_id, b.customer_ref, definition=b.definition,
                                                       event=b.event))


@router.post("/admin/rules/<rule_id>/dry-run")
def dry_run_rule(rule_id: str) -> Any:
    b = body(router, DryRunBody, required=False)
    return json_response(200, _previews().dry_run(rule_id, days=b.days, cursor=b.cursor, limit=b.limit,
                                                       definition=b.definition))
