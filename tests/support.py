"""Test support: the stack's tables, queues and identities in moto (in process), created with the same
key schema as infra/constructs/storage.py, plus a botocore hook that counts AWS requests."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
TABLES = ("profiles", "events", "config", "due", "messages", "idempotency", "products")


def create_tables(client: Any) -> dict[str, str]:
    names = {}
    for role in TABLES:
        name = f"test-{role}"
        kwargs: dict[str, Any] = {
            "TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
        }
        if role == "messages":
            kwargs["AttributeDefinitions"] += [{"AttributeName": "customer_id", "AttributeType": "S"},
                                               {"AttributeName": "created_at", "AttributeType": "S"}]
            kwargs["GlobalSecondaryIndexes"] = [{
                "IndexName": "by_customer",
                "KeySchema": [{"AttributeName": "customer_id", "KeyType": "HASH"},
                              {"AttributeName": "created_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"}}]  # as infra/constructs/storage.py
        client.create_table(**kwargs)
        names[role] = name
    return names


@dataclass
class RequestCounter:
    """Counts AWS API calls by (service, operation) through botocore's event system."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __call__(self, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            self.calls[(model.service_model.service_name, model.name)] += 1

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.*.*", self)

    def reset(self) -> None:
        self.calls.clear()

    def count(self, service: str, *operations: str) -> int:
        return sum(n for (svc, op), n in self.calls.items() if svc == service and (not operations or op in operations))

    DDB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
    DDB_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


_LIBRARY_ITEMS: dict[str, list[dict[str, Any]]] = {}  # Stack.apply_library: the items it wrote, per clock


def _scan_all(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass
class Stack:
    deps: Any
    tables: dict[str, str]
    counter: RequestCounter
    send_queue: str
    recompute_queue: str

    def ingest(self, messages: list[dict[str, Any]], source: str = "src_test") -> Any:
        import json

        from retention.core import clock
        from retention.ingestion import wire
        from retention.ingestion.ingestor import Ingestor
        parsed = wire.parse_request("batch", json.dumps({"batch": messages}).encode(), clock.now())
        assert not parsed.rejected, parsed.rejected
        d = self.deps
        return Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config).ingest(parsed.messages, source)

    def queued_sends(self, delete: bool = True) -> list[Any]:
        from retention.messaging.requests import SendRequest
        out = []
        while True:
            resp = self.deps.sqs.receive_message(QueueUrl=self.send_queue, MaxNumberOfMessages=10)
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(SendRequest.model_validate_json(m["Body"]))
                if delete:
                    self.deps.sqs.delete_message(QueueUrl=self.send_queue, ReceiptHandle=m["ReceiptHandle"])

    def sender(self) -> Any:
        from retention.messaging.rendering import Renderer
        from retention.messaging.sender import Sender
        d = self.deps
        return Sender(ddb_client=d.dynamodb, ses=d.sesv2, sns=d.sns, sqs=d.sqs, env=d.env, config=d.config,
                      renderer=Renderer(d.config, d.env))

    def ticker(self) -> Any:
        from retention.schedule.tick import Ticker
        d = self.deps
        return Ticker(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config)

    def apply_library(self) -> None:
        """The scenario library applied as the admin API applies it. Applying validates and lints every
        rule and template (≈ 2.5 s of CPU); into an empty configuration table at the same clock it writes
        the same items every time, so a test process applies it once and later stacks get those items
        written back (moto's tables are fresh per test). A table that already holds something, or another
        clock, gets the real apply."""
        from retention.core import clock
        from retention.core.config import ConfigStore

        from local.runtime import apply_library
        client, table = self.deps.dynamodb, self.tables["config"]
        key = clock.now().isoformat()
        if client.scan(TableName=table, Limit=1)["Items"]:
            apply_library(self.deps)
            return
        items = _LIBRARY_ITEMS.get(key)
        if items is None:
            apply_library(self.deps)
            _LIBRARY_ITEMS[key] = _scan_all(client, table)
            return
        for i in range(0, len(items), 25):
            client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[i:i + 25]]})
        ConfigStore.invalidate()

    def profile(self, customer_id: str) -> Any:
        from retention.core import clock
        from retention.customers.store import ProfileRepo
        return ProfileRepo(self.deps.dynamodb, self.deps.env.profiles_table).load(customer_id, clock.now()).profile


@contextmanager
def moto_stack(sender: str = "Shop <news@example.com>") -> Iterator[Stack]:
    from moto import mock_aws
    from retention.core import runtime
    from retention.core.config import ConfigStore
    from retention.core.settings import Env

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["RETENTION_NO_SLEEP"] = "1"
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Retention")
    from local.motolock import install
    install()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        ses = boto3.client("sesv2", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        tables = create_tables(ddb)
        send_q = sqs.create_queue(QueueName="send")["QueueUrl"]
        rec_q = sqs.create_queue(QueueName="recompute")["QueueUrl"]
        dlqs = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("send-dlq", "recompute-dlq",
                                                                                 "feedback-dlq")}
        ses.create_email_identity(EmailIdentity="example.com")
        env = Env(PROFILES_TABLE=tables["profiles"], EVENTS_TABLE=tables["events"], CONFIG_TABLE=tables["config"],
                  DUE_TABLE=tables["due"], MESSAGES_TABLE=tables["messages"],
                  IDEMPOTENCY_TABLE=tables["idempotency"], PRODUCTS_TABLE=tables["products"],
                  SEND_QUEUE_URL=send_q, RECOMPUTE_QUEUE_URL=rec_q, SEND_DLQ_URL=dlqs["send-dlq"],
                  RECOMPUTE_DLQ_URL=dlqs["recompute-dlq"], FEEDBACK_DLQ_URL=dlqs["feedback-dlq"],
                  SENDER_EMAIL=sender, PUBLIC_BASE_URL="https://shop.test/api")
        counter = RequestCounter()
        for c in (ddb, sqs, ses, sns):
            counter.attach(c)
        ConfigStore.invalidate()
        deps = runtime.Deps(env, dynamodb=ddb, sqs=sqs, sesv2=ses, sns=sns)
        deps.config = ConfigStore(ddb, env.config_table)
        runtime.set_deps(deps)
        try:
            yield Stack(deps=deps, tables=tables, counter=counter, send_queue=send_q, recompute_queue=rec_q)
        finally:
            runtime.set_deps(None)
            ConfigStore.invalidate()
            from retention.journeys.catalogue import Catalogue
            Catalogue._parsed.clear()


def drain_sends(stack: Stack) -> list[Any]:
    """Deliver queued sends through the sender and recompute work through its worker (like SQS + Lambda)."""
    from retention.schedule.recompute import Recompute, WorkItem
    outcomes = []
    while True:
        sends = stack.queued_sends()
        work = []
        while True:
            resp = stack.deps.sqs.receive_message(QueueUrl=stack.recompute_queue, MaxNumberOfMessages=10)
            msgs = resp.get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                work.append(WorkItem.model_validate_json(m["Body"]))
                stack.deps.sqs.delete_message(QueueUrl=stack.recompute_queue, ReceiptHandle=m["ReceiptHandle"])
        if not sends and not work:
            return outcomes
        sender = stack.sender()
        outcomes += [(r, sender.send(r)) for r in sends]
        for item in work:
            Recompute(stack.deps).work(item)


def advance(stack: Stack, **delta: float) -> Any:
    """Move the frozen clock forward (days=, hours=, minutes=), running ticks and sends on the way."""
    from datetime import timedelta

    from retention.core import clock

    from local.driver import advance as drive
    from local.scans import next_due_at
    d = stack.deps
    ticker = stack.ticker()
    target = clock.now() + timedelta(**delta)
    from retention.schedule.broadcasts import next_broadcast_at
    return drive(target, now=clock.now, set_time=clock.set_now,
                 next_due=lambda: next_due_at(d.dynamodb, d.env.due_table), config=d.config,
                 tick=lambda _prev, _cur: ticker.tick(), drain=lambda: drain_sends(stack),
                 next_firing=lambda after: next_broadcast_at(d.config, after))


def sent_emails() -> list[dict[str, Any]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends
    from retention.messaging.mime import parse_email
    return [{**parse_email(m.raw_data.encode()), "to": m.destinations}
            for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages]


FUNCTIONS = __import__("pathlib").Path(__file__).resolve().parents[1] / "functions"
def load_handler(name: str, tag: str = "test") -> Any:
    """functions/<name>/handler.py as a fresh module of its own (every function's module is `handler`)."""
    import importlib.util

    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Retention")  # read at import
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    spec = importlib.util.spec_from_file_location(f"fn_{name}_{tag}", FUNCTIONS / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "req-test"
    log_stream_name = "stream"

    def __init__(self, function_name: str = "test") -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def record_backoff(monkeypatch: Any) -> list[float]:
    """Backoff pauses recorded, not slept: `random.uniform` answers its upper bound (the pause's cap),
    which is appended to the returned list, and `time.sleep` returns at once."""
    import random
    import time
    bounds: list[float] = []

    def uniform(low: float, high: float) -> float:
        bounds.append(high)
        return high
    monkeypatch.delenv("RETENTION_NO_SLEEP", raising=False)
    monkeypatch.setattr(random, "uniform", uniform)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return bounds
