"""One Logger, Tracer and Metrics for every function, and the entry decorator each handler wears.

Powertools keeps their state per service and per process (one metric set, one logger), so a single
instance each is what every handler used to build by hand. `entry(function)` applies the decorators in
the cookbook's fixed order and, at the container's first invocation (its cold start), checks that the
function's required environment is there (retention.core.settings.REQUIRED), failing with the names of
what is missing instead of working against a default table name or silently skipping a queue."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # only AWS calls: patching everything imports requests &c.
metrics = Metrics()

F = TypeVar("F", bound=Callable[..., Any])


def count(name: str, value: float = 1) -> None:
    """A count, left out when it is zero: CloudWatch bills a custom metric for every hour it receives data
    ($0.30 a metric-month), and a zero every minute (no rejected events, no unknown sends) made every metric
    a full-time one. The alarms sum over 5 minutes and treat missing data as not breaching: the same answer."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def entry(function: str) -> Callable[[F], F]:
    """`@entry("track_event")` on `lambda_handler`: logger context, tracing, metrics flush, settings check."""
    from retention.core.runtime import deps

    def decorate(handler: F) -> F:
        @wraps(handler)
        def checked(event: Any, context: Any) -> Any:
            deps().require(function)
            return handler(event, context)

        return logger.inject_lambda_context(tracer.capture_lambda_handler(metrics.log_metrics(checked)))  # type: ignore[return-value]

    return decorate
