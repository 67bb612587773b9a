"""SQS consumer: one SendRequest per record, partial-batch failures (only throttled records come back)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from retention.messaging import SendRequest
from retention.rendering import Renderer
from retention.runtime import deps
from retention.sender import Sender

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def sender() -> Sender:
    d = deps()
    return Sender(ddb_client=d.dynamodb, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                  renderer=Renderer(d.config, d.env))


def record_handler(record: SQSRecord) -> None:
    request = SendRequest.model_validate_json(record.body)
    outcome = sender().send(request)
    metrics.add_metric(name=f"Messages_{outcome.status}", unit=MetricUnit.Count, value=1)
    logger.info("send", extra={"rule": request.rule, "step": request.step, "status": outcome.status,
                               "reason": outcome.reason})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
