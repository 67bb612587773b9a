"""Counts (retention.core.observability.count): only the alarmed ones and the two headline volumes become
CloudWatch metrics (EMF); every other count is a field of one `counts` log line per invocation, with the
invocation's total: the operator keeps the number, the bill loses the metric-month."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
from retention.core import observability, runtime
from retention.core.observability import count, entry
from retention.core.settings import Env
from retention.schedule.tick import Ticker, TickResult

from tests.support import LambdaContext, load_handler


class Output:
    def __init__(self, text: str) -> None:
        self.lines = [json.loads(line) for line in text.splitlines() if line.strip()]

    def emf(self) -> dict[str, float]:
        """Metric name -> value, from the Powertools EMF lines (what CloudWatch turns into metrics)."""
        out: dict[str, float] = {}
        for line in self.lines:
            for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
                for metric in directive["Metrics"]:
                    value = line[metric["Name"]]
                    out[metric["Name"]] = sum(value) if isinstance(value, list) else value
        return out

    def counts(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("message") == "counts"]


class _Deps:
    """What `entry` and the tick handler take from retention.core.runtime.deps(): no AWS needed here."""
    dynamodb = sqs = config = None
    env = Env()

    def require(self, function: str) -> _Deps:
        return self


Invoke = Callable[..., Output]


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """Call an `entry`-wrapped handler and parse its stdout. Powertools' Logger keeps the stream it was built
    with: it is pointed at the same buffer as print (the EMF lines) for the call."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(runtime, "deps", lambda: _Deps())  # read by `entry` when it decorates
    level = observability.logger.log_level
    observability.logger.setLevel("INFO")
    observability.metrics.clear_metrics()
    handler = observability.logger.registered_handler
    assert isinstance(handler, __import__("logging").StreamHandler)

    def call(function: Callable[..., Any], event: Any = None) -> Output:
        buffer = io.StringIO()
        previous = handler.setStream(buffer)
        try:
            with redirect_stdout(buffer):
                function(event if event is not None else {}, LambdaContext("test"))
        except RuntimeError:
            pass  # a failed invocation: its output is what the test looks at
        finally:
            handler.setStream(previous)
        return Output(buffer.getvalue())

    yield call
    observability.logger.setLevel(level)


def test_demoted_counts_are_one_log_line_with_the_invocation_totals(invoke: Invoke) -> None:
    count("Messages_skipped", 5)  # outside an invocation (a CLI, a test): not this invocation's

    @entry("track_event")
    def handler(event: Any, context: Any) -> None:
        count("EventsAccepted", 5)
        count("EventsRejected", 2)
        count("EventsRejected")
        count("EventsDuplicate", 0)  # zeros are left out
        count("Messages_sent")
        count("Messages_sent")
        count("Messages_skipped")

    out = invoke(handler)
    assert out.emf() == {"EventsAccepted": 5, "Messages_sent": 2}  # summed: one value each, not a list
    (line,) = out.counts()
    assert line["counts"] == {"EventsRejected": 3, "Messages_skipped": 1}
    assert line["level"] == "INFO" and line["function_request_id"] == "req-test"
    assert line["service"] and "cold_start" in line
    # the log group, `service` and the request id say which function and invocation: no name, ARN, memory, location
    assert not set(observability.REDUNDANT_KEYS) & set(line)
    assert len(out.lines) == 2  # the EMF line and the counts line, nothing else
    # the next invocation starts from zero
    assert [c["counts"] for c in invoke(handler).counts()] == [{"EventsRejected": 3, "Messages_skipped": 1}]


def test_no_counts_no_line(invoke: Invoke) -> None:
    @entry("track_event")
    def handler(event: Any, context: Any) -> None:
        count("EventsAccepted", 0)

    assert invoke(handler).lines == []


def test_a_failed_invocation_still_reports_its_counts(invoke: Invoke) -> None:
    @entry("send_message")
    def handler(event: Any, context: Any) -> None:
        count("CouponPoolEmpty")
        count("Messages_skipped")
        raise RuntimeError("the batch died")

    out = invoke(handler)
    assert out.emf() == {"CouponPoolEmpty": 1}
    assert [c["counts"] for c in out.counts()] == [{"Messages_skipped": 1}]


def test_the_tick_logs_due_items_and_sends_and_publishes_only_the_alarmed_metric(
        invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Ticker, "tick", lambda self: TickResult(due_items=7, sends=4, pending_unknown=1))
    tick = load_handler("evaluate_triggers", tag="counts")
    out = invoke(tick.lambda_handler, {"source": "aws.events", "detail": {}})
    assert out.emf() == {"PendingSendsUnknown": 1}  # alarmed: infra/constructs/monitoring.py
    (line,) = out.counts()
    assert line["counts"] == {"DueItems": 7, "SendsEnqueued": 4}
    assert "DueItems" not in out.emf() and "SendsEnqueued" not in out.emf()


def test_every_count_in_the_code_is_either_a_metric_or_a_log_field() -> None:
    """The names the code counts (a literal first argument of count(...)); the alarmed ones are published."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names: set[str] = set()
    for path in [*(root / "layers/common/python/retention").rglob("*.py"), *(root / "functions").rglob("*.py")]:
        names.update(re.findall(r"\bcount\(f?\"([A-Za-z_]+)", path.read_text()))
    assert names >= observability.ALARMED
    assert len(names - observability.METRICS) >= 10  # most counts are log fields now
