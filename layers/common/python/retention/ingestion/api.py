"""One ingestion request, in the order that keeps a hostile body cheap (DESIGN §3 "Hostile bodies").

1. A write key in the Authorization header is checked before the body is touched: without a valid key
   nothing is base64-decoded, decompressed or parsed.
2. The body is decoded and decompressed streamed, linear in its size, capped at 5 MB and 16 gzip members.
3. It is parsed as JSON (no message looked at yet); a key in the body is checked now.
4. The message count is capped (over 2,500 → 413) before any message is normalized.
5. Messages are normalized (32 KiB each, batch context included) and ingested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from retention.core.runtime import Deps
from retention.ingestion import wire
from retention.ingestion.ingestor import Ingestor, IngestResult


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
