"""Ingestion API, wire-compatible with Segment's tracking API (POST /v1/batch, /v1/track, …)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.http import register_errors
from retention.core.observability import entry, logger
from retention.ingestion.api import KINDS, ingest_request, register_throttling

app = APIGatewayRestResolver(strip_prefixes=["/"])  # no OpenAPI validation: no route takes typed parameters
register_errors(app, logger)
register_throttling(app)

for _kind in KINDS:
    app.route(f"/v1/{_kind}", method="POST")(lambda _k=_kind: ingest_request(_k, app.current_event))


@entry("track_event")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
