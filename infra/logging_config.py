"""Lambda's advanced logging controls for every function, as plain strings: infra/constructs/functions.py
deploys them, and bench/logs.py prices what they let through without importing the CDK.

JSON format, so that Lambda can filter by level. System logs at WARN: the START / END / REPORT lines of
every invocation (INFO, ~330 bytes) are not written; the Duration, Errors and Throttles metrics and their
alarms come from the Lambda service, not from those lines, and the platform's warnings (dropped logs) still
are. Application logs at the level the functions already log at (POWERTOOLS_LOG_LEVEL in the stack's
environment): Lambda sets AWS_LAMBDA_LOG_LEVEL from it, which Powertools' Logger takes over
POWERTOOLS_LOG_LEVEL. That level stays at INFO or below: Powertools writes its EMF metrics line (the alarms'
metrics) without a "level" key, and Lambda files such a line under INFO. (AWS's caveat on EMF under the JSON
format concerns Node.js, whose console.log wraps the document; Powertools for Python prints it straight to
stdout, which Lambda passes through unchanged.)"""

from __future__ import annotations

LOG_FORMAT = "JSON"
SYSTEM_LOG_LEVEL = "WARN"
# Python's level names (POWERTOOLS_LOG_LEVEL) -> Lambda's application log levels that keep the EMF lines
APPLICATION_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO"}
# the system log lines of one invocation that the system log level lets through: START, END, REPORT are INFO
PLATFORM_LINES_PER_INVOCATION = {"DEBUG": 3, "INFO": 3, "WARN": 0}[SYSTEM_LOG_LEVEL]


def application_log_level(environment: dict[str, str]) -> str:
    """The functions' POWERTOOLS_LOG_LEVEL as Lambda's application log level; above INFO is refused, as
    Lambda would then drop the EMF lines that carry the alarmed metrics."""
    name = environment.get("POWERTOOLS_LOG_LEVEL", "INFO").upper()
    if name not in APPLICATION_LOG_LEVELS:
        raise ValueError(f"POWERTOOLS_LOG_LEVEL={name}: use DEBUG or INFO (above INFO, Lambda's log-level "
                         "filter drops the Powertools EMF lines, and the alarms lose their metrics)")
    return APPLICATION_LOG_LEVELS[name]
