"""One Logger, Tracer and Metrics for every function, and the entry decorator each handler wears.

Powertools keeps their state per service and per process (one metric set, one logger), so a single
instance each is what every handler used to build by hand. `entry(function)` applies the decorators in
the cookbook's fixed order and, at the container's first invocation (its cold start), checks that the
function's required environment is there (retention.core.settings.REQUIRED), failing with the names of
what is missing instead of working against a default table name or silently skipping a queue.

Counts (`count(name, value)`) are summed per invocation. Only those in `METRICS` become CloudWatch
metrics (Powertools EMF, namespace Retention, dimension `service`): CloudWatch bills $0.30 for every
month a metric receives data, so a metric is kept only where an alarm watches it or where it is one of the
two volumes an operator graphs (events in, emails out). Every other count goes, with its invocation total,
into one `counts` log line at the end of the invocation (`{"message": "counts", "counts": {"Messages_skipped":
2, ...}}`, request id and service included), read with Logs Insights, e.g.
`filter message = "counts" | stats sum(counts.EventsRejected) by bin(1h)`."""

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

# Counts published as CloudWatch metrics. The alarmed ones (infra/constructs/monitoring.py; tests/infra pins
# that every alarm on the Retention namespace names one of these) and the two headline volumes. Any other name
# is a field of the invocation's `counts` log line: same information, no metric-month.
ALARMED = frozenset({"PendingSendsUnknown", "CouponPoolEmpty", "MarketingPaused"})
HEADLINE = frozenset({"EventsAccepted", "Messages_sent"})
METRICS = ALARMED | HEADLINE

_counts: dict[str, float] = {}
# Keys Powertools' Logger writes on every line that say nothing the line's log group, `service` and request id
# do not: the function's name, ARN and memory size (one log group per function) and the code location (an
# error's traceback has it). ~170 bytes a line, at ~4 M lines a month for the reference shop.
REDUNDANT_KEYS = ("function_name", "function_arn", "function_memory_size", "location")


def count(name: str, value: float = 1) -> None:
    """Add `value` to this invocation's count `name`; zeros are left out (CloudWatch bills a custom metric for
    every hour it receives data, and a zero every minute made every metric a full-time one; the alarms sum over
    5 minutes and treat missing data as not breaching: the same answer). `entry` publishes the totals when the
    invocation ends: a metric for the names in METRICS, a field of the `counts` log line for the others."""
    if value:
        _counts[name] = _counts.get(name, 0) + value


def flush_counts() -> dict[str, float]:
    """Publish and reset the counts summed since the last flush; returns those that went to the log line."""
    totals = dict(_counts)
    _counts.clear()
    for name in sorted(totals.keys() & METRICS):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=totals[name])
    logged = {name: _number(value) for name, value in sorted(totals.items()) if name not in METRICS}
    if logged:
        logger.info("counts", extra={"counts": logged})
    return logged


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def entry(function: str) -> Callable[[F], F]:
    """`@entry("track_event")` on `lambda_handler`: logger context, tracing, metrics flush, settings check."""
    from retention.core.runtime import deps

    def decorate(handler: F) -> F:
        @wraps(handler)
        def checked(event: Any, context: Any) -> Any:
            _counts.clear()  # counts made outside an invocation (a test, a CLI) are not this one's
            logger.remove_keys(REDUNDANT_KEYS)  # inject_lambda_context appends the context's keys every time
            try:
                deps().require(function)
                return handler(event, context)
            finally:
                flush_counts()  # inside log_metrics: the metrics go out in its EMF line

        return logger.inject_lambda_context(tracer.capture_lambda_handler(metrics.log_metrics(checked)))  # type: ignore[return-value]

    return decorate
