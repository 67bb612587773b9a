"""Ingestion API, wire-compatible with Segment's tracking API (POST /v1/batch, /v1/track, …)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from retention.core import clock, ddb
from retention.core.http import json_response, register_errors
from retention.core.runtime import deps
from retention.ingestion import wire
from retention.ingestion.ingestor import ContentionError, Ingestor

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True, strip_prefixes=["/"])
register_errors(app, logger)

KINDS = ("batch", "track", "identify", "page", "screen", "alias", "group")
RETRY_AFTER_SECONDS = "2"


def _throttled(message: str) -> Any:
    # both clients retry 429 (Segment's honours Retry-After); the messages were not stored, or were and
    # the retry is a duplicate
    return json_response(429, {"code": "throttled", "message": message}, {"Retry-After": RETRY_AFTER_SECONDS})


@app.exception_handler(ClientError)
def _aws_error(exc: ClientError) -> Any:
    if ddb.is_throttled(exc):
        logger.warning("throttled", extra={"code": ddb.error_code(exc)})
        return _throttled("the event store is busy; retry after a pause")
    raise exc


@app.exception_handler(ContentionError)
def _contention(exc: ContentionError) -> Any:
    logger.warning("contention", extra={"error": str(exc)})
    return _throttled("the customer's profile is being updated concurrently; retry after a pause")


def handle(kind: str) -> Any:
    event = app.current_event
    received_at = clock.now()
    headers = dict(event.headers or {})
    d = deps()
    header_key = wire.write_key_from(headers, None)
    # a key in the Authorization header is checked before the body is read (401 before 400 or 413)
    source_id = d.config.authenticate_source(header_key) if header_key else None
    raw = wire.decode_body(event.body, bool(event.is_base64_encoded), headers)
    parsed = wire.parse_request(kind, raw, received_at)
    if source_id is None:
        source_id = d.config.authenticate_source(parsed.write_key)
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
