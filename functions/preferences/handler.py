"""Unsubscribe, preferences and the double opt-in (GET /optin/{token} a confirm page, POST records the
consent and starts the welcome chain). GET /u/{token} shows the page; POST is RFC 8058 one-click
(`List-Unsubscribe=One-Click` in the body, form-urlencoded or multipart/form-data) or the preference
form, effective at once (the profile's consent changes before the answer, with a consent log entry).

GET never changes anything (mail scanners open links); the page's button POSTs.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.http import form_body, register_errors
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.core.tokens import TokenError
from retention.surveys import pages
from retention.surveys.links import optin_router
from retention.surveys.preferences import Preferences

app = APIGatewayRestResolver()  # no OpenAPI validation: the routes take a str token and return Responses
register_errors(app, logger)
app.include_router(optin_router)  # retention.surveys.links


@app.exception_handler(TokenError)
def _bad_link(exc: TokenError) -> Any:
    return pages.for_request(app.current_event, deps()).link_invalid()


@app.get("/u/<token>")
def show(token: str) -> Any:
    surveys = Preferences(deps())
    claims = surveys.verify_unsub_token(token)
    page = pages.for_request(app.current_event, surveys.d, str(claims["c"]))
    if app.current_event.get_query_string_value("view") == "preferences":  # the email's preferences link
        return page.preferences_form(surveys.preferences_of(str(claims["c"])))
    return page.unsubscribe_form(pages.token_channel(claims))  # the unsubscribe link


@app.post("/u/<token>")
def update(token: str) -> Any:
    surveys = Preferences(deps())
    claims = surveys.verify_unsub_token(token)
    channels, source, locale = pages.preference_change(form_body(app.current_event), claims)
    result = surveys.set_preferences(token, channels, source=source, locale=locale)
    revoked = [ch for ch, v in result.get("changed", {}).items() if not v]
    if revoked:
        count("Unsubscribes", len(revoked))
    logger.info("preferences", extra={"source": source, "changed": result.get("changed"), "locale": locale})
    return pages.for_request(app.current_event, surveys.d, str(claims["c"])).preferences_saved(revoked)


@entry("preferences")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
