"""moto's DynamoDB copies every table to roll a cancelled TransactWriteItems back, so concurrent requests
can lose writes. DynamoDB itself serialises per item; here one lock around moto's handler does it for the
local stack and the tests (the ingestor writes customers from several threads)."""

from __future__ import annotations

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
    _installed = True
