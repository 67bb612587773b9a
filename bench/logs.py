"""CloudWatch Logs volume per invocation, measured: the real handlers (functions/*/handler.py) invoked in
process on moto with the deployed log settings (POWERTOOLS_LOG_LEVEL=INFO, metrics on: Powertools writes
its EMF metrics blob to the log), stdout counted byte by byte. Lambda's own START/END/REPORT lines (none
at the stack's system log level WARN) and API Gateway's access log line are added from their documented
formats."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.meter import patch_moto_transactions
from infra.logging_config import PLATFORM_LINES_PER_INVOCATION, SYSTEM_LOG_LEVEL

REPO = Path(__file__).resolve().parents[1]
# START RequestId: … Version: $LATEST / END RequestId: … / REPORT RequestId: … Duration … Billed Duration …
# Memory Size … Max Memory Used … Init Duration … XRAY TraceId … SegmentId … Sampled: true: ~330 bytes in 3
# lines per invocation, system logs at INFO. The stack deploys them at the system log level of
# infra/logging_config.py: at WARN (today's setting) Lambda writes none of the three, so the model prices
# 0 bytes; a stack put back to INFO would price the 330 again.
LAMBDA_PLATFORM_LINES = PLATFORM_LINES_PER_INVOCATION
LAMBDA_PLATFORM_BYTES = 330 if LAMBDA_PLATFORM_LINES else 0
# apigw.AccessLogFormat.json_with_standard_fields: requestId, ip, caller, user, requestTime, httpMethod,
# resourcePath, status, protocol, responseLength
ACCESS_LOG_BYTES = 300
CLOUDWATCH_EVENT_OVERHEAD = 26  # bytes per log event, counted by CloudWatch Logs for ingestion


class _Counting(io.TextIOBase):
    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0

    def write(self, s: str) -> int:
        self.bytes += len(s.encode())
        self.lines += s.count("\n")
        return len(s)

    def flush(self) -> None:
        return None


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_fn_{name}", REPO / "functions" / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def run(log: Any = print) -> dict[str, Any]:
    from retention.core import clock

    from local.runtime import FakeContext
    from tests.support import moto_stack

    patch_moto_transactions()
    started = time.perf_counter()
    env_keys = ("POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_SERVICE_NAME",
                "POWERTOOLS_METRICS_NAMESPACE")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    counting = _Counting()
    real_stdout = sys.stdout
    out: dict[str, Any] = {}
    clock.set_now(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    try:
        with moto_stack() as s:
            s.apply_library()
            key = "bench-write-key"
            s.deps.config.create_source("bench", key=key)
            s.ingest([{"type": "identify", "userId": f"c{i}", "messageId": f"id-{i}",
                       "traits": {"email": f"c{i}@example.com", "email_consent": True, "first_name": "Анна"}}
                      for i in range(1)])
            os.environ.update({"POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_METRICS_DISABLED": "false",
                               "POWERTOOLS_METRICS_NAMESPACE": "Retention"})
            handlers = {}
            sys.stdout = counting
            try:
                for name in ("track_event", "send_message", "evaluate_triggers"):
                    os.environ["POWERTOOLS_SERVICE_NAME"] = f"retention-{name}"
                    handlers[name] = _load(name)
            finally:
                sys.stdout = real_stdout
            auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()

            def api_event(batch: list[dict[str, Any]]) -> dict[str, Any]:
                return {"resource": "/v1/batch", "path": "/v1/batch", "httpMethod": "POST",
                        "headers": {"Authorization": auth, "Content-Type": "application/json"},
                        "multiValueHeaders": {}, "queryStringParameters": None, "pathParameters": None,
                        "requestContext": {"resourcePath": "/v1/batch", "httpMethod": "POST", "path": "/v1/batch",
                                           "stage": "prod", "requestId": "r1", "identity": {"sourceIp": "203.0.113.7"}},
                        "body": json.dumps({"batch": batch}), "isBase64Encoded": False}

            def measure(name: str, event: dict[str, Any], runs: int = 3) -> dict[str, float]:
                counting.bytes = counting.lines = 0
                sys.stdout = counting
                try:
                    for _ in range(runs):
                        resp = handlers[name](event() if callable(event) else event, FakeContext(name))
                finally:
                    sys.stdout = real_stdout
                if name == "track_event":
                    assert resp["statusCode"] == 200, resp
                return {"bytes": counting.bytes / runs, "lines": counting.lines / runs}

            seq = iter(range(10**9))

            def batch_event(n: int) -> Any:
                def make() -> dict[str, Any]:
                    k = next(seq)
                    return api_event([{"type": "track", "userId": f"c{i}", "event": "Store Visited",
                                       "messageId": f"log-{k}-{i}"} for i in range(n)])
                return make

            out["track_event (batch of 100)"] = measure("track_event", batch_event(100))
            out["track_event (1 event)"] = measure("track_event", batch_event(1))
            out["evaluate_triggers (tick)"] = measure("evaluate_triggers", {"source": "aws.events", "detail": {}})
            # a send_message batch of 10 records (welcome emails of 10 new customers)
            s.ingest([{"type": "identify", "userId": f"m{i}", "messageId": f"idm-{i}",
                       "traits": {"email": f"m{i}@example.com", "email_consent": True, "first_name": "Анна"}}
                      for i in range(10)])
            from retention.messaging.requests import SendRequest
            records = [{"messageId": f"r{i}", "receiptHandle": f"h{i}", "attributes": {"ApproximateReceiveCount": "1"},
                        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:send",
                        "body": SendRequest(customer_id=f"m{i}", rule="welcome", entry="e1", step=0, channel="email",
                                            template="welcome").model_dump_json()} for i in range(10)]
            out["send_message (batch of 10 records)"] = measure("send_message", {"Records": records}, runs=1)
    finally:
        sys.stdout = real_stdout
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clock.reset()
    return {"per_invocation": out, "lambda_platform_bytes": LAMBDA_PLATFORM_BYTES,
            "lambda_platform_lines": LAMBDA_PLATFORM_LINES, "lambda_system_log_level": SYSTEM_LOG_LEVEL,
            "access_log_bytes": ACCESS_LOG_BYTES, "event_overhead_bytes": CLOUDWATCH_EVENT_OVERHEAD,
            "elapsed_s": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
