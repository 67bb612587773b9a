"""Section 6: throughput of the local stack (`python -m local.main`, what `make run` runs) under a bounded
load sent with the real Segment client through /v1/batch, next to the ceiling of the moto server that
stack talks to, measured in the same run: plain PutItem calls, and TransactWriteItems shaped like a plain
event's (marker + event + profile) against the stack's own tables, before and after the load.

The local stack serialises every handler invocation (one lock) and runs the handlers, moto and the HTTP
front in one Python process, so events per second there are not Lambda's; the point is the ratio: how
much of the time is moto's and how much is ours."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_EVENTS = 20_000
TIME_BUDGET_S = 120.0  # the load phase; the count is reduced to fit (recorded)


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (Linux /proc; no psutil needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and parts[9] in inodes:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def start_local(log: Any, module: str = "local.main") -> tuple[subprocess.Popen[bytes], str, Any]:
    from local.process import start_local as start
    t0 = time.perf_counter()
    # one log per variant, overwritten by the next run
    proc, url, logfile = start(module, log_name=f"bench-{module.replace('.', '-')}")
    log(f"  throughput: local stack up on {url} in {time.perf_counter() - t0:.1f}s")
    return proc, url, logfile


def stop_local(proc: subprocess.Popen[bytes], logfile: Any) -> None:
    from local.process import stop_local as stop
    stop(proc, logfile)


def messages(n: int, offset: int = 0, customers: int = 5_000) -> list[tuple[str, dict[str, Any]]]:
    """A shop's mix: 70 % plain track, 15 % Product Viewed, 10 % identify, 5 % Order Completed; batches of
    100 consecutive messages name ~100 distinct customers."""
    out: list[tuple[str, dict[str, Any]]] = []
    for k in range(offset, offset + n):
        uid = f"load{k % customers}"
        r = k % 20
        if r < 14:
            out.append(("track", {"user_id": uid, "event": "Store Visited", "properties": {"store": "moscow-1"}}))
        elif r < 17:
            out.append(("track", {"user_id": uid, "event": "Product Viewed",
                                  "properties": {"product_id": f"p{k % 300}", "price": 5990}}))
        elif r < 19:
            out.append(("identify", {"user_id": uid, "traits": {"email": f"{uid}@example.com", "first_name": "Анна",
                                                                 "email_consent": False}}))
        else:
            out.append(("track", {"user_id": uid, "event": "Order Completed",
                                  "properties": {"order_id": f"o{k}", "revenue": 2580, "currency": "RUB",
                                                 "products": [{"product_id": f"p{k % 300}", "price": 2580}]}}))
    return out


MIX = {"track (plain: no rule, no product)": 0.70, "Product Viewed": 0.15,
       "identify (known customer, traits change)": 0.10, "Order Completed (2 products)": 0.05}


def send_load(url: str, n: int, offset: int, deadline_s: float) -> dict[str, Any]:
    """Enqueue n messages in the real Segment client (batches of 100) and wait until they are delivered or
    the deadline passes (then what is still queued is dropped and not counted)."""
    import segment.analytics as analytics
    failed: list[int] = []
    errors: list[str] = []

    def on_error(e: Exception, batch: list[Any]) -> None:
        failed.append(len(batch))
        errors.append(f"{type(e).__name__}: {e}"[:200])

    client = analytics.Client(write_key="dev-write-key", host=url, upload_size=100, max_queue_size=n + 1000,
                              on_error=on_error, max_retries=3, timeout=120, gzip=False)
    batch = messages(n, offset)
    t0 = time.perf_counter()
    for kind, kwargs in batch:
        if kind == "track":
            client.track(message_id=str(uuid.uuid4()), **kwargs)
        else:
            client.identify(message_id=str(uuid.uuid4()), **kwargs)
    deadline = t0 + deadline_s
    while client.queue.unfinished_tasks and time.perf_counter() < deadline:
        time.sleep(0.05)
    dropped = 0
    if client.queue.unfinished_tasks:
        for consumer in client.consumers:
            consumer.pause()
        while True:
            try:
                client.queue.get_nowait()
            except Exception:
                break
            client.queue.task_done()
            dropped += 1
    client.join()  # the batch in flight completes
    elapsed = time.perf_counter() - t0
    delivered = n - dropped - sum(failed)
    return {"enqueued": n, "delivered": delivered, "failed": sum(failed), "dropped_at_deadline": dropped,
            "seconds": round(elapsed, 2), "events_per_s": round(delivered / elapsed, 1),
            "errors": len(errors), "first_errors": errors[:3]}


def _retrying(counter: dict[str, int], fn: Any, **kwargs: Any) -> Any:
    """One call, repeated (up to 5 times) when moto answers a 5xx: under the load its server sometimes fails a
    request (a race between the stack's ingest threads and moto's table copies). Each retry is counted in the
    result (`moto_5xx_retried`), and the time measured includes it: a retried call was that slow."""
    from botocore.exceptions import ClientError
    for attempt in range(5):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status < 500 or attempt == 4:
                raise
            counter["retried"] = counter.get("retried", 0) + 1
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def moto_ceiling(endpoint: str, tables: dict[str, str], n_put: int = 600, n_txn: int = 200) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    retried: dict[str, int] = {}
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"max_attempts": 1}))
    name = "bench-ceiling"
    existing = client.list_tables()["TableNames"]
    if name not in existing:
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}])
    tag = uuid.uuid4().hex[:8]
    payload = "x" * 300
    put_ms: list[float] = []
    for i in range(n_put):
        t0 = time.perf_counter()
        _retrying(retried, client.put_item, TableName=name,
                  Item={"pk": {"S": f"K#{tag}#{i}"}, "sk": {"S": "P"}, "v": {"S": payload}})
        put_ms.append((time.perf_counter() - t0) * 1000)
    put = statistics.median(put_ms)
    out: dict[str, Any] = {"put_item_per_s": round(1000 / put, 1), "put_item_ms": round(put, 2),
                           "put_item_mean_ms": round(statistics.mean(put_ms), 2)}
    if tables:
        doc = "y" * 1300
        txn_ms: list[float] = []
        for i in range(n_txn):
            t0 = time.perf_counter()
            _retrying(retried, client.transact_write_items, TransactItems=[
                {"Put": {"TableName": tables["idempotency"],
                         "Item": {"pk": {"S": f"BENCH#{tag}#{i}"}, "sk": {"S": "M"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": tables["events"], "Item": {"pk": {"S": f"BENCH#{tag}#{i}"},
                                                                 "sk": {"S": "2026#m"}, "p": {"S": payload}}}},
                {"Put": {"TableName": tables["profiles"], "Item": {"pk": {"S": f"BENCH#{tag}#{i}"}, "sk": {"S": "P"},
                                                                   "doc": {"S": doc}},
                         "ConditionExpression": "attribute_not_exists(pk)"}}])
            txn_ms.append((time.perf_counter() - t0) * 1000)
        txn = statistics.median(txn_ms)
        out.update({"transaction_per_s": round(1000 / txn, 1), "transaction_ms": round(txn, 2),
                    "transaction_mean_ms": round(statistics.mean(txn_ms), 2)})
        sizes = {}
        for role, table in tables.items():
            kwargs: dict[str, Any] = {"TableName": table, "Select": "COUNT"}
            count = 0
            while True:
                resp = _retrying(retried, client.scan, **kwargs)
                count += resp.get("Count", 0)
                if not resp.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            sizes[role] = count
        out["table_items"] = sizes
    out["moto_5xx_retried"] = retried.get("retried", 0)
    return out


def stack_tables(endpoint: str) -> dict[str, str]:
    import boto3
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    names = client.list_tables()["TableNames"]
    out = {}
    for role in ("profiles", "events", "idempotency", "due", "messages", "config"):
        match = [n for n in names if role in n.lower()]
        if match:
            out[role] = match[0]
    return out


def _find_moto(proc: subprocess.Popen[bytes], url: str) -> tuple[str, dict[str, str]]:
    ports = listening_ports(proc.pid) - {int(url.rsplit(":", 1)[1])}
    for p in sorted(ports):  # the moto server is the port answering ListTables with the stack's tables
        try:
            tables = stack_tables(f"http://127.0.0.1:{p}")
        except Exception:
            continue
        if tables:
            return f"http://127.0.0.1:{p}", tables
    raise RuntimeError(f"none of the ports {sorted(ports)} is the local stack's moto server")


def phase(log: Any, *, patched: bool, target: int, budget_s: float, warmup: int, n_txn: int) -> dict[str, Any]:
    started = time.perf_counter()
    name = "patched" if patched else "as make run runs it"
    proc, url, logfile = start_local(log, "bench.local_stack" if patched else "local.main")
    try:
        endpoint, tables = _find_moto(proc, url)
        before = moto_ceiling(endpoint, tables, n_txn=n_txn)
        log(f"  throughput ({name}): moto before the load: {before['put_item_per_s']:.0f} PutItem/s, "
            f"{before.get('transaction_per_s', 0):.0f} plain-event transactions/s")
        n, offset, warm = target, 0, None
        if warmup:
            warm = send_load(url, warmup, 0, budget_s)
            offset = warmup
            log(f"  throughput ({name}): warm-up {warmup:,} events: {warm['events_per_s']:.0f} events/s")
            n = int(min(target, max(2_000, warm["events_per_s"] * budget_s)) // 100 * 100)
        load = send_load(url, n, offset, budget_s * 1.3)
        log(f"  throughput ({name}): {load['delivered']:,} of {n:,} events in {load['seconds']:.0f}s: "
            f"{load['events_per_s']:.0f} events/s ({load['failed']} failed, {load['dropped_at_deadline']} "
            "dropped at the deadline)")
        after = moto_ceiling(endpoint, tables, n_txn=n_txn)
        log(f"  throughput ({name}): moto after the load: {after['put_item_per_s']:.0f} PutItem/s, "
            f"{after.get('transaction_per_s', 0):.0f} transactions/s; tables {after.get('table_items')}")
        logfile.flush()
        text = Path(logfile.name).read_text(errors="replace")
        return {"patched_moto": patched, "url": url, "moto_endpoint": endpoint, "target_events": target,
                "events": n, "reduced": n < target, "warmup": warm, "load": load, "moto_before": before,
                "moto_after": after, "stack_log": logfile.name,
                "moto_500_race": text.count("RuntimeError: dictionary changed size during iteration"),
                "failed_requests": text.count("ERROR:retention.local:request failed"),
                "elapsed_s": round(time.perf_counter() - started, 1)}
    finally:
        stop_local(proc, logfile)


def moto_share(result: dict[str, Any], per_event: dict[str, Any]) -> dict[str, Any]:
    """moto's part of an event's time: the requests a mix event makes (section 1, batches of 100) at the
    speed moto showed for them in the same run (mean of before and after the load)."""
    txn = plain = 0.0
    for label, weight in MIX.items():
        row = per_event.get(f"{label} — batch of 100")
        if not row:
            continue
        t = row["by_operation"].get("dynamodb.TransactWriteItems", 0)
        txn += weight * t
        plain += weight * (row["total_requests"] - t)
    b, a = result["moto_before"], result["moto_after"]
    moto_ms = txn * statistics.mean([b["transaction_ms"], a["transaction_ms"]]) + \
        plain * statistics.mean([b["put_item_ms"], a["put_item_ms"]])
    measured_ms = 1000 / max(1e-9, result["load"]["events_per_s"])
    return {"transactions_per_event": round(txn, 3), "other_requests_per_event": round(plain, 3),
            "moto_ms_per_event": round(moto_ms, 3), "measured_ms_per_event": round(measured_ms, 3),
            "moto_share": round(min(1.0, moto_ms / measured_ms), 3),
            "moto_bound_events_per_s": round(1000 / moto_ms, 1) if moto_ms else None}


def run(log: Any = print, target: int = TARGET_EVENTS, budget_s: float = TIME_BUDGET_S,
        per_event: dict[str, Any] | None = None, raw_budget_s: float = 30.0) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {}
    # 1. the stack exactly as `make run` starts it, time-boxed (moto's TransactWriteItems deep-copies whole
    #    tables and races with the ingest worker threads: see the report)
    out["as_make_run"] = phase(log, patched=False, target=3_000, budget_s=raw_budget_s, warmup=0, n_txn=60)
    # 2. the same stack with moto's transaction snapshot patched: what our code can do
    out["patched_moto"] = phase(log, patched=True, target=target, budget_s=budget_s, warmup=1_000, n_txn=200)
    if per_event:
        for key in ("as_make_run", "patched_moto"):
            out[key]["moto_share"] = moto_share(out[key], per_event)
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(run(target=int(sys.argv[1]) if len(sys.argv) > 1 else 3000, budget_s=30, raw_budget_s=20),
                     indent=1))
