"""CloudWatch cost controls: Lambda's advanced logging controls on every function, and the custom metrics
the alarms need (retention.core.observability.METRICS) — no fewer, and no alarm on a count that is only a
log field."""

from __future__ import annotations

import pytest
from aws_cdk import aws_lambda as lambda_
from retention.core.observability import ALARMED, METRICS

from infra.constructs.functions import FUNCTION_SPECS, application_log_level

NAMES = [spec.name for spec in FUNCTION_SPECS]


@pytest.mark.parametrize("name", NAMES)
def test_every_function_logs_json_without_platform_lines(synth, variant, name):
    for stack in (synth, variant):
        config = dict(stack.function(name)["Properties"]["LoggingConfig"])  # a copy: the template is shared
        log_group = config.pop("LogGroup")
        assert stack.resources("AWS::Logs::LogGroup")[log_group["Ref"]]
        # START/END/REPORT are system logs at INFO: WARN drops them; the application level is the functions'
        # POWERTOOLS_LOG_LEVEL (INFO), at which the EMF metric lines (no "level" key: INFO) still pass
        assert config == {"LogFormat": "JSON", "SystemLogLevel": "WARN", "ApplicationLogLevel": "INFO"}
        env = stack.function(name)["Properties"]["Environment"]["Variables"]
        assert env["POWERTOOLS_LOG_LEVEL"] == config["ApplicationLogLevel"]


def test_application_log_level_follows_the_setting_and_never_drops_the_metric_lines():
    assert application_log_level({"POWERTOOLS_LOG_LEVEL": "INFO"}) == lambda_.ApplicationLogLevel.INFO
    assert application_log_level({"POWERTOOLS_LOG_LEVEL": "debug"}) == lambda_.ApplicationLogLevel.DEBUG
    assert application_log_level({}) == lambda_.ApplicationLogLevel.INFO
    for above_info in ("WARNING", "WARN", "ERROR", "CRITICAL"):
        with pytest.raises(ValueError, match="EMF"):
            application_log_level({"POWERTOOLS_LOG_LEVEL": above_info})


def test_every_custom_metric_alarm_watches_a_published_metric(synth):
    """An alarm on a Retention metric that the code only logs would never fire; a published metric that no
    alarm needs (beyond the two headline volumes) is a metric-month paid for nothing."""
    alarms = [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]
    watched = {a["MetricName"] for a in alarms if a.get("Namespace") == "Retention"}
    assert watched == set(ALARMED)
    assert ALARMED <= METRICS and len(METRICS - ALARMED) <= 5
