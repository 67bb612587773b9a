"""Admin API (Bearer admin token, stored hashed): customers, definitions, previews and dry-runs, segment
counts and assignments, sources, stats, NPS, settings — one Router per resource in retention.admin.routes.
Also the web console (/console/…, retention.console: session cookie instead of the Bearer token), which
needs exactly this function's permissions."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.admin.routes import ROUTERS, authenticate
from retention.core.http import register_errors
from retention.core.observability import entry, logger

app = APIGatewayRestResolver(enable_validation=True)
register_errors(app, logger)
app.use(middlewares=[authenticate])
for router in ROUTERS:  # in order: specific dynamic routes before the generic definition routes
    app.include_router(router)


@entry("admin_api")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if str(event.get("path") or "").startswith("/console"):
        from retention.console.app import app as console  # loaded on the console's first request
        return console.resolve(event, context)
    return app.resolve(event, context)
