"""SQS consumer: one SendRequest per record, partial-batch failures.

What comes back in `batchItemFailures` (SQS redelivers it; after maxReceiveCount it goes to the DLQ):
- a throttled send (the ledger says `retry`; the message's visibility is backed off exponentially);
  after REQUEUE_AFTER_RECEIVES receives it is re-sent as a fresh delayed message instead, so
  throttling alone never parks good mail in the DLQ;
- a poison record (a body that is not a SendRequest): it fails every time and so lands in the DLQ,
  where it can be inspected — it never fails the rest of the batch;
- an unexpected error (DynamoDB unavailable, an unknown provider error): the ledger claim is released.
Everything else (sent, skipped with a reason, deferred, duplicate, rejected) completes the record.
"""

from __future__ import annotations

import random
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.runtime import Deps, deps
from retention.messaging.rendering import Renderer
from retention.messaging.requests import SendRequest
from retention.messaging.sender import RetryableSendError, Sender

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()
# a batch whose records all failed reports them all (no exception: the good records of the next
# receive are not held hostage, and the Lambda error metric stays for real crashes)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

VISIBILITY_BASE = 30  # seconds before a throttled message is tried again, doubled per receive
VISIBILITY_CAP = 900
# the queue parks a message in the DLQ after 5 receives (infra/constructs/queues.py): a message throttled
# this many times is re-sent as a fresh message (delayed) instead, so sustained throttling never sends
# good mail to the DLQ. The ledger (`retry`) lets exactly one copy through.
REQUEUE_AFTER_RECEIVES = 3


def provider_clients(d: Deps) -> tuple[Any, Any]:
    """SES and SNS clients that never retry by themselves: botocore retries a read timeout, and a
    retried SendEmail/Publish after a timeout could deliver the message twice behind the ledger.
    Throttling is retried by the Sender (backoff) and by SQS. Clients injected into Deps (tests, the
    local runtime) are used as they are."""
    injected = vars(d)
    if "sesv2" in injected and "sns" in injected:
        return injected["sesv2"], injected["sns"]
    if "_send_clients" not in injected:
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                     tcp_keepalive=True)
        injected["_send_clients"] = (boto3.client("sesv2", config=cfg), boto3.client("sns", config=cfg))
    return injected["_send_clients"]


def sender() -> Sender:
    d = deps()
    ses, sns = provider_clients(d)
    return Sender(ddb_client=d.dynamodb, ses=ses, sns=sns, sqs=d.sqs, env=d.env, config=d.config,
                  renderer=Renderer(d.config, d.env))


def _receives(record: SQSRecord) -> int:
    try:
        return int(record.attributes.approximate_receive_count or 1)
    except (TypeError, ValueError):
        return 1


def _delay(receives: int) -> int:
    """30 s, 60 s, 120 s … doubled per receive, jittered, at most 15 min."""
    delay = min(VISIBILITY_CAP, VISIBILITY_BASE * 2 ** max(0, receives - 1))
    return int(delay / 2 + random.uniform(0, delay / 2))


def _requeue(record: SQSRecord) -> bool:
    """A fresh, delayed copy of a message throttled too often (True when it was queued)."""
    d = deps()
    try:
        d.sqs.send_message(QueueUrl=d.env.send_queue_url, MessageBody=record.body,
                           DelaySeconds=_delay(_receives(record)))
        return True
    except Exception:
        logger.warning("could not requeue the throttled message", extra={"message_id": record.message_id})
        return False


def _back_off(record: SQSRecord) -> None:
    """Push a throttled message's next delivery out (the queue's visibility timeout is for crashes)."""
    delay = _delay(_receives(record))
    d = deps()
    try:
        d.sqs.change_message_visibility(QueueUrl=d.env.send_queue_url, ReceiptHandle=record.receipt_handle,
                                        VisibilityTimeout=delay)
    except Exception:
        logger.warning("could not back off the visibility", extra={"message_id": record.message_id})


def record_handler(record: SQSRecord) -> None:
    try:
        request = SendRequest.model_validate_json(record.body)
    except ValueError:
        metrics.add_metric(name="Messages_poison", unit=MetricUnit.Count, value=1)
        logger.error("poison send request", extra={"message_id": record.message_id, "body": record.body[:500]})
        raise
    try:
        outcome = _sender().send(request)
    except RetryableSendError:
        metrics.add_metric(name="Messages_throttled", unit=MetricUnit.Count, value=1)
        logger.warning("throttled", extra={"rule": request.rule, "step": request.step, "ledger": request.ledger_id,
                                           "receives": _receives(record)})
        if _receives(record) >= REQUEUE_AFTER_RECEIVES and _requeue(record):
            return  # this record completes; its fresh copy comes back after the delay
        _back_off(record)
        raise
    metrics.add_metric(name=f"Messages_{outcome.status}", unit=MetricUnit.Count, value=1)
    logger.info("send", extra={"rule": request.rule, "step": request.step, "status": outcome.status,
                               "reason": outcome.reason, "ledger": request.ledger_id})


_current: list[Sender] = []


def _sender() -> Sender:
    return _current[0] if _current else sender()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _current[:] = [sender()]  # one Sender per invocation (clients and caches are per container)
    _current[0].time_left = lambda: context.get_remaining_time_in_millis() / 1000
    try:
        return dict(process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                             context=context))
    finally:
        _current.clear()
