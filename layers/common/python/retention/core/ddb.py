"""Small helpers over the low-level DynamoDB client (cheaper to import than the resource layer)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

_CODEC: tuple[Any, Any] | None = None


def _codec() -> tuple[Any, Any]:
    """boto3's attribute-value (de)serializers, loaded on first use: the pure modules that only build keys
    and items (the engine, the due index's DueItem) stay importable without boto3."""
    global _CODEC
    if _CODEC is None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
        _CODEC = (TypeSerializer(), TypeDeserializer())
    return _CODEC


def _to_ddb_safe(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_ddb_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_ddb_safe(v) for v in value]
    return value


def _from_ddb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_ddb(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_from_ddb(v) for v in value]
    return value


_N_LIMIT = 10**38  # DynamoDB numbers hold 38 digits: boto3 writes a smaller int as str(int)


def _attribute(v: Any) -> dict[str, Any]:
    """boto3's TypeSerializer output for `_to_ddb_safe(v)`, with the common types (str, bool, int, None, dict,
    list) done here: every item of every event goes through this. Anything else (floats → Decimal, Decimal,
    bytes, sets, big ints, other mappings) is boto3's, as before."""
    t = type(v)
    if t is str:
        return {"S": v}
    if t is bool:
        return {"BOOL": v}
    if t is int and -_N_LIMIT < v < _N_LIMIT:
        return {"N": str(v)}
    if v is None:
        return {"NULL": True}
    if t is dict:
        return {"M": {k: _attribute(x) for k, x in v.items()}}
    if t is list or t is tuple:
        return {"L": [_attribute(x) for x in v]}
    return dict(_codec()[0].serialize(_to_ddb_safe(v)))


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _attribute(v) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    de = _codec()[1]
    return {k: _from_ddb(de.deserialize(v)) for k, v in item.items()}


def value(v: Any) -> dict[str, Any]:
    return _attribute(v)


def values(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: value(v) for k, v in mapping.items()}


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


# ---- the one classifier of DynamoDB errors ------------------------------------------------------------

CONTENTION = frozenset({"TransactionCanceledException", "TransactionConflictException",
                        "ConditionalCheckFailedException"})
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "TransactionConflictException", "LimitExceededException"})
THROTTLED_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})


def set_fields(client: Any, table: str, pk: str, sk: str, fields: dict[str, Any]) -> None:
    """One UpdateItem that SETs `fields` (names and values as placeholders) on the item at pk/sk."""
    client.update_item(TableName=table, Key=key(pk, sk),
                       UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(fields))),
                       ExpressionAttributeNames={f"#a{i}": k for i, k in enumerate(fields)},
                       ExpressionAttributeValues={f":a{i}": value(v) for i, v in enumerate(fields.values())})


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError; None for anything else (a timeout carries no response,
    a botocore ReadTimeoutError has `response = None`)."""
    resp = getattr(exc, "response", None)
    if not isinstance(resp, dict):
        return None
    code = (resp.get("Error") or {}).get("Code")
    return str(code) if code else None


def cancellation_reasons(exc: BaseException) -> list[dict[str, Any]]:
    """TransactionCanceledException's CancellationReasons, one per item in request order (botocore puts
    them at the top of the error response; moto does the same)."""
    resp = getattr(exc, "response", None)
    return list(resp.get("CancellationReasons") or []) if isinstance(resp, dict) else []


def condition_failed_at(exc: BaseException, index: int) -> bool:
    """Did the item at `index` of a cancelled transaction fail its condition?"""
    reasons = cancellation_reasons(exc)
    return index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed"


def is_conditional_failure(exc: BaseException) -> bool:
    """A condition (or a transaction holding one) failed: someone else wrote first."""
    return error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException")


def is_contention(exc: BaseException) -> bool:
    """Lost a race (a failed condition, a cancelled or conflicting transaction): read again and retry."""
    return error_code(exc) in CONTENTION


def is_transaction_conflict(exc: BaseException) -> bool:
    """A transaction that collided with another one, no condition of ours failed: the same write may be
    retried as it is (a failed condition, e.g. the item is gone, is not worth retrying)."""
    code = error_code(exc)
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    return not any(r.get("Code") == "ConditionalCheckFailed" for r in cancellation_reasons(exc))


def is_throttled(exc: BaseException) -> bool:
    """DynamoDB (or a transaction item) was throttled: the caller may answer 429 / back off."""
    return error_code(exc) in THROTTLED or any(r.get("Code") in THROTTLED_REASONS
                                               for r in cancellation_reasons(exc))


def get(client: Any, table: str, pk: str, sk: str, *, consistent: bool = False) -> dict[str, Any] | None:
    resp = client.get_item(TableName=table, Key=key(pk, sk), ConsistentRead=consistent)
    return deserialize(resp.get("Item"))


def batch_get(client: Any, table: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """BatchGetItem in chunks of 100, retrying unprocessed keys."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 100):
        request: dict[str, Any] = {table: {"Keys": [key(pk, sk) for pk, sk in unique[start : start + 100]]}}
        attempts = 0
        while request:
            resp = client.batch_get_item(RequestItems=request)
            for raw in resp.get("Responses", {}).get(table, []):
                item = deserialize(raw) or {}
                found[(item["pk"], item["sk"])] = item
            request = resp.get("UnprocessedKeys") or {}
            attempts += 1
            if request:
                backoff(attempts)
    return found


def batch_write(client: Any, table: str, puts: Iterable[dict[str, Any]] = (),
                deletes: Iterable[tuple[str, str]] = ()) -> int:
    """BatchWriteItem in chunks of 25, retrying unprocessed items with backoff. Returns requests made."""
    ops = [{"PutRequest": {"Item": serialize(p)}} for p in puts]
    ops += [{"DeleteRequest": {"Key": key(pk, sk)}} for pk, sk in deletes]
    requests = 0
    for start in range(0, len(ops), 25):
        pending: list[Any] = ops[start : start + 25]
        attempts = 0
        while pending:
            resp = client.batch_write_item(RequestItems={table: pending})
            requests += 1
            pending = resp.get("UnprocessedItems", {}).get(table, [])
            attempts += 1
            if pending:
                backoff(attempts)
    return requests


def query(client: Any, table: str, pk: str, *, sk_prefix: str | None = None, sk_between: tuple[str, str] | None = None,
          sk_lte: str | None = None, limit: int | None = None, forward: bool = True,
          index: str | None = None, pk_name: str = "pk", sk_name: str = "sk",
          consistent: bool = False) -> Iterator[dict[str, Any]]:
    names = {"#p": pk_name}
    vals: dict[str, Any] = {":p": {"S": pk}}
    cond = "#p = :p"
    if sk_prefix is not None:
        cond += " AND begins_with(#s, :s)"
        names["#s"] = sk_name
        vals[":s"] = {"S": sk_prefix}
    elif sk_between is not None:
        cond += " AND #s BETWEEN :a AND :b"
        names["#s"] = sk_name
        vals[":a"] = {"S": sk_between[0]}
        vals[":b"] = {"S": sk_between[1]}
    elif sk_lte is not None:
        cond += " AND #s <= :s"
        names["#s"] = sk_name
        vals[":s"] = {"S": sk_lte}
    kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": cond,
                              "ExpressionAttributeNames": names, "ExpressionAttributeValues": vals,
                              "ScanIndexForward": forward}
    if index:
        kwargs["IndexName"] = index
    if consistent:
        kwargs["ConsistentRead"] = True
    returned = 0
    while True:
        if limit is not None:
            kwargs["Limit"] = limit - returned
        resp = client.query(**kwargs)
        for raw in resp.get("Items", []):
            yield deserialize(raw) or {}
            returned += 1
        if not resp.get("LastEvaluatedKey") or (limit is not None and returned >= limit):
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> None:
    """Full-jitter exponential backoff (AWS architecture blog); sleeps are skipped in tests via RETENTION_NO_SLEEP."""
    import os
    import random
    import time

    if os.environ.get("RETENTION_NO_SLEEP"):
        return
    time.sleep(random.uniform(0, min(cap, base * (2**attempt))))


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it toward the 400 KB item limit (attribute names + values, in
    AttributeValue form); numbers are counted by their digits, close enough for a guard."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    kind, inner = next(iter(value.items()))
    if kind in ("S", "N"):
        return len(str(inner).encode())
    if kind == "B":
        return len(inner)
    if kind in ("SS", "NS"):
        return sum(len(str(v).encode()) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return 1
