"""Ingestion API, wire-compatible with Segment's tracking API (POST /v1/batch, /v1/track, …)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention import clock, wire
from retention.http import json_response, register_errors
from retention.ingest import Ingestor
from retention.runtime import deps

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True, strip_prefixes=["/"])
register_errors(app, logger)

KINDS = ("batch", "track", "identify", "page", "screen", "alias", "group")


def handle(kind: str) -> Any:
    event = app.current_event
    received_at = clock.now()
    raw = wire.decode_body(event.body, bool(event.is_base64_encoded), dict(event.headers or {}))
    parsed = wire.parse_request(kind, raw, received_at)
    d = deps()
    key = wire.write_key_from(dict(event.headers or {}), None) or parsed.write_key
    source_id = d.config.authenticate_source(key)
    result = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).ingest(
        parsed.messages, source_id, now=received_at)
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=result.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(parsed.rejected))
    metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=result.duplicates)
    logger.info("ingested", extra={"source": source_id, "accepted": result.accepted,
                                   "rejected": len(parsed.rejected), "duplicates": result.duplicates})
    return json_response(200, wire.reply(parsed))


for _kind in KINDS:
    app.route(f"/v1/{_kind}", method="POST")(lambda _k=_kind: handle(_k))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
