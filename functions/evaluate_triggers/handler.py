"""The minute tick (EventBridge rate(1 minute)): due journey steps, segment deadlines, deferred sends."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.schedule.tick import Ticker


@entry("evaluate_triggers")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    d = deps()
    result = Ticker(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).tick()
    count("DueItems", result.due_items)
    count("SendsEnqueued", result.sends)
    count("PendingSendsUnknown", result.pending_unknown)  # alarmed: send claims with an unknown outcome
    logger.info("tick", extra=result.__dict__)
    return dict(result.__dict__)
