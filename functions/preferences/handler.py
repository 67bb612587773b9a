"""Unsubscribe and preferences: GET /u/{token} shows the page; POST is RFC 8058 one-click
(`List-Unsubscribe=One-Click` in the body) or the preference form, effective at once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.http import form_fields, page, register_errors
from retention.runtime import deps
from retention.surveys import Surveys
from retention.tokens import TokenError

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)

INVALID = ("Ссылка недействительна / Invalid link",
           "<p>Ссылка повреждена или устарела. / This link is damaged or expired.</p>")


@app.get("/u/<token>")
def show(token: str) -> Any:
    try:
        claims = Surveys(deps()).verify_unsub_token(token)
    except TokenError:
        return page(*INVALID, status=400)
    channel = claims.get("ch", "email")
    return page("Настройки рассылок / Subscription preferences", f"""
<form method="post"><input type="hidden" name="action" value="unsubscribe">
<input type="hidden" name="channel" value="{channel}">
<p>Отписаться от рассылок ({channel})? / Unsubscribe from marketing {channel}?</p>
<button type="submit">Отписаться / Unsubscribe</button></form>
<form method="post"><input type="hidden" name="action" value="preferences">
<p><label><input type="checkbox" name="email" value="1" checked> Email</label>
<label><input type="checkbox" name="sms" value="1" checked> SMS</label></p>
<button type="submit">Сохранить / Save</button></form>""")


@app.post("/u/<token>")
def update(token: str) -> Any:
    fields = form_fields(app.current_event.decoded_body)
    surveys = Surveys(deps())
    try:
        claims = surveys.verify_unsub_token(token)
        if fields.get("action") == "preferences":
            channels = {"email": fields.get("email") == "1", "sms": fields.get("sms") == "1"}
        else:  # RFC 8058 one-click: body "List-Unsubscribe=One-Click", or the page's button
            channels = {str(fields.get("channel") or claims.get("ch") or "email"): False}
        surveys.set_preferences(token, channels, source="one_click" if "List-Unsubscribe" in fields else "preferences")
    except TokenError:
        return page(*INVALID, status=400)
    metrics.add_metric(name="Unsubscribes", unit=MetricUnit.Count, value=sum(1 for v in channels.values() if not v))
    return page("Готово / Done", "<p>Настройки сохранены. / Your preferences are saved.</p>")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
