"""Section 2: CPU per ingested event and per rendered + MIME-encoded email with AWS stubbed.

The stub is not moto: FakeDynamo answers from a snapshot of a real stack's tables (taken once on moto:
the scenario library applied, the customers identified) and discards writes, so every iteration starts
from the same state and spends nothing on an AWS emulator. Timings are medians of many iterations
(time.perf_counter_ns for wall time, time.process_time_ns for the CPU of every thread), each reported as
a ratio to a bare pydantic parse of the same payload, measured the same way in the same run."""

from __future__ import annotations

import gc
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from bench.aws_requests import event_kinds
from bench.meter import patch_moto_transactions

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BATCH = 100


# ---------------------------------------------------------------------------------------------- fakes
class FakeDynamo:
    """Reads from a snapshot {table: {(pk, sk): item}} (DynamoDB JSON, as botocore returns it); writes are
    accepted and dropped."""

    def __init__(self, snapshot: dict[str, dict[tuple[str, str], dict[str, Any]]]) -> None:
        self.tables = snapshot
        self.by_pk: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for table, items in snapshot.items():
            idx: dict[str, list[dict[str, Any]]] = {}
            for (pk, _sk), item in sorted(items.items()):
                idx.setdefault(pk, []).append(item)
            self.by_pk[table] = idx

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.tables.get(table, {}).get((key["pk"]["S"], key["sk"]["S"]))

    def get_item(self, *, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self._get(TableName, Key)
        return {"Item": item} if item else {}

    def batch_get_item(self, *, RequestItems: dict[str, Any], **_: Any) -> dict[str, Any]:
        out: dict[str, list[dict[str, Any]]] = {}
        for table, req in RequestItems.items():
            out[table] = [it for k in req["Keys"] if (it := self._get(table, k))]
        return {"Responses": out, "UnprocessedKeys": {}}

    def query(self, *, TableName: str, ExpressionAttributeValues: dict[str, Any], **_: Any) -> dict[str, Any]:
        pk = ExpressionAttributeValues[":p"]["S"]
        items = self.by_pk.get(TableName, {}).get(pk, [])
        return {"Items": items, "Count": len(items)}

    def scan(self, **_: Any) -> dict[str, Any]:
        return {"Items": [], "Count": 0}

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}

    update_item = delete_item = transact_write_items = put_item

    def batch_write_item(self, **_: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


class FakeSQS:
    def send_message_batch(self, *, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"], "MessageId": str(uuid.uuid4())} for e in Entries], "Failed": []}

    def send_message(self, **_: Any) -> dict[str, Any]:
        return {"MessageId": str(uuid.uuid4())}


class FakeProvider:
    def send_email(self, **_: Any) -> dict[str, Any]:
        return {"MessageId": str(uuid.uuid4())}

    def publish(self, **_: Any) -> dict[str, Any]:
        return {"MessageId": str(uuid.uuid4())}


# ---------------------------------------------------------------------------------------------- baseline
class BareMessage(BaseModel):
    type: str
    messageId: str
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None


class BareBatch(BaseModel):
    batch: list[BareMessage]


class BareSend(BaseModel):
    """The SQS body of a send plus the stored profile document it renders from, parsed without logic."""

    request: dict[str, Any]
    profile: dict[str, Any]


# ---------------------------------------------------------------------------------------------- timing
def measure(fn: Callable[[], Any], iterations: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    wall: list[int] = []
    cpu: list[int] = []
    gc.collect()
    for _ in range(iterations):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        fn()
        c1, w1 = time.process_time_ns(), time.perf_counter_ns()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
    return {"wall_ms": statistics.median(wall) / 1e6, "cpu_ms": statistics.median(cpu) / 1e6,
            "iterations": iterations}


def _snapshot() -> tuple[dict[str, dict[tuple[str, str], dict[str, Any]]], dict[str, str]]:
    """A real stack's tables after the library is applied and the benchmark's customers are identified."""
    from retention.core import clock
    from retention.ingestion.ingestor import Ingestor

    from bench.aws_requests import _identify
    from tests.support import moto_stack

    patch_moto_transactions()
    clock.set_now(NOW)
    try:
        with moto_stack() as s:
            s.apply_library()
            d = s.deps
            ing = Ingestor(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config, workers=1)
            from retention.ingestion import wire
            msgs = []
            for prefix in dict.fromkeys(prefix for prefix, _ in event_kinds().values()):
                msgs += [_identify(f"{prefix}{i}") for i in range(BATCH)]
            for start in range(0, len(msgs), 100):
                parsed = wire.parse_request("batch", json.dumps({"batch": msgs[start:start + 100]}).encode(), NOW)
                ing.ingest(parsed.messages, "src_bench")
            d.config.secrets("links")
            d.config.secrets("suppression-salt")
            snap: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
            for table in s.tables.values():
                kwargs: dict[str, Any] = {"TableName": table}
                items: dict[tuple[str, str], dict[str, Any]] = {}
                while True:
                    resp = d.dynamodb.scan(**kwargs)
                    for it in resp.get("Items", []):
                        items[(it["pk"]["S"], it["sk"]["S"])] = it
                    if not resp.get("LastEvaluatedKey"):
                        break
                    kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
                snap[table] = items
            return snap, dict(s.tables)
    finally:
        clock.reset()


def run(log: Any = print, scale: float = 1.0) -> dict[str, Any]:
    import retention.core.config as rconfig
    from retention.core import clock
    from retention.core.config import ConfigStore
    from retention.core.settings import Env
    from retention.customers.store import PROFILE_SK, ProfileRepo, profile_pk
    from retention.ingestion import wire
    from retention.ingestion.ingestor import Ingestor
    from retention.journeys.catalogue import Catalogue
    from retention.messaging.rendering import Renderer
    from retention.messaging.requests import SendRequest
    from retention.messaging.sender import Sender

    started = time.perf_counter()
    snap, tables = _snapshot()
    log(f"  cpu: snapshot {time.perf_counter() - started:.1f}s")
    fake = FakeDynamo(snap)
    env = Env(PROFILES_TABLE=tables["profiles"], EVENTS_TABLE=tables["events"], CONFIG_TABLE=tables["config"],
              DUE_TABLE=tables["due"], MESSAGES_TABLE=tables["messages"], IDEMPOTENCY_TABLE=tables["idempotency"],
              SEND_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/000000000000/send",
              RECOMPUTE_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/000000000000/recompute",
              SENDER_EMAIL="Shop <news@example.com>", PUBLIC_BASE_URL="https://shop.test/api")
    ConfigStore.invalidate()
    Catalogue._parsed.clear()
    config = ConfigStore(fake, env.config_table)
    sqs = FakeSQS()
    saved_cache = rconfig.CACHE_SECONDS
    rconfig.CACHE_SECONDS = 1e9
    clock.set_now(NOW)
    n_batch = max(5, int(15 * scale))
    n_single = max(20, int(150 * scale))
    ingest: dict[str, Any] = {}
    try:
        ing8 = Ingestor(ddb_client=fake, sqs=sqs, env=env, config=config)  # as deployed: 8 worker threads
        ing1 = Ingestor(ddb_client=fake, sqs=sqs, env=env, config=config, workers=1)
        for label, (prefix, make) in event_kinds().items():
            payload = json.dumps({"batch": [make(f"{prefix}{i}", i) for i in range(BATCH)]}).encode()
            single = json.dumps({"batch": [make(f"{prefix}0", 0)]}).encode()

            def parse(raw: bytes = payload) -> Any:
                return wire.parse_request("batch", raw, NOW)

            def full(raw: bytes = payload, ing: Any = ing8) -> Any:
                parsed = wire.parse_request("batch", raw, NOW)
                res = ing.ingest(parsed.messages, "src_bench", now=NOW)
                assert res.accepted == len(parsed.messages), res
                return res

            bare = measure(lambda raw=payload: BareBatch.model_validate_json(raw), n_batch * 10)
            row = {
                "bare_parse_per_event": {k: v / BATCH for k, v in bare.items() if k.endswith("_ms")},
                "wire_parse_per_event": {k: v / BATCH for k, v in measure(parse, n_batch * 4).items()
                                         if k.endswith("_ms")},
                "batch_per_event": {k: v / BATCH for k, v in measure(full, n_batch).items() if k.endswith("_ms")},
                "batch_1_worker_per_event": {k: v / BATCH for k, v in measure(
                    lambda raw=payload: full(raw, ing1), n_batch).items() if k.endswith("_ms")},
                "single": {k: v for k, v in measure(lambda raw=single: full(raw, ing8), n_single).items()
                           if k.endswith("_ms")},
                "single_bare_parse": {k: v for k, v in measure(
                    lambda raw=single: BareBatch.model_validate_json(raw), n_single * 5).items() if k.endswith("_ms")},
            }
            b = row["batch_per_event"]["cpu_ms"]
            row["ratio_batch_to_bare"] = b / max(1e-9, row["bare_parse_per_event"]["cpu_ms"])
            row["ratio_single_to_bare"] = row["single"]["cpu_ms"] / max(1e-9, row["single_bare_parse"]["cpu_ms"])
            ingest[label] = row
            log(f"  cpu: {label}: {b:.3f} ms/event (batch), {row['single']['cpu_ms']:.3f} ms (single)")

        # ---- render + MIME (and the whole send with stub clients)
        renderer = Renderer(config, env)
        repo = ProfileRepo(fake, env.profiles_table)
        sender = Sender(ddb_client=fake, ses=FakeProvider(), sns=FakeProvider(), sqs=sqs, env=env, config=config,
                        renderer=renderer)
        cases = {
            "welcome": SendRequest(customer_id="pt1", rule="welcome", entry="e1", step=0, channel="email",
                                   template="welcome"),
            "cart-reminder (2 products)": SendRequest(
                customer_id="pt2", rule="abandoned-cart", entry="e1", step=1, channel="email",
                template="cart-reminder", event={"name": "Checkout Started", "properties": {
                    "cart_id": "k1", "products": [{"product_id": "p1", "name": "Кроссовки", "price": 5990,
                                                   "quantity": 1, "image_url": "https://shop.example/p1.jpg",
                                                   "url": "https://shop.example/p1"},
                                                  {"product_id": "p2", "name": "Носки", "price": 490,
                                                   "quantity": 2, "url": "https://shop.example/p2"}]}}),
            "order-status (transactional)": SendRequest(
                customer_id="pt3", rule="order-status", entry="e1", step=0, channel="email",
                template="order-status", transactional=True,
                event={"name": "Order Shipped", "properties": {"order_id": "o-17", "carrier": "CDEK",
                                                               "tracking_url": "https://cdek.example/t/1"}}),
        }
        render: dict[str, Any] = {}
        n_render = max(50, int(300 * scale))
        for label, req in cases.items():
            sp = repo.load(req.customer_id, NOW)
            out = renderer.render(req, sp.profile, "email", NOW)
            body = req.model_dump_json()
            profile_item = fake._get(env.profiles_table,
                                     {"pk": {"S": profile_pk(req.customer_id)}, "sk": {"S": PROFILE_SK}})
            assert profile_item is not None
            from retention.customers.store import decode_doc
            doc = profile_item["doc"]
            bare_payload = json.dumps({"request": json.loads(body),
                                       "profile": json.loads(doc["S"] if "S" in doc else decode_doc(doc["B"]))})
            r = measure(lambda req=req, sp=sp: renderer.render(req, sp.profile, "email", NOW), n_render)
            bare = measure(lambda raw=bare_payload: BareSend.model_validate_json(raw), n_render * 5)
            send = measure(lambda req=req: sender.send(req), max(30, n_render // 3))
            render[label] = {"render_mime": {k: v for k, v in r.items() if k.endswith("_ms")},
                             "bare_parse": {k: v for k, v in bare.items() if k.endswith("_ms")},
                             "whole_send_stubbed": {k: v for k, v in send.items() if k.endswith("_ms")},
                             "ratio_to_bare": r["cpu_ms"] / max(1e-9, bare["cpu_ms"]),
                             "raw_bytes": len(out.raw)}
            log(f"  cpu: render {label}: {r['cpu_ms']:.3f} ms, whole send {send['cpu_ms']:.3f} ms")
    finally:
        rconfig.CACHE_SECONDS = saved_cache
        ConfigStore.invalidate()
        Catalogue._parsed.clear()
        clock.reset()
    return {"ingest": ingest, "render": render, "elapsed_s": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
