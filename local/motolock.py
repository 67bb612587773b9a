"""moto's DynamoDB copies every table to roll a cancelled TransactWriteItems back, so concurrent requests
can lose writes. DynamoDB itself serialises per item; here one lock around moto's handler does it for the
local stack and the tests (the ingestor writes customers from several threads)."""

from __future__ import annotations

import copy
import threading
from typing import Any

_lock = threading.RLock()
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _patch_transactions()
    _installed = True


def _patch_transactions() -> None:
    """moto's TransactWriteItems deep-copies every table it touches, once per transaction item, so that it
    can roll back: its time grows with the table (a 100,000-profile table takes seconds per transaction)
    and it races with concurrent writers ("dictionary changed size during iteration"). In this process
    the snapshot is replaced by one of the touched items only; requests, items and outcomes are unchanged."""
    import types

    from moto.dynamodb import models as m

    real_deepcopy = copy.deepcopy

    def deepcopy(obj: Any, memo: Any = None) -> Any:
        if isinstance(obj, m.Table):
            return obj  # the rollback below restores the touched items instead
        return real_deepcopy(obj, memo)

    m.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined,assignment]
    original = m.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for t in transact_items:
            try:
                _, op = next(iter(t.items()))
                table = self.get_table(op["TableName"])
                keys = op["Key"] if "Key" in op else {
                    k: op["Item"][k] for k in (table.hash_key_attr, table.range_key_attr) if k}
                hash_key, range_key = self.get_keys_value(table, keys)
                current = table.get_item(hash_key, range_key)
                saved.append((table, hash_key, range_key, real_deepcopy(current)))
            except Exception:  # noqa: S112 - a malformed item: moto itself will reject the transaction
                continue
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                if range_key is not None:
                    if item is None:
                        table.items[hash_key].pop(range_key, None)
                    else:
                        table.items[hash_key][range_key] = item
                elif item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item
            raise

    m.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
