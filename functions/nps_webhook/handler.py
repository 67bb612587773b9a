"""Survey answers: NPS score links, one-click reason links (retention.surveys.links), the signed webhook."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.errors import NotFoundError, RetentionError
from retention.core.http import form_body, header, json_response, register_errors
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.core.tokens import TokenError, TokenExpiredError
from retention.surveys import nps, pages
from retention.surveys.answers import Surveys
from retention.surveys.links import survey_router

app = APIGatewayRestResolver()  # no OpenAPI validation: the routes take a str token and return Responses
register_errors(app, logger)
app.include_router(survey_router)  # retention.surveys.links


@app.exception_handler(TokenError)
def _bad_link(exc: TokenError) -> Any:
    return pages.for_request(app.current_event, deps()).nps_link_problem(expired=isinstance(exc, TokenExpiredError))


@app.get("/nps/<token>")
def confirm(token: str) -> Any:
    claims = Surveys(deps()).verify_nps_token(token)  # records nothing: mail scanners follow every link
    page = pages.for_request(app.current_event, deps(), str(claims["c"]))
    return page.nps_confirm(app.current_event.get_query_string_value("score"))


@app.post("/nps/<token>")
def answer(token: str) -> Any:
    fields, surveys = form_body(app.current_event), Surveys(deps())
    page = pages.for_request(app.current_event, surveys.d, str(surveys.verify_nps_token(token)["c"]))
    try:
        response = surveys.answer_link(token, fields.get("score"), fields.get("comment"))
    except NotFoundError:
        return page.nps_gone()
    except RetentionError as exc:
        return page.nps_form(None, exc.message, title_key="nps_check_title", status=exc.status)
    count("NpsAnswers")
    return page.nps_thanks(response.score)


@app.post("/v1/webhooks/nps")
def webhook() -> Any:
    raw = (app.current_event.decoded_body or "").encode()  # the signature covers the exact bytes
    response = Surveys(deps()).webhook(raw, header(app.current_event, "X-Signature"))
    count("NpsWebhookAnswers")
    return json_response(200, {"success": True, "customer_id": response.customer_id, "score": response.score,
                               "group": nps.nps_group(response.score)})


@entry("nps_webhook")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
