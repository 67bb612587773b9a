"""Segment recompute: the nightly rule (and every definition change) fans a parallel scan out as SQS work
items; each item re-evaluates the customers of one scan segment page by page."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.core.observability import count, entry, logger
from retention.core.runtime import deps
from retention.schedule.recompute import Recompute, WorkItem

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
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
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
