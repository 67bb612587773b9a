"""retention.core.batch: the SQS partial-batch loop of send_message and recompute (in place of Powertools'
BatchProcessor, whose import loads asyncio and ~20 parser models at each cold start)."""

from __future__ import annotations

from typing import Any

import pytest
from retention.core.batch import BatchFailed, SqsRecord, process_sqs_batch


def record(mid: str, body: str, receives: str | None = "1") -> dict[str, Any]:
    return {"messageId": mid, "receiptHandle": f"rh-{mid}", "body": body,
            "attributes": {} if receives is None else {"ApproximateReceiveCount": receives}}


def handler(rec: SqsRecord) -> None:
    if rec.body == "bad":
        raise ValueError("poison")


def test_failed_records_are_reported_by_message_id_the_others_complete() -> None:
    event = {"Records": [record("a", "ok"), record("b", "bad"), record("c", "ok")]}
    assert process_sqs_batch(event, handler) == {"batchItemFailures": [{"itemIdentifier": "b"}]}


def test_a_clean_batch_and_an_empty_one_report_nothing() -> None:
    assert process_sqs_batch({"Records": [record("a", "ok")]}, handler) == {"batchItemFailures": []}
    assert process_sqs_batch({"Records": []}, handler) == {"batchItemFailures": []}


def test_an_entirely_failed_batch_raises_unless_asked_to_report_it() -> None:
    event = {"Records": [record("a", "bad"), record("b", "bad")]}
    with pytest.raises(BatchFailed):
        process_sqs_batch(event, handler)
    assert process_sqs_batch(event, handler, raise_on_entire_batch_failure=False) == {
        "batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}


def test_an_event_without_records_is_refused() -> None:
    with pytest.raises(ValueError):
        process_sqs_batch({"foo": 1}, handler)


def test_the_record_reads_like_powertools_sqs_record() -> None:
    rec = SqsRecord(record("m1", "{}", receives="3"))
    assert (rec.message_id, rec.receipt_handle, rec.body) == ("m1", "rh-m1", "{}")
    assert rec.attributes.approximate_receive_count == "3"
    assert rec["messageId"] == "m1" and rec.raw_event["body"] == "{}"
    assert SqsRecord(record("m2", "x", receives=None)).attributes.approximate_receive_count is None


def test_the_hot_handlers_no_longer_load_powertools_batch() -> None:
    import subprocess
    import sys
    code = ("import sys; import retention.core.batch, retention.messaging.delivery; "
            "print('aws_lambda_powertools.utilities.batch' in sys.modules, 'jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
