"""SQS consumer of the send queue: one SendRequest per record, partial-batch failures (the retry policy,
poison records and throttling: retention.messaging.delivery)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.observability import entry
from retention.core.runtime import deps
from retention.messaging.delivery import SendWorker

# a batch whose records all failed reports them all (no exception: the good records of the next
# receive are not held hostage, and the Lambda error metric stays for real crashes)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@entry("send_message")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    worker = SendWorker(deps())  # one Sender per invocation (clients and caches are per container)
    worker.sender.time_left = lambda: context.get_remaining_time_in_millis() / 1000  # renders fit the invocation
    return dict(process_partial_response(event=event, record_handler=worker.handle, processor=processor,
                                         context=context))
