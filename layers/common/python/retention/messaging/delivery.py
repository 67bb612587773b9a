"""The send queue's consumer policy: one SendRequest per SQS record, partial-batch failures.

What fails a record (SQS redelivers it; after maxReceiveCount it goes to the DLQ):
- a throttled send (the ledger says `retry`; the message's visibility is backed off exponentially);
  after REQUEUE_AFTER_RECEIVES receives it is re-sent as a fresh delayed message instead, so
  throttling alone never parks good mail in the DLQ;
- a poison record (a body that is not a SendRequest): it fails every time and so lands in the DLQ,
  where it can be inspected — it never fails the rest of the batch;
- an unexpected error (DynamoDB unavailable, an unknown provider error): the ledger claim is released.
Everything else (sent, skipped with a reason, deferred, duplicate, rejected) completes the record.

The batch's counters (the daily `S#` rows, the brake's hourly `BRAKE#` row) are summed over its records and
written once per distinct row when the batch is done, failed records or not (Sender.batch).
"""

from __future__ import annotations

import random
from typing import Any

from retention.core.batch import process_sqs_batch
from retention.core.observability import count, logger
from retention.core.runtime import Deps
from retention.messaging.rendering import Renderer
from retention.messaging.requests import SendRequest
from retention.messaging.sender import AFTER_RENDER_SECONDS, RENDER_BUDGET_SECONDS, RetryableSendError, Sender

VISIBILITY_BASE = 30  # seconds before a throttled message is tried again, doubled per receive
VISIBILITY_CAP = 900
# the queue parks a message in the DLQ after 5 receives (infra/constructs/queues.py): a message throttled
# this many times is re-sent as a fresh message (delayed) instead, so sustained throttling never sends
# good mail to the DLQ. The ledger (`retry`) lets exactly one copy through.
REQUEUE_AFTER_RECEIVES = 3
# the batch's counters are written at its end; with less than one record's worst case left of the invocation
# (its render budget and the provider call + ledger after it) they are written after each record instead: a
# timeout kills the function before the end, and the counts would be lost
FLUSH_EARLY_SECONDS = AFTER_RENDER_SECONDS + RENDER_BUDGET_SECONDS + 1.0


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


def sender(d: Deps) -> Sender:
    ses, sns = provider_clients(d)
    return Sender(ddb_client=d.dynamodb, ses=ses, sns=sns, sqs=d.sqs, env=d.env, config=d.config,
                  renderer=Renderer(d.config, d.env))


def receives(record: Any) -> int:
    try:
        return int(record.attributes.approximate_receive_count or 1)
    except (TypeError, ValueError):
        return 1


def delay(receives: int) -> int:
    """30 s, 60 s, 120 s … doubled per receive, jittered, at most 15 min."""
    longest = min(VISIBILITY_CAP, VISIBILITY_BASE * 2 ** max(0, receives - 1))
    return int(longest / 2 + random.uniform(0, longest / 2))


class SendWorker:
    """One per invocation (clients and caches are per container): `handle` is the batch's record handler."""

    def __init__(self, d: Deps) -> None:
        self.d = d
        self.sender = sender(d)

    def process(self, event: dict[str, Any]) -> dict[str, Any]:
        """The SQS batch: each record through `handle` (partial-batch failures); the counters of the records
        that succeeded written once per distinct row at the end. A batch whose records all failed reports them
        all (no exception: the good records of the next receive are not held hostage, and the Lambda error
        metric stays for real crashes)."""
        with self.sender.batch():
            return process_sqs_batch(event, self._handle_in_batch, raise_on_entire_batch_failure=False)

    def _handle_in_batch(self, record: Any) -> None:
        try:
            self.handle(record)
        finally:
            if self.sender.time_left is not None and self.sender.time_left() < FLUSH_EARLY_SECONDS:
                self.sender.flush()

    def handle(self, record: Any) -> None:
        from retention.messaging.testsend import is_test_send
        if is_test_send(record.body):
            return self._test_send(record)
        try:
            request = SendRequest.model_validate_json(record.body)
        except ValueError:
            count("Messages_poison")
            logger.error("poison send request", extra={"message_id": record.message_id, "body": record.body[:500]})
            raise
        try:
            outcome = self.sender.send(request)
        except RetryableSendError:
            count("Messages_throttled")
            logger.warning("throttled", extra={"rule": request.rule, "step": request.step,
                                               "ledger": request.ledger_id, "receives": receives(record)})
            if receives(record) >= REQUEUE_AFTER_RECEIVES and self._requeue(record):
                return  # this record completes; its fresh copy comes back after the delay
            self._back_off(record)
            raise
        count(f"Messages_{outcome.status}")
        if outcome.reason == "coupon_pool_empty":  # the alarm CouponPoolEmpty (infra/constructs/monitoring.py)
            count("CouponPoolEmpty")
        logger.info("send", extra={"rule": request.rule, "step": request.step, "status": outcome.status,
                                   "reason": outcome.reason, "ledger": request.ledger_id})

    def _test_send(self, record: Any) -> None:
        """A staff test send (retention.messaging.testsend): its own ledger, no counters, no customer."""
        from retention.messaging.testsend import TestSender, TestSendRequest
        try:
            request = TestSendRequest.model_validate_json(record.body)
        except ValueError:
            count("Messages_poison")
            logger.error("poison test send request", extra={"message_id": record.message_id})
            raise
        outcome = TestSender(self.sender).send(request)
        count(f"TestSends_{outcome.status}")
        logger.info("test send", extra={"template": request.template, "person": request.person,
                                        "status": outcome.status, "reason": outcome.reason,
                                        "request": request.request_id})

    def _requeue(self, record: Any) -> bool:
        """A fresh, delayed copy of a message throttled too often (True when it was queued)."""
        try:
            self.d.sqs.send_message(QueueUrl=self.d.env.queue("send"), MessageBody=record.body,
                                    DelaySeconds=delay(receives(record)))
            return True
        except Exception:
            logger.warning("could not requeue the throttled message", extra={"message_id": record.message_id})
            return False

    def _back_off(self, record: Any) -> None:
        """Push a throttled message's next delivery out (the queue's visibility timeout is for crashes)."""
        try:
            self.d.sqs.change_message_visibility(QueueUrl=self.d.env.queue("send"),
                                                 ReceiptHandle=record.receipt_handle,
                                                 VisibilityTimeout=delay(receives(record)))
        except Exception:
            logger.warning("could not back off the visibility", extra={"message_id": record.message_id})
