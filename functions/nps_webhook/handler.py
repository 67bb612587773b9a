"""Survey answers: score links (GET shows a confirm page and records nothing: mail scanners follow every
link; POST records) and the signed webhook of external survey tools."""

from __future__ import annotations

import html
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.errors import NotFoundError, RetentionError
from retention.core.http import form_fields, json_response, page, register_errors
from retention.core.runtime import deps
from retention.core.tokens import TokenError, TokenExpiredError
from retention.surveys import nps
from retention.surveys.answers import Surveys

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)


def _token_problem(exc: TokenError) -> Any:
    if isinstance(exc, TokenExpiredError):
        return page("Ссылка устарела / Link expired",
                    "<p>Срок действия ссылки истёк. Спасибо, что хотели ответить!</p>"
                    "<p>This survey link has expired. Thank you for wanting to answer!</p>", 410)
    return page("Ссылка недействительна / Invalid link",
                "<p>Эта ссылка повреждена или недействительна.</p><p>This link is damaged or invalid.</p>", 400)


def _form(token: str, score: int | None, error: str | None = None) -> str:
    buttons = "".join(
        f'<button name="score" value="{n}" type="submit"{" autofocus" if n == score else ""}>{n}</button>'
        for n in range(11))
    chosen = f"<p>Ваша оценка / your score: <b>{score}</b></p>" if score is not None else ""
    err = f'<p style="color:#b00">{html.escape(error)}</p>' if error else ""
    hidden = f'<input type="hidden" name="score" value="{score}">' if score is not None else ""
    return (f"{err}<p>Насколько вероятно, что вы порекомендуете нас друзьям? / "
            f"How likely are you to recommend us?</p>{chosen}"
            f'<form method="post"><label>Комментарий / comment<br><textarea name="comment" maxlength="2000">'
            f"</textarea></label><p>{hidden}"
            f'{"<button type=submit>Отправить / Send</button>" if score is not None else ""}</p>'
            f'<p class="scores">{buttons if score is None else ""}</p></form>')


@app.get("/nps/<token>")
def confirm(token: str) -> Any:
    surveys = Surveys(deps())
    try:
        surveys.verify_nps_token(token)
    except TokenError as exc:
        return _token_problem(exc)
    raw = (app.current_event.query_string_parameters or {}).get("score")
    score: int | None = None
    error = None
    if raw is not None:
        try:
            score = nps.validate_score(raw)
        except RetentionError as exc:
            error = exc.message
    return page("Оцените нас / Rate us", _form(token, score, error))


@app.post("/nps/<token>")
def answer(token: str) -> Any:
    event = app.current_event
    fields = form_fields(event.decoded_body)
    surveys = Surveys(deps())
    try:
        response = surveys.answer_link(token, fields.get("score"), fields.get("comment"))
    except TokenError as exc:
        return _token_problem(exc)
    except NotFoundError:
        # the customer was erased (or never existed): nothing to answer for, no form to retry
        return page("Опрос не найден / Survey not found",
                    "<p>Этот опрос больше недоступен.</p><p>This survey is no longer available.</p>", 404)
    except RetentionError as exc:
        return page("Проверьте ответ / Check your answer", _form(token, None, exc.message), exc.status)
    metrics.add_metric(name="NpsAnswers", unit=MetricUnit.Count, value=1)
    return page("Спасибо! / Thank you!",
                f"<p>Мы записали вашу оценку: <b>{response.score}</b>. Спасибо!</p>"
                f"<p>We recorded your score: <b>{response.score}</b>. Thank you!</p>")


@app.post("/v1/webhooks/nps")
def webhook() -> Any:
    event = app.current_event
    raw = event.decoded_body or ""
    body = raw.encode() if isinstance(raw, str) else raw
    response = Surveys(deps()).webhook(body, event.headers.get("X-Signature") or event.headers.get("x-signature"))
    metrics.add_metric(name="NpsWebhookAnswers", unit=MetricUnit.Count, value=1)
    return json_response(200, {"success": True, "customer_id": response.customer_id, "score": response.score,
                               "group": nps.nps_group(response.score)})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
