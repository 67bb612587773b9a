"""Segment recompute: the nightly rule (and every definition change) fans a parallel scan out as SQS work
items; each item re-evaluates the customers of one scan segment page by page."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.batch import SqsRecord, process_sqs_batch
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.schedule.recompute import Recompute, WorkItem


def record_handler(record: SqsRecord) -> None:
    result = Recompute(deps()).work(WorkItem.model_validate_json(record.body))
    count("ProfilesRechecked", result.profiles)
    count("SegmentTransitions", result.transitions)
    logger.info("recompute", extra=result.__dict__)


@entry("recompute")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    if event.get("action") == "full_recompute":
        queued = Recompute(deps()).fan_out(reason=str(event.get("reason", "nightly")))
        logger.info("fan-out", extra={"segments": queued})
        return {"queued": queued}
    return process_sqs_batch(event, record_handler)
