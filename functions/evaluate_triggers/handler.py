"""The minute tick (EventBridge rate(1 minute)): due journey steps, segment deadlines, deferred sends."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.runtime import deps
from retention.schedule.tick import Ticker

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    d = deps()
    result = Ticker(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).tick()
    metrics.add_metric(name="DueItems", unit=MetricUnit.Count, value=result.due_items)
    metrics.add_metric(name="SendsEnqueued", unit=MetricUnit.Count, value=result.sends)
    metrics.add_metric(name="PendingSendsUnknown", unit=MetricUnit.Count, value=result.pending_unknown)
    logger.info("tick", extra=result.__dict__)
    return dict(result.__dict__)
