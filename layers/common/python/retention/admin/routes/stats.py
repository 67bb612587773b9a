"""Statistics: the overview, the funnel, one rule's steps and variants, the NPS report, the pipeline's health."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.admin.routes.common import query
from retention.admin.views import Admin
from retention.core.errors import BadRequestError
from retention.core.http import json_response
from retention.core.runtime import deps

router = Router()


@router.get("/admin/stats")
def stats_overview() -> Any:
    return json_response(200, Admin(deps()).overview())


@router.get("/admin/health")
def pipeline_health() -> Any:
    """Events per day (today, last 30 days), sends waiting in the send queue, dead letters (viewer)."""
    from retention.admin.health import health
    return json_response(200, health(deps()))


@router.get("/admin/stats/funnel")
def funnel() -> Any:
    return json_response(200, Admin(deps()).funnel(query(router, "from"), query(router, "to")))


@router.get("/admin/stats/rules/<rule>")
def rule_stats(rule: str) -> Any:
    return json_response(200, Admin(deps()).rule_stats(rule, query(router, "from"), query(router, "to")))


@router.get("/admin/nps")
def nps_report() -> Any:
    from retention.surveys.answers import Surveys
    period = query(router, "period") or "month"
    if period not in ("day", "week", "month"):
        raise BadRequestError("period is day, week or month")
    return json_response(200, Surveys(deps()).report(query(router, "from"), query(router, "to"), period))
