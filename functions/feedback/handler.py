"""SES events (via the configuration set's SNS topic): delivery, bounce, complaint, reject, open, click.
Hard bounces and complaints suppress the address; statuses, counters and open/click rates update."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.runtime import deps
from retention.messaging.feedback import Feedback

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    fb = Feedback(deps())
    handled = 0
    for record in event.get("Records", []):
        outcome = fb.handle_sns_message(record.get("Sns", {}).get("Message", "{}"))
        if outcome:
            handled += 1
            metrics.add_metric(name=f"Feedback_{outcome}", unit=MetricUnit.Count, value=1)
    return {"handled": handled}
