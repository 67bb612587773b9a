"""Ingestion API, wire-compatible with Segment's tracking API (POST /v1/batch, /v1/track, …), behind the
REST API (payload format 1.0) and behind the function's own URL (IngestUrl, payload format 2.0)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, LambdaFunctionUrlResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.http import register_errors
from retention.core.observability import entry, logger
from retention.ingestion.api import KINDS, ingest_request, register_throttling

# no OpenAPI validation: no route takes typed parameters
app = APIGatewayRestResolver(strip_prefixes=["/"])
url_app = LambdaFunctionUrlResolver(strip_prefixes=["/"])

for _app in (app, url_app):
    register_errors(_app, logger)
    register_throttling(_app)
    for _kind in KINDS:
        _app.route(f"/v1/{_kind}", method="POST")(lambda _k=_kind, _a=_app: ingest_request(_k, _a.current_event))


@entry("track_event")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    resolver = url_app if event.get("version") == "2.0" else app
    return resolver.resolve(event, context)
