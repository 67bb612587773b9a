"""SQS work queues, each with its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.common import set_role

MAX_RECEIVE_COUNT = 5


class WorkQueue(Construct):
    """A queue + DLQ (SSE-SQS, TLS-only, redrive after 5 receives).

    `visibility_timeout` must be at least 6 × the consumer's timeout (AWS guidance for Lambda
    event sources), so a message is not redelivered while a slow batch is still running.
    """

    def __init__(self, scope: Construct, construct_id: str, *, role: str, visibility_timeout: Duration) -> None:
        super().__init__(scope, construct_id)
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        set_role(self.queue, f"queue:{role}")
        set_role(self.dlq, f"queue:{role}_dlq")
