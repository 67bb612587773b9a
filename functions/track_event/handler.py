"""Ingestion API, wire-compatible with Segment's tracking API (POST /v1/batch, /v1/track, …)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from retention.core import clock
from retention.core.http import json_response, register_errors
from retention.core.runtime import deps
from retention.ingestion import api
from retention.ingestion.ingestor import ContentionError

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True, strip_prefixes=["/"])
register_errors(app, logger)

KINDS = ("batch", "track", "identify", "page", "screen", "alias", "group")
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "TransactionConflictException", "LimitExceededException"})
RETRY_AFTER_SECONDS = "2"


def _throttled(message: str) -> Any:
    # both clients retry 429 (Segment's honours Retry-After); the messages were not stored, or were and
    # the retry is a duplicate
    return json_response(429, {"code": "throttled", "message": message}, {"Retry-After": RETRY_AFTER_SECONDS})


@app.exception_handler(ClientError)
def _aws_error(exc: ClientError) -> Any:
    code = exc.response.get("Error", {}).get("Code", "")
    reasons = exc.response.get("CancellationReasons") or []
    if code in THROTTLED or any(r.get("Code") in ("ThrottlingError", "ProvisionedThroughputExceeded")
                                for r in reasons):
        logger.warning("throttled", extra={"code": code})
        return _throttled("the event store is busy; retry after a pause")
    raise exc


@app.exception_handler(ContentionError)
def _contention(exc: ContentionError) -> Any:
    logger.warning("contention", extra={"error": str(exc)})
    return _throttled("the customer's profile is being updated concurrently; retry after a pause")


def handle(kind: str) -> Any:
    event = app.current_event
    done = api.accept(deps(), kind, event.body, is_base64=bool(event.is_base64_encoded),
                      headers=dict(event.headers or {}), received_at=clock.now())
    reply = done.reply()
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=reply["accepted"])
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(reply["rejected"]))
    metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=done.result.duplicates)
    logger.info("ingested", extra={"source": done.source_id, "accepted": reply["accepted"],
                                   "rejected": len(reply["rejected"]), "duplicates": done.result.duplicates})
    return json_response(200, reply)


for _kind in KINDS:
    app.route(f"/v1/{_kind}", method="POST")(lambda _k=_kind: handle(_k))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
