"""SQS consumer of the send queue: one SendRequest per record, partial-batch failures (the retry policy,
poison records and throttling: retention.messaging.delivery)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.observability import entry
from retention.core.runtime import deps
from retention.messaging.delivery import SendWorker


@entry("send_message")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    worker = SendWorker(deps())  # one Sender per invocation (clients and caches are per container)
    worker.sender.time_left = lambda: context.get_remaining_time_in_millis() / 1000  # renders fit the invocation
    # partial-batch failures; the batch's counters are summed and written once per distinct row at its end
    return worker.process(event)
