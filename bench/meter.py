"""Counting what AWS would bill: requests per (service, operation) through botocore's event hooks, and
DynamoDB capacity units estimated from the item sizes (the on-demand rules, not moto's ConsumedCapacity,
which moto does not size).

Sizing rules (DynamoDB developer guide, "Item sizes and formats" and "Read/write capacity mode"):
- an item is the sum of its attribute names and values (UTF-8 strings, numbers ≈ 1 byte per two
  significant digits + 1, binary as is, booleans and nulls 1 byte, lists and maps 3 bytes + 1 byte per
  element + the elements);
- a write costs ceil(size / 1 KB) write units (at least 1); a Put or Update over an existing item costs
  the larger of the old and the new size; a Delete costs the size of the deleted item; every item of a
  TransactWriteItems costs twice; a global secondary index whose keys the item carries costs one more
  (standard) write of the projected item — for a KEYS_ONLY index only when the item enters or leaves it
  or its keys change (two: a delete and a put);
- a read costs ceil(size / 4 KB) read units for a strongly consistent read, half of that eventually
  consistent, twice that transactional; a Query or Scan rounds the sum of the items it returns once;
  a BatchGetItem rounds every item on its own (a missing key still costs the minimum).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KB = 1024
# the messages table's by_customer index (infra/constructs/storage.py)
LEDGER_INDEX = [("customer_id", "created_at", "KEYS_ONLY")]
DDB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
DDB_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems")


# ---------------------------------------------------------------------------------------------- sizes
def _number_size(text: str) -> int:
    digits = text.strip().lstrip("+-").replace(".", "").split("e")[0].split("E")[0].strip("0")
    return max(1, (len(digits) + 1) // 2) + 1


def value_size(value: Any) -> int:
    """Size of one typed attribute value ({"S": ...}, {"N": ...}, ...)."""
    if not isinstance(value, dict) or len(value) != 1:
        return 0
    (kind, v), = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return _number_size(str(v))
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(x).encode()) for x in v)
    if kind == "NS":
        return sum(_number_size(str(x)) for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / (4 * KB)))


# ---------------------------------------------------------------------------------------------- meter
@dataclass
class Meter:
    """Attach to boto3 clients; `backend` (optional) returns moto's in-process DynamoDB backend, used to
    size the item an Update or Delete touches (neither request carries the whole item)."""

    backend: Callable[[], Any] | None = None
    # table -> [(hash, range) of an index projecting ALL, or (hash, range, "KEYS_ONLY")]
    gsi_keys: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    wru_by_table: Counter[str] = field(default_factory=Counter)
    items_read: int = 0
    items_read_by_table: Counter[str] = field(default_factory=Counter)
    item_sizes: dict[str, list[int]] = field(default_factory=dict)  # table -> written item sizes (bytes)
    enabled: bool = True  # off: the hooks return at once (seeding a table costs no sizing)

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)

    def reset(self) -> None:
        self.calls.clear()
        self.wru = self.rru = 0.0
        self.wru_by_table.clear()
        self.items_read = 0
        self.items_read_by_table.clear()
        self.item_sizes = {}

    def snapshot(self) -> dict[str, Any]:
        return {"calls": {f"{s}.{o}": n for (s, o), n in sorted(self.calls.items())}, "wru": self.wru,
                "rru": self.rru, "items_read": self.items_read, "wru_by_table": dict(self.wru_by_table),
                "items_read_by_table": dict(self.items_read_by_table)}

    def count(self, service: str, *operations: str) -> int:
        return sum(n for (svc, op), n in self.calls.items() if svc == service and (not operations or op in operations))

    # ---- hooks -----------------------------------------------------------------------------------
    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.enabled:
            return
        service, op = model.service_model.service_name, model.name
        self.calls[(service, op)] += 1
        context["bench_params"] = params
        if service == "dynamodb" and op in DDB_WRITES:
            context["bench_before"] = self._before_sizes(op, params)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.enabled or "bench_params" not in context or model.service_model.service_name != "dynamodb":
            return
        params = context.get("bench_params") or {}
        op = model.name
        if op in DDB_WRITES:
            self._writes(op, params, context.get("bench_before") or [])
        elif op in DDB_READS and "Error" not in parsed:
            self._reads(op, params, parsed)

    # ---- writes ----------------------------------------------------------------------------------
    def _ops(self, op: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any] | None]]:
        """(kind, table, key or item, new item for a put) for every item a write request touches."""
        out: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []
        if op == "PutItem":
            out.append(("Put", params["TableName"], params["Item"], params["Item"]))
        elif op == "UpdateItem":
            out.append(("Update", params["TableName"], params["Key"], None))
        elif op == "DeleteItem":
            out.append(("Delete", params["TableName"], params["Key"], None))
        elif op == "BatchWriteItem":
            for table, reqs in (params.get("RequestItems") or {}).items():
                for r in reqs:
                    if "PutRequest" in r:
                        out.append(("Put", table, r["PutRequest"]["Item"], r["PutRequest"]["Item"]))
                    else:
                        out.append(("Delete", table, r["DeleteRequest"]["Key"], None))
        elif op == "TransactWriteItems":
            for t in params.get("TransactItems") or []:
                (kind, body), = t.items()
                if kind == "Put":
                    out.append(("Put", body["TableName"], body["Item"], body["Item"]))
                else:
                    out.append((kind, body["TableName"], body["Key"], None))
        return out

    def _stored(self, table: str, key_or_item: dict[str, Any]) -> dict[str, Any] | None:
        if self.backend is None:
            return None
        try:
            key = {k: key_or_item[k] for k in ("pk", "sk") if k in key_or_item}
            item = self.backend().get_item(table, key)
        except Exception:
            return None
        return item.to_json()["Attributes"] if item is not None else None

    def _before_sizes(self, op: str, params: dict[str, Any]) -> list[dict[str, Any] | None]:
        return [self._stored(table, key) for _, table, key, _ in self._ops(op, params)]

    def _writes(self, op: str, params: dict[str, Any], before: list[dict[str, Any] | None]) -> None:
        factor = 2 if op == "TransactWriteItems" else 1
        for i, (kind, table, key, new) in enumerate(self._ops(op, params)):
            old = before[i] if i < len(before) else None
            if kind == "Put":
                after = new
            elif kind == "Update":
                after = self._stored(table, key)
            else:
                after = None
            size = max(item_size(old), item_size(after))
            units = factor * write_units(size)
            for hash_attr, range_attr, *projection in self.gsi_keys.get(table, []):
                if projection == ["KEYS_ONLY"]:
                    # a keys-only index is written when an item enters or leaves it or its keys change, not
                    # when other attributes do; its entry is the keys alone (≈ 100 bytes: one unit)
                    keys = [tuple(str(it.get(a)) for a in (hash_attr, range_attr)) if it and hash_attr in it
                            and range_attr in it else None for it in (old, after)]
                    if keys[0] != keys[1]:
                        units += 2 if keys[0] and keys[1] else 1
                elif any(it and hash_attr in it and range_attr in it for it in (old, after)):
                    units += write_units(size)
            self.wru += units
            self.wru_by_table[table] += units
            if kind != "Delete":
                self.item_sizes.setdefault(table, []).append(item_size(after))

    # ---- reads -----------------------------------------------------------------------------------
    def _reads(self, op: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if op == "GetItem":
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            item = parsed.get("Item")
            self.rru += factor * read_units(item_size(item))
            self._read_items(params["TableName"], 1 if item else 0)
        elif op == "BatchGetItem":
            for table, req in (params.get("RequestItems") or {}).items():
                factor = 1.0 if req.get("ConsistentRead") else 0.5
                found = (parsed.get("Responses") or {}).get(table, [])
                unprocessed = len(((parsed.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys", []))
                missing = max(0, len(req.get("Keys", [])) - len(found) - unprocessed)
                self.rru += factor * (sum(read_units(item_size(it)) for it in found) + missing)
                self._read_items(table, len(found))
        elif op in ("Query", "Scan"):
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            items = parsed.get("Items") or []
            self.rru += factor * read_units(sum(item_size(it) for it in items))
            self._read_items(params["TableName"], len(items))
        elif op == "TransactGetItems":
            for t, resp in zip(params.get("TransactItems") or [], parsed.get("Responses") or [], strict=False):
                item = resp.get("Item")
                self.rru += 2 * read_units(item_size(item))
                self._read_items(t["Get"]["TableName"], 1 if item else 0)

    def _read_items(self, table: str, n: int) -> None:
        self.items_read += n
        self.items_read_by_table[table] += n


# ---------------------------------------------------------------------------------------------- moto


def patch_moto_transactions() -> None:
    """Kept for the bench's callers: the patch lives with the local runtime (local/motolock.py)."""
    from local.motolock import install
    install()


def moto_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
