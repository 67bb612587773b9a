"""track_event's HTTP surface: one request of the Segment tracking API in, the exact Segment reply out,
and AWS throttling / profile contention answered 429 with Retry-After (both clients retry 429)."""

from __future__ import annotations

from typing import Any

from retention.core import clock
from retention.core.http import json_response
from retention.core.observability import count, logger
from retention.core.runtime import deps
from retention.ingestion import wire
from retention.ingestion.ingestor import ContentionError, Ingestor

KINDS = ("batch", "track", "identify", "page", "screen", "alias", "group")
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "TransactionConflictException", "LimitExceededException"})
RETRY_AFTER_SECONDS = "2"


def throttled(message: str) -> Any:
    # both clients retry 429 (Segment's honours Retry-After); the messages were not stored, or were and
    # the retry is a duplicate
    return json_response(429, {"code": "throttled", "message": message}, {"Retry-After": RETRY_AFTER_SECONDS})


def register_throttling(app: Any) -> None:
    from botocore.exceptions import ClientError

    @app.exception_handler(ClientError)
    def _aws_error(exc: ClientError) -> Any:
        code = exc.response.get("Error", {}).get("Code", "")
        reasons = exc.response.get("CancellationReasons") or []
        if code in THROTTLED or any(r.get("Code") in ("ThrottlingError", "ProvisionedThroughputExceeded")
                                    for r in reasons):
            logger.warning("throttled", extra={"code": code})
            return throttled("the event store is busy; retry after a pause")
        raise exc

    @app.exception_handler(ContentionError)
    def _contention(exc: ContentionError) -> Any:
        logger.warning("contention", extra={"error": str(exc)})
        return throttled("the customer's profile is being updated concurrently; retry after a pause")


def ingest_request(kind: str, event: Any) -> Any:
    """One API Gateway request (`event`: Powertools' proxy event) of kind batch, track, identify …"""
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
    count("EventsAccepted", result.accepted)
    count("EventsRejected", len(parsed.rejected))
    count("EventsDuplicate", result.duplicates)
    logger.info("ingested", extra={"source": source_id, "accepted": result.accepted,
                                   "rejected": len(parsed.rejected), "duplicates": result.duplicates})
    return json_response(200, wire.reply(parsed))
