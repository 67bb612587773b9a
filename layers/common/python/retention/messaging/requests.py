"""Messages between the journey engine and the sender, and the keys of what messaging stores in the
messages table: the send ledger and the suppression list (daily counters: retention.analytics.counters)."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field


class SendRequest(BaseModel):
    """One message to send: exactly once per (customer, rule, entry, step)."""

    model_config = {"defer_build": True}
    customer_id: str
    rule: str
    entry: str
    step: int
    channel: Literal["email", "sms", "preferred"]
    template: str
    variant: str = "default"
    transactional: bool = False
    event: dict[str, Any] = Field(default_factory=dict)
    not_before: str | None = None
    coupon: str | None = None

    @property
    def ledger_id(self) -> str:
        raw = f"{self.customer_id}|{self.rule}|{self.entry}|{self.step}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


LEDGER_PREFIX = "L#"
"""Every send-ledger item's partition key starts with it (the local outbox and the bench find them by it)."""


def ledger_key(ledger_id: str) -> tuple[str, str]:
    return (f"{LEDGER_PREFIX}{ledger_id}", "L")


def suppression_key(address: str, salt: str) -> tuple[str, str]:
    digest = hashlib.sha256((salt + address.strip().lower()).encode()).hexdigest()
    return (f"SUP#{digest}", "SUP")
