"""SES events (via the configuration set's SNS topic): delivery, bounce, complaint, reject, open, click.
Hard bounces and complaints suppress the address and feed the send brake; statuses, counters and open/click
rates update."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.messaging.feedback import Feedback


@entry("feedback")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    fb = Feedback(deps())
    handled = 0
    for record in event.get("Records", []):
        outcome = fb.handle_sns_message(record.get("Sns", {}).get("Message", "{}"))
        if outcome:
            handled += 1
            count(f"Feedback_{outcome}")
    for pause in fb.paused:  # the MarketingPaused alarm (infra/constructs/monitoring.py) watches this metric
        logger.warning("marketing email paused by the send brake", extra={"identity": pause["sk"],
                                                                           "reason": pause["reason"]})
        count("MarketingPaused")
    return {"handled": handled, "paused": [p["sk"] for p in fb.paused]}
