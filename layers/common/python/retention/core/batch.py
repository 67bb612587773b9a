"""SQS partial-batch responses for the queue consumers (send_message, recompute), without
`aws_lambda_powertools.utilities.batch`: importing that one loads asyncio, every event data class and ~20
Powertools parser models (DynamoDB streams, Kinesis, Kafka, CloudWatch) at each cold start, for a loop of a
dozen lines. Same contract as its `BatchProcessor(EventType.SQS)` + `process_partial_response`: each record
is handed to the record handler; a record whose handler raised is reported in `batchItemFailures` (its
messageId; the handler logs what it wants, as with Powertools' default processor); when every record
failed, `BatchFailed` is raised unless `raise_on_entire_batch_failure=False` (then they are all reported)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class BatchFailed(Exception):
    """Every record of the batch failed (Lambda retries the whole batch)."""


class SqsAttributes:
    """The record's `attributes` (only what the consumers read)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def approximate_receive_count(self) -> str | None:
        value = self.raw.get("ApproximateReceiveCount")
        return None if value is None else str(value)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


class SqsRecord:
    """One SQS record of a Lambda event, read like Powertools' SQSRecord (`body`, `message_id`,
    `receipt_handle`, `attributes.approximate_receive_count`, `raw_event`, item access)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw_event = raw

    def __getitem__(self, key: str) -> Any:
        return self.raw_event[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw_event.get(key, default)

    @property
    def body(self) -> str:
        return str(self.raw_event.get("body") or "")

    @property
    def message_id(self) -> str:
        return str(self.raw_event["messageId"])

    @property
    def receipt_handle(self) -> str:
        return str(self.raw_event.get("receiptHandle") or "")

    @property
    def attributes(self) -> SqsAttributes:
        return SqsAttributes(self.raw_event.get("attributes") or {})


def process_sqs_batch(event: Mapping[str, Any], record_handler: Callable[[SqsRecord], Any],
                      raise_on_entire_batch_failure: bool = True) -> dict[str, list[dict[str, str]]]:
    """`{"batchItemFailures": [{"itemIdentifier": <messageId>}, …]}` for the records whose handler raised."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise ValueError("Invalid event format: an SQS event has a list of Records")
    failed: list[str] = []
    for raw in records:
        record = SqsRecord(raw)
        try:
            record_handler(record)
        except Exception:
            failed.append(record.message_id)
    if records and len(failed) == len(records) and raise_on_entire_batch_failure:
        raise BatchFailed(f"All records failed processing. {len(failed)} individual errors logged separately.")
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}
