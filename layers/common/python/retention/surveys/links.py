"""The double opt-in link (/optin/{token}, preferences function) and one-click survey answers
(/survey/{token}, nps_webhook function) as Powertools Routers the handlers include. GET shows a page and
records nothing (mail scanners follow every link); the page's button POSTs and records."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import Router

from retention.core.errors import NotFoundError
from retention.core.http import header
from retention.core.observability import count
from retention.core.runtime import deps
from retention.surveys import pages
from retention.surveys.answers import Surveys

optin_router = Router()
survey_router = Router()


@optin_router.get("/optin/<token>")
def optin_page(token: str) -> Any:
    claims = Surveys(deps()).verify_optin_token(token)
    return pages.for_request(optin_router.current_event, deps(), str(claims["c"])).optin_confirm()


@optin_router.post("/optin/<token>")
def optin_confirm(token: str) -> Any:
    event = optin_router.current_event
    identity = getattr(getattr(event, "request_context", None), "identity", None)
    result = Surveys(deps()).confirm_optin(token, {"method": "double opt-in link (POST)",
                                                   "ip": identity.source_ip if identity else None,
                                                   "user_agent": header(event, "User-Agent")})
    if not result["already"]:
        count("OptInsConfirmed")
    return pages.for_request(event, deps(), str(result.get("customer_id") or "") or None).optin_done()


@survey_router.get("/survey/<token>")
def survey_confirm(token: str) -> Any:
    claims = Surveys(deps()).verify_survey_token(token)
    return pages.for_request(survey_router.current_event, deps(), str(claims["c"])).survey_confirm(str(claims["r"]))


@survey_router.post("/survey/<token>")
def survey_answer(token: str) -> Any:
    surveys = Surveys(deps())
    page = pages.for_request(survey_router.current_event, surveys.d, str(surveys.verify_survey_token(token)["c"]))
    try:
        result = surveys.answer_survey(token)
    except NotFoundError:
        return page.nps_gone()
    if result["counted"]:
        count("SurveyAnswers")
    return page.survey_thanks()
