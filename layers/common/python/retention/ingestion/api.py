"""track_event's HTTP surface: one request of the Segment tracking API in, the exact Segment reply out,
and AWS throttling / profile contention answered 429 with Retry-After (both clients retry 429).

The order keeps a hostile body cheap (DESIGN §3 "Hostile bodies"):
1. A write key in the Authorization header is checked before the body is touched: without a valid key
   nothing is base64-decoded, decompressed or parsed.
2. The body is decoded and decompressed streamed, linear in its size, capped at 5 MB and 16 gzip members.
3. It is parsed as JSON (no message looked at yet); a key in the body is checked now.
4. The message count is capped (over 2,500 → 413) before any message is normalized.
5. Messages are normalized (32 KiB each, batch context included) and ingested with the key's scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retention.core import clock
from retention.core.http import json_response
from retention.core.observability import count, logger
from retention.core.runtime import Deps, deps
from retention.ingestion import wire
from retention.ingestion.ingestor import ContentionError, Ingestor, IngestResult

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
    done = accept(deps(), kind, event.body, is_base64=bool(event.is_base64_encoded),
                  headers=dict(event.headers or {}), received_at=clock.now())
    reply = done.reply()
    count("EventsAccepted", reply["accepted"])
    count("EventsRejected", len(reply["rejected"]))
    count("EventsDuplicate", done.result.duplicates)
    logger.info("ingested", extra={"source": done.source_id, "accepted": reply["accepted"],
                                   "rejected": len(reply["rejected"]), "duplicates": done.result.duplicates})
    return json_response(200, reply)


@dataclass
class Accepted:
    source_id: str
    parsed: wire.ParsedRequest
    result: IngestResult

    def reply(self) -> dict[str, Any]:
        return wire.reply(self.parsed, self.result.rejected)


def accept(d: Deps, kind: str, body: str | bytes | None, *, is_base64: bool, headers: Mapping[str, str] | None,
           received_at: datetime) -> Accepted:
    header_key = wire.write_key_from(headers, None)
    source = d.config.source_of(header_key) if header_key else None
    raw = wire.decode_body(body, is_base64, headers)
    loaded = wire.load_request(kind, raw)
    if source is None:
        source = d.config.source_of(loaded.write_key)
    parsed = wire.parse_loaded(loaded, received_at)
    result = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).ingest(
        parsed.messages, source.source_id, now=received_at, scopes=source.scopes)
    return Accepted(source_id=source.source_id, parsed=parsed, result=result)
