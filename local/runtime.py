"""The local stack: moto in process, resources created from the synthesized CDK template, the real
handlers invoked with API Gateway proxy / EventBridge / SQS / SNS events, on a virtual clock.

One lock serialises every handler invocation: the handlers share this process (and its virtual
clock), and the dev routes (`/_local/clock/advance`) must see a quiet system when they answer."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
log = logging.getLogger("retention.local")


@dataclass
class LocalConfig:
    port: int = 8787
    host: str = "127.0.0.1"
    write_key: str = "dev-write-key"
    admin_token: str = "dev-admin-token"  # noqa: S105 - the documented local default, printed at start
    apply_library: bool = True
    background: bool = True  # scheduler + queue drainer threads (off in tests that drive time by hand)


class FakeContext:
    function_name = "local"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id = "local"

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fn_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LocalStack:
    def __init__(self, cfg: LocalConfig) -> None:
        self.cfg = cfg
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.server: Any = None
        self.moto: Any = None
        self.stack: Any = None
        self.handlers: dict[str, Any] = {}
        self.modules: dict[str, ModuleType] = {}
        self.last_tick_minute: str | None = None
        self.threads: list[threading.Thread] = []
        self.seen_provider_ids: set[str] = set()
        from retention.core import clock
        self.clock = clock.OffsetClock()
        clock.set_source(self.clock)

    # ---- start -------------------------------------------------------------------------------------
    def start_moto(self) -> str:
        from moto.server import ThreadedMotoServer
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ["AWS_DEFAULT_REGION"] = REGION
        os.environ["AWS_REGION"] = REGION
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Retention")
        os.environ.setdefault("POWERTOOLS_DEV", "false")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from local.motolock import install
        install()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        url = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = url
        return url

    def client(self, service: str) -> Any:
        import boto3
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    def deploy(self, template: Path | None = None) -> Any:
        from infra.local_deploy import delete_event_source_mappings, deploy_to_moto, patch_moto_gaps, synth
        if template is None:
            template = synth(REPO / "build" / "local-cdk.out",
                             {"publicBaseUrl": f"http://{self.cfg.host}:{self.cfg.port}"})
        self.stack = deploy_to_moto(template, None, self.client("cloudformation"), self.client("s3"))
        delete_event_source_mappings(self.client("lambda"), self.stack)
        self._detach_moto_consumers()
        patch_moto_gaps(self.stack, self.client("dynamodb"))
        env = dict(self.stack.environment)
        env["PUBLIC_BASE_URL"] = f"http://{self.cfg.host}:{self.cfg.port}"
        env["POWERTOOLS_LOG_LEVEL"] = os.environ.get("RETENTION_LOG_LEVEL", "WARNING")
        env["POWERTOOLS_METRICS_DISABLED"] = os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.update(env)
        from retention.core import runtime, settings
        settings.reload_env()
        runtime.set_deps(None)
        ses = self.client("sesv2")
        sender = env.get("SENDER_EMAIL", "news@example.com")
        domain = sender.rsplit("@", 1)[-1].strip("> ")
        ses.create_email_identity(EmailIdentity=domain)
        if env.get("SES_CONFIGURATION_SET"):
            try:
                ses.create_configuration_set(ConfigurationSetName=env["SES_CONFIGURATION_SET"])
            except Exception as exc:  # already there, or moto without it: sending still works
                log.debug("configuration set: %s", exc)
        for name, info in self.stack.functions.items():
            module = _load_module(name, info.handler_dir / f"{info.module_name}.py")
            self.modules[name] = module
            self.handlers[name] = getattr(module, info.function_name)
        return self.stack

    def _detach_moto_consumers(self) -> None:
        """moto's queues keep their own copy of event source mappings and would try to run the consumers in
        Docker; this runtime drains the queues itself."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sqs.models import sqs_backends
        for queue in sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues.values():
            queue.lambda_event_source_mappings.clear()

    def seed(self) -> dict[str, Any]:
        """Scenario library applied, the dev write key and admin token created (stored hashed)."""
        from retention.core.runtime import deps
        d = deps()
        applied = apply_library(d) if self.cfg.apply_library else {}
        d.config.create_source("local", key=self.cfg.write_key)
        from retention.admin.people import create_admin_token
        create_admin_token(d.config, "local", token=self.cfg.admin_token)
        return applied

    def start(self) -> None:
        from local.server import bind, start
        # bound first: with port 0 the OS picks the port, and the stack's public URLs (unsubscribe and
        # survey links) are built with the real one
        self.server = bind(self)
        self.cfg.port = int(self.server.server_address[1])
        self.start_moto()
        self.deploy()
        self.seed()
        start(self.server)
        if self.cfg.background:
            for target in (self._scheduler_loop,):
                t = threading.Thread(target=target, daemon=True)
                t.start()
                self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.moto:
            self.moto.stop()
        from retention.core import clock
        clock.reset()

    # ---- invoking handlers ----------------------------------------------------------------------------
    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        with self.lock:
            os.environ["POWERTOOLS_SERVICE_NAME"] = f"retention-{name}"
            try:
                return self.handlers[name](event, FakeContext(name))
            finally:
                # nothing publishes metrics locally: without this they pile up in the handler's Metrics and
                # come out as one EMF dump on stdout when the process stops (Ctrl-C)
                from retention.core import observability
                metrics = getattr(self.modules.get(name), "metrics", None) or getattr(observability, "metrics", None)
                if metrics is not None and os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
                    metrics.clear_metrics()

    def http(self, method: str, path: str, headers: dict[str, str], query: dict[str, str], body: bytes) -> tuple[
            int, dict[str, str], bytes]:
        route = self.match(method, path)
        if route is None:
            return 404, {"Content-Type": "application/json"}, json.dumps(
                {"code": "not_found", "message": f"no route for {method} {path}"}).encode()
        function, resource, params = route
        try:
            text = body.decode("utf-8")
            is_b64 = False
            if headers.get("content-encoding", headers.get("Content-Encoding", "")).lower() == "gzip":
                raise UnicodeDecodeError("utf-8", b"", 0, 1, "gzip")
        except UnicodeDecodeError:
            text = base64.b64encode(body).decode()
            is_b64 = True
        event = {
            "resource": resource, "path": path, "httpMethod": method, "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "pathParameters": params or None, "stageVariables": None,
            "requestContext": {"resourcePath": resource, "httpMethod": method, "path": path, "stage": "local",
                               "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "127.0.0.1"},
                               "requestTimeEpoch": int(time.time() * 1000)},
            "body": text if body else None, "isBase64Encoded": is_b64,
        }
        resp = self.invoke(function, event)
        raw = resp.get("body") or ""
        out = base64.b64decode(raw) if resp.get("isBase64Encoded") else raw.encode()
        hdrs = {k: v for k, v in (resp.get("headers") or {}).items()}
        for k, vs in (resp.get("multiValueHeaders") or {}).items():
            hdrs[k] = ", ".join(vs)
        self.after_request()
        return int(resp.get("statusCode", 200)), hdrs, out

    def match(self, method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
        parts = [p for p in path.split("/") if p]
        best = None
        for route in self.stack.routes:
            if route.method not in (method, "ANY"):
                continue
            rparts = [p for p in route.path.split("/") if p]
            params: dict[str, str] = {}
            ok = True
            if rparts and rparts[-1].endswith("+}"):
                if len(parts) < len(rparts):
                    continue
                head = rparts[:-1]
                tail = "/".join(parts[len(head):])
                params[rparts[-1][1:-2]] = tail
                cmp_parts = parts[:len(head)]
                rcmp = head
            else:
                if len(parts) != len(rparts):
                    continue
                cmp_parts, rcmp = parts, rparts
            for have, want in zip(cmp_parts, rcmp, strict=True):
                if want.startswith("{"):
                    params[want[1:-1]] = have
                elif have != want:
                    ok = False
                    break
            if ok:
                score = sum(1 for p in rcmp if not p.startswith("{"))
                if best is None or score > best[0]:
                    best = (score, (route.function, route.path, params))
        return best[1] if best else None

    # ---- schedules and queues ----------------------------------------------------------------------
    def after_request(self) -> None:
        """Sends caused by a request go out at once, as Lambda's SQS trigger would do within seconds. Under
        the stack's lock: the background scheduler drains under it too, and a drain running beside it would
        find the queue empty while the scheduler holds the request's messages in flight, and answer before
        they were sent."""
        with self.lock:
            self.drain()

    def tick(self) -> Any:
        from retention.core import clock
        now = clock.now()
        result = self.invoke("evaluate_triggers", {"source": "aws.events", "detail-type": "Scheduled Event",
                                                   "time": clock.iso(now), "detail": {}})
        self.last_tick_minute = clock.iso(now)[:16]
        return result

    def run_crons(self, previous: datetime, now: datetime) -> None:
        from retention.language.rules import next_schedule_at
        for sched in self.stack.schedules:
            expr = sched.expression
            if not expr.startswith("cron("):
                continue
            fire = next_schedule_at(expr, previous)
            if fire is not None and previous < fire <= now:
                self.invoke(sched.function, sched.input or {})

    def drain(self, max_rounds: int = 200) -> int:
        """Deliver queued SQS messages to their consumers until the queues are empty."""
        sqs = self.client("sqs")
        handled = 0
        for _ in range(max_rounds):
            busy = False
            for source in self.stack.event_sources:
                url = self.stack.queues[source.queue]
                resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, source.batch_size or 10),
                                           AttributeNames=["All"], VisibilityTimeout=30)
                msgs = resp.get("Messages", [])
                if not msgs:
                    continue
                busy = True
                event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                                      "body": m["Body"], "attributes": m.get("Attributes", {}),
                                      "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                                      "eventSource": "aws:sqs",
                                      "eventSourceARN": f"arn:aws:sqs:{REGION}:000:{source.queue}",
                                      "awsRegion": REGION} for m in msgs]}
                result = self.invoke(source.function, event) or {}
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                for m in msgs:
                    if m["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                        handled += 1
            self.emit_ses_feedback()
            if not busy:
                break
        return handled

    def emit_ses_feedback(self) -> None:
        """moto does not publish SES events: report each new email as delivered, like SES would."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends
        from retention.messaging.mime import parse_email
        backend = ses_backends[DEFAULT_ACCOUNT_ID][REGION]
        for msg in list(backend.sent_messages):
            mid = getattr(msg, "id", None)
            if not mid or mid in self.seen_provider_ids:
                continue
            self.seen_provider_ids.add(mid)
            raw = getattr(msg, "raw_data", None)
            if not raw:
                continue
            headers = parse_email(raw.encode() if isinstance(raw, str) else raw)["headers"]
            ledger = headers.get("X-Retention-Ledger")
            if not ledger or "feedback" not in self.handlers:
                continue
            note = {"eventType": "Delivery", "mail": {"messageId": mid, "destination": list(msg.destinations),
                                                      "tags": {"ledger": [ledger]}}, "delivery": {}}
            self.invoke("feedback", {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(note)}}]})

    FEEDBACK_TYPES = ("Delivery", "Bounce", "Complaint", "Open", "Click")

    def feedback(self, to: str, kind: str, rule: str | None = None) -> dict[str, Any] | None:
        """`POST /_local/feedback`: the SES event `kind` for the latest email to `to` (of `rule`), shaped like
        SES's configuration-set event and delivered through the template's SNS subscription of the feedback
        function, as in AWS. None when no such email was sent."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends
        from retention.core import clock
        from retention.messaging.mime import parse_email
        address = to.strip().lower()
        with self.lock:
            found = None
            for msg in reversed(list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)):
                if address not in [str(d).strip().lower() for d in getattr(msg, "destinations", [])]:
                    continue
                raw = getattr(msg, "raw_data", None)
                if not raw:
                    continue
                headers = parse_email(raw.encode() if isinstance(raw, str) else raw)["headers"]
                if rule and headers.get("X-Retention-Rule") != rule:
                    continue
                found = (msg, headers)
                break
            if found is None:
                return None
            msg, headers = found
            now = clock.iso(clock.now())
            mail = {"timestamp": now, "messageId": msg.id, "source": getattr(msg, "source", None)
                    or os.environ.get("SENDER_EMAIL", ""), "destination": [address],
                    "tags": {"ledger": [headers.get("X-Retention-Ledger", "")],
                             "rule": [headers.get("X-Retention-Rule", "")]}}
            event: dict[str, Any] = {"eventType": kind, "mail": mail}
            if kind == "Bounce":
                event["bounce"] = {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": now,
                                   "bouncedRecipients": [{"emailAddress": address}]}
            elif kind == "Complaint":
                event["complaint"] = {"timestamp": now, "complainedRecipients": [{"emailAddress": address}],
                                      "complaintFeedbackType": "abuse"}
            elif kind == "Delivery":
                event["delivery"] = {"timestamp": now, "recipients": [address]}
            elif kind == "Open":
                event["open"] = {"timestamp": now, "userAgent": "local", "ipAddress": "127.0.0.1"}
            else:
                event["click"] = {"timestamp": now, "link": self.cfg_url(), "userAgent": "local"}
            results = []
            for sub in self.stack.subscriptions:
                if sub.topic == "ses_events":
                    results.append(self.invoke(sub.function, {"Records": [{
                        "EventSource": "aws:sns", "EventVersion": "1.0",
                        "Sns": {"Type": "Notification", "TopicArn": self.stack.topics.get("ses_events", ""),
                                "Message": json.dumps(event), "Timestamp": now}}]}))
            self.drain()
        return {"to": address, "type": kind, "message_id": msg.id, "rule": headers.get("X-Retention-Rule"),
                "step": headers.get("X-Retention-Step"), "results": results}

    def cfg_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}/"

    def _scheduler_loop(self) -> None:
        from retention.core import clock
        previous = clock.now()
        while not self.stop_event.wait(1.0):
            try:
                with self.lock:
                    now = clock.now()
                    if clock.iso(now)[:16] != self.last_tick_minute:
                        self.tick()
                        self.run_crons(previous, now)
                        previous = now
                    self.drain()
            except Exception:
                log.exception("scheduler")

    def advance(self, seconds: float) -> datetime:
        """Move the virtual clock; every tick and cron that came due runs, and the queues drain."""
        from retention.core import clock
        from retention.core.runtime import deps
        from retention.schedule.broadcasts import next_broadcast_at

        from local.driver import advance
        from local.scans import next_due_at
        d = deps()

        def tick(previous: datetime, current: datetime) -> None:
            self.tick()
            self.run_crons(previous, current)

        with self.lock:
            target = clock.now() + timedelta(seconds=seconds)
            return advance(target, now=clock.now,
                           set_time=lambda at: self.clock.advance((at - clock.now()).total_seconds()),
                           next_due=lambda: next_due_at(d.dynamodb, d.env.due_table), config=d.config,
                           tick=tick, drain=self.drain,
                           next_firing=lambda after: next_broadcast_at(d.config, after))

    def outbox(self, to: str | None = None, rule: str | None = None, since: str | None = None
               ) -> list[dict[str, Any]]:
        """Delivered email and SMS, oldest first; `to`, `rule` and `since` (ISO time of sending) filter."""
        out = self._outbox()
        if to:
            want = to.strip().lower()
            out = [m for m in out if want in str(m.get("to") or "").lower()]
        if rule:
            out = [m for m in out if m.get("rule") == rule]
        if since:
            out = [m for m in out if (m.get("sent_at") or "") >= since]
        return out

    def _outbox(self) -> list[dict[str, Any]]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends
        from retention.core import ddb
        from retention.core.runtime import deps
        from retention.messaging.mime import parse_email
        from retention.messaging.requests import LEDGER_PREFIX
        from retention.messaging.testsend import TEST_LEDGER_PREFIX
        d = deps()
        ledgers: dict[str, dict[str, Any]] = {}
        # the send ledger, and the test sends' own ledger (retention.messaging.testsend: rule "[test]")
        kwargs: dict[str, Any] = {"TableName": d.env.messages_table,
                                  "FilterExpression": "begins_with(pk, :l) OR begins_with(pk, :t)",
                                  "ExpressionAttributeValues": {":l": {"S": LEDGER_PREFIX},
                                                                ":t": {"S": TEST_LEDGER_PREFIX}}}
        client = d.dynamodb
        while True:
            resp = client.scan(**kwargs)
            for raw in resp.get("Items", []):
                item = ddb.deserialize(raw) or {}
                if item.get("provider_id"):
                    ledgers[str(item["provider_id"])] = item
            if not resp.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        out: list[dict[str, Any]] = []
        for msg in list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages):
            raw = getattr(msg, "raw_data", None)
            if raw is None:
                continue
            parsed = parse_email(raw.encode() if isinstance(raw, str) else raw)
            led = ledgers.get(msg.id, {})
            hdr = parsed["headers"]
            out.append({"channel": "email", "to": hdr.get("To", ""), "subject": parsed["subject"],
                        "text": parsed.get("text"), "html": parsed.get("html"), "headers": hdr,
                        "rule": led.get("rule") or hdr.get("X-Retention-Rule")
                        or ("[test]" if led.get("kind") == "test_send" else None),
                        "step": int(led["step"]) if "step" in led else int(hdr.get("X-Retention-Step", 0)),
                        "variant": led.get("variant") or hdr.get("X-Retention-Variant"),
                        "sent_at": led.get("sent_at"), "message_id": msg.id})
        for mid, (phone, text) in list(sns_backends[DEFAULT_ACCOUNT_ID][REGION].sms_messages.items()):
            led = ledgers.get(mid, {})
            out.append({"channel": "sms", "to": phone, "subject": None, "text": text, "html": None, "headers": {},
                        "rule": led.get("rule"), "step": int(led["step"]) if "step" in led else None,
                        "variant": led.get("variant"), "sent_at": led.get("sent_at"), "message_id": mid})
        out.sort(key=lambda m: m.get("sent_at") or "")
        return out


def apply_library(d: Any) -> dict[str, Any]:
    """The scenario library, applied as the admin API applies (retention.admin.previews.apply_folder)."""
    from retention.admin.previews import apply_folder
    return {key: v["version"] for key, v in apply_folder(d, author="library").items()}
