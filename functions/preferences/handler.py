"""Unsubscribe and preferences: GET /u/{token} shows the page; POST is RFC 8058 one-click
(`List-Unsubscribe=One-Click` in the body, form-urlencoded or multipart/form-data) or the preference
form, effective at once (the profile's consent changes before the answer, with a consent log entry).

GET never changes anything (mail scanners open links); the page's button POSTs.
"""

from __future__ import annotations

import html
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.http import form_fields, page, register_errors
from retention.core.runtime import deps
from retention.core.tokens import TokenError
from retention.surveys.answers import Surveys

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)

CHANNELS = ("email", "sms")
CHANNEL_NAMES = {"email": "Email", "sms": "SMS"}
INVALID = ("Ссылка недействительна / Invalid link",
           "<p>Ссылка повреждена или устарела. / This link is damaged or expired.</p>")


def _channel(claims: dict[str, Any]) -> str:
    channel = str(claims.get("ch") or "email")
    return channel if channel in CHANNELS else "email"


@app.get("/u/<token>")
def show(token: str) -> Any:
    surveys = Surveys(deps())
    try:
        claims = surveys.verify_unsub_token(token)
    except TokenError:
        return page(*INVALID, status=400)
    channel = _channel(claims)
    current = surveys.preferences_of(str(claims["c"]))
    boxes = "".join(
        f'<label><input type="checkbox" name="{ch}" value="1"{" checked" if current.get(ch) else " disabled"}> '
        f"{CHANNEL_NAMES[ch]}</label> " for ch in CHANNELS)  # the link only revokes: no box grants
    name = html.escape(CHANNEL_NAMES[channel])
    return page("Настройки рассылок / Subscription preferences", f"""
<form method="post"><input type="hidden" name="action" value="unsubscribe">
<input type="hidden" name="channel" value="{html.escape(channel)}">
<p>Отписаться от рассылок ({name})? / Unsubscribe from marketing {name}?</p>
<button type="submit">Отписаться / Unsubscribe</button></form>
<form method="post"><input type="hidden" name="action" value="preferences">
<p>{boxes}</p>
<button type="submit">Сохранить / Save</button></form>""")


def _fields() -> dict[str, str]:
    """Form fields of a urlencoded or a multipart/form-data body (RFC 8058 allows both)."""
    event = app.current_event
    body = event.decoded_body or ""
    ctype = next((v for k, v in (event.headers or {}).items() if k.lower() == "content-type"), "") or ""
    if ctype.lower().startswith("multipart/form-data"):
        from email.parser import BytesParser
        from email.policy import HTTP
        try:
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + body.encode("utf-8", "surrogateescape"))
            out: dict[str, str] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    out[str(name)] = str(part.get_content()).strip()
            return out
        except Exception:
            return {}
    return form_fields(body)


@app.post("/u/<token>")
def update(token: str) -> Any:
    fields = _fields()
    surveys = Surveys(deps())
    try:
        claims = surveys.verify_unsub_token(token)
        one_click = fields.get("List-Unsubscribe") == "One-Click"
        if fields.get("action") == "preferences" and not one_click:
            channels = {ch: fields.get(ch) == "1" for ch in CHANNELS}
            source = "preferences"
        else:  # RFC 8058 one-click, or the page's unsubscribe button: the token's channel
            requested = str(fields.get("channel") or "")
            channels = {requested if requested in CHANNELS else _channel(claims): False}
            source = "one_click" if one_click else "unsubscribe"
        result = surveys.set_preferences(token, channels, source=source)
    except TokenError:
        return page(*INVALID, status=400)
    revoked = sum(1 for v in result.get("changed", {}).values() if not v)
    if revoked:
        metrics.add_metric(name="Unsubscribes", unit=MetricUnit.Count, value=revoked)
    logger.info("preferences", extra={"source": source, "changed": result.get("changed")})
    return page("Готово / Done", "<p>Настройки сохранены. / Your preferences are saved.</p>")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
